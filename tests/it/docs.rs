//! The documentation holds: every link between its pages lands on a file
//! and a heading that exist, and every `flora-gate` command it shows names
//! a command and flags (and flag values) the binary accepts.

use std::path::{Path, PathBuf};

use crate::common::BIN;

fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_link_between_the_pages_lands() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let dir = page.parent().expect("a directory");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if !anchor.is_empty() {
                let there = std::fs::read_to_string(&path).expect("read");
                if !anchors(&there).iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {target} (no such heading)", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Words of a shell command line as the shell splits them (quotes and
/// backslashes), stopping at a comment, `&`, `;`, `|` or a redirection.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                    started = true;
                }
            }
            (None, '#') if !started => break,
            (None, '&' | ';' | '|' | '>') => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

#[test]
fn every_documented_command_is_one_the_binary_accepts() {
    let mut checked = 0;
    let mut refused = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let mut fenced = None::<String>;
        let mut joined = String::new();
        for line in text.lines() {
            if let Some(info) = line.strip_prefix("```") {
                fenced = match fenced {
                    Some(_) => None,
                    None => Some(info.trim().to_string()),
                };
                continue;
            }
            if !matches!(fenced.as_deref(), Some("sh" | "bash")) {
                continue;
            }
            // Continuation lines join the command they continue.
            if let Some(part) = line.strip_suffix('\\') {
                joined.push_str(part);
                joined.push(' ');
                continue;
            }
            joined.push_str(line);
            let command = std::mem::take(&mut joined);
            let mut w = words(command.trim());
            let args: Vec<String> = match w.first().map(String::as_str) {
                Some("flora-gate") => w.split_off(1),
                Some("cargo") if w.get(1).map(String::as_str) == Some("run") => {
                    match w.iter().position(|x| x == "--") {
                        Some(i) => w.split_off(i + 1),
                        None => continue,
                    }
                }
                _ => continue,
            };
            // Optional parts (`[--margin 0.1]`) and variables stand for
            // what the reader fills in.
            let args: Vec<String> = args
                .into_iter()
                .filter(|a| !a.starts_with('[') && !a.ends_with(']'))
                .map(|a| a.replace("$URL", "http://127.0.0.1:9"))
                .collect();
            let o = std::process::Command::new(BIN)
                .args(&args)
                .arg("--help")
                .env_remove("GITHUB_ACTIONS")
                .output()
                .expect("runs");
            checked += 1;
            if !o.status.success() {
                refused.push(format!(
                    "{}: flora-gate {}\n  {}",
                    page.display(),
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
    }
    assert!(checked >= 40, "only {checked} commands found");
    assert!(
        refused.is_empty(),
        "documented commands the binary refuses:\n{}",
        refused.join("\n")
    );
}

#[test]
fn the_shell_words_are_split_as_a_shell_splits_them() {
    assert_eq!(
        words(r#"run --stages "to 10=10s:10,hold 10" -o 'a b' x\ y # comment"#),
        [
            "run",
            "--stages",
            "to 10=10s:10,hold 10",
            "-o",
            "a b",
            "x y"
        ]
    );
    assert_eq!(words("mock --port 8080 &"), ["mock", "--port", "8080"]);
    assert_eq!(
        words("compare -r x.json; echo \"exit $?\""),
        ["compare", "-r", "x.json"]
    );
    assert_eq!(words("report > report.md"), ["report"]);
}
