//! Bearer tokens from `access_tokens.csv`: one per virtual user, round-robin.
//!
//! Tokens are secrets: [`Secret`] never prints its value, so no log line,
//! error, result or report can carry one by accident.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use crate::error::UserError;

/// A value that is never shown.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A remote text made safe to keep or print: this secret (servers echo
    /// tokens in "invalid token …" errors) and any URL user info replaced.
    pub fn redact_from(&self, text: &str) -> String {
        let text = if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        };
        crate::target::redact_userinfo(&text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One user's credentials.
#[derive(Debug, Clone)]
pub struct UserToken {
    /// The user id (from the CSV, or `user-N` for a single-column file).
    pub user_id: String,
    /// The bearer token.
    pub token: Secret,
}

/// Read a tokens CSV: header `user_id,access_token`, or a single column of
/// tokens (with or without an `access_token` header).
pub fn load(path: &Path) -> Result<Vec<UserToken>, UserError> {
    let text = crate::error::read_to_string(path)?;
    parse(&text, path)
}

/// Parse tokens CSV text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<UserToken>, UserError> {
    let invalid = |line: Option<u64>, msg: &str| {
        UserError::invalid("tokens file", path, line.map(|l| format!("line {l}")), msg).with_hint(
            "the tokens file is CSV with the header `user_id,access_token` (or one token per line)",
        )
    };
    let rows = rows(text, &invalid)?;
    let Some((_, first)) = rows.first() else {
        return Err(invalid(None, "the file holds no tokens"));
    };
    let (token_col, user_col, skip) = columns(&rows, &invalid)?;
    let width = first.len();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (line, row) in rows.into_iter().skip(skip) {
        if row.len() != width {
            return Err(invalid(
                Some(line),
                &format!("expected {width} column(s), found {}", row.len()),
            ));
        }
        let token = row[token_col].clone();
        if token.is_empty() {
            return Err(invalid(Some(line), "empty token"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                Some(line),
                "the token contains whitespace or control characters",
            ));
        }
        if !seen.insert(token.clone()) {
            return Err(invalid(
                Some(line),
                "duplicate token (each virtual user needs its own)",
            ));
        }
        let user_id = match user_col {
            Some(c) if !row[c].is_empty() => row[c].clone(),
            _ => format!("user-{}", out.len() + 1),
        };
        out.push(UserToken {
            user_id,
            token: Secret::new(token),
        });
    }
    if out.is_empty() {
        return Err(invalid(None, "the file has a header but no tokens"));
    }
    Ok(out)
}

type Invalid<'a> = &'a dyn Fn(Option<u64>, &str) -> UserError;

/// The file's non-empty rows with their line numbers.
fn rows(text: &str, invalid: Invalid) -> Result<Vec<(u64, Vec<String>)>, UserError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(csv::Position::line);
            invalid(line, &format!("not valid CSV: {e}"))
        })?;
        let line = rec.position().map_or(0, csv::Position::line);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        // A quote that is never closed swallows the rest of the file into
        // one field: say that, not "whitespace in the token".
        if rec.iter().any(|f| f.contains('\n') || f.contains('\r')) {
            return Err(invalid(
                Some(line),
                "a quoted field (\") that starts here is never closed",
            ));
        }
        rows.push((line, rec.iter().map(str::to_owned).collect::<Vec<_>>()));
    }
    Ok(rows)
}

/// Which column holds the token and which the user id, and how many header
/// rows to skip: a header naming `access_token` (or `token`), or one column
/// of tokens.
fn columns(
    rows: &[(u64, Vec<String>)],
    invalid: Invalid,
) -> Result<(usize, Option<usize>, usize), UserError> {
    let first = &rows[0].1;
    let first_lower: Vec<String> = first.iter().map(|s| s.to_ascii_lowercase()).collect();
    Ok(
        if let Some(t) = first_lower
            .iter()
            .position(|c| c == "access_token" || c == "token")
        {
            (t, first_lower.iter().position(|c| c == "user_id"), 1)
        } else if first.len() == 1 {
            // One column: a `;` or tab-separated file lands here with its header
            // as the first "token"; refuse it rather than send the header.
            let looks_separated = rows
                .iter()
                .any(|(_, r)| r[0].contains(';') || r[0].contains('\t'));
            if looks_separated {
                return Err(invalid(
                Some(rows[0].0),
                "this looks like a `;`- or tab-separated file; the tokens file is comma-separated",
            ));
            }
            (0, None, 0)
        } else {
            return Err(invalid(
                Some(rows[0].0),
                "a file with several columns needs a header naming `access_token` (and `user_id`)",
            ));
        },
    )
}

/// `n` generated tokens, for the demo and tests against the mock.
pub fn generated(n: usize) -> Vec<UserToken> {
    (1..=n)
        .map(|i| UserToken {
            user_id: format!("demo-{i}"),
            token: Secret::new(format!("demo-token-{i:04}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<UserToken>, UserError> {
        parse(text, Path::new("access_tokens.csv"))
    }

    #[test]
    fn header_with_user_ids() {
        let t = p("user_id,access_token\nu1,tok-a\nu2,tok-b\n").expect("valid");
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].user_id, "u2");
        assert_eq!(t[1].token.expose(), "tok-b");
    }

    #[test]
    fn single_column_with_or_without_header() {
        assert_eq!(p("tok-a\ntok-b\n").expect("valid").len(), 2);
        let t = p("access_token\ntok-a\n").expect("valid");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].user_id, "user-1");
    }

    #[test]
    fn errors_name_the_line_and_never_the_token() {
        let err = p("user_id,access_token\nu1,secret-1\nu2,secret-1\n").expect_err("dup");
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("duplicate"), "{msg}");
        assert!(!msg.contains("secret-1"), "{msg}");
        let err = p("user_id,access_token\nu1,\n")
            .expect_err("empty")
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("empty token"),
            "{err}"
        );
        let err = p("").expect_err("no tokens").to_string();
        assert!(err.contains("no tokens"), "{err}");
        let err = p("a,b\nc,d\n").expect_err("no header").to_string();
        assert!(err.contains("header"), "{err}");
        let err = p("user_id,access_token\nu1,t1,extra\n")
            .expect_err("ragged")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn wrong_separators_and_open_quotes_are_named() {
        let err = p("user_id;access_token\nu1;tok-a\n")
            .expect_err("semicolons")
            .to_string();
        assert!(
            err.contains("comma-separated") && err.contains("line 1"),
            "{err}"
        );
        assert!(!err.contains("tok-a"), "{err}");
        let err = p("user_id,access_token\nu1,\"tok-a\nu2,tok-b\n")
            .expect_err("open quote")
            .to_string();
        assert!(
            err.contains("never closed") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }
}
