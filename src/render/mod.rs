//! Rendering results for people.

pub mod capacity;
pub mod context;
pub mod history;
pub mod html;
pub mod prompt;
pub mod report;
pub mod resources;
pub mod server;
pub mod shape;
pub mod text;
pub mod traffic;

pub use crate::stats::format::{ms, ms_number};

/// A number in a few characters, for tables and chart axes: `2.35G`,
/// `15.9M`, `12.3k`, `434`, `3.2`, `0.071`; trailing zeros dropped.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (text, suffix) = if a >= 1e9 {
        (format!("{:.2}", v / 1e9), "G")
    } else if a >= 1e6 {
        (format!("{:.1}", v / 1e6), "M")
    } else if a >= 1e4 {
        (format!("{:.1}", v / 1e3), "k")
    } else if a >= 100.0 || v == v.trunc() {
        (format!("{v:.0}"), "")
    } else if a >= 1.0 {
        (format!("{v:.1}"), "")
    } else {
        (format!("{v:.3}"), "")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// U+2060 WORD JOINER: invisible, and enough to break GitHub's `@mention`,
/// `#123` and bare-URL recognition where it is put.
pub const WORD_JOINER: char = '\u{2060}';

/// Text flora-gate did not write (a server's error body, a metric name or
/// label, a scenario or step name) made inert in Markdown, on one line and
/// safe in a table cell: every ASCII punctuation character is escaped with
/// a backslash (so no emphasis, link, image, code span, HTML, entity,
/// heading, list or quote can start), control characters become spaces,
/// and `@name`, `#123`, `scheme://` and `www.` are broken by a
/// [`WORD_JOINER`] so GitHub makes no mention, reference or link of them.
/// [`plain`] undoes it for plain text and HTML.
pub fn md_cell(s: &str) -> String {
    escape(s, false)
}

/// A sentence flora-gate wrote around foreign text (a verdict's headline or
/// note, a check's label): as [`md_cell`], but its backticks kept, so the
/// sentence's own code spans stay (a code span is inert, whoever opened it).
pub fn md_inline(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, keep_backticks: bool) -> String {
    let chars: Vec<char> = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    let alnum = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| c.is_alphanumeric())
    };
    // What could open a block where the text starts a line: a heading, a
    // quote, a list item, a thematic break.
    let digits = chars.iter().take_while(|c| c.is_ascii_digit()).count();
    let block_start = match chars.first() {
        Some('-' | '+' | '=' | '>') => Some(0),
        Some(c)
            if c.is_ascii_digit()
                && matches!(chars.get(digits), Some('.' | ')'))
                && chars.get(digits + 1).is_none_or(|c| *c == ' ') =>
        {
            Some(digits)
        }
        _ => None,
    };
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        let live = match c {
            '\\' | '*' | '[' | ']' | '<' | '>' | '|' | '~' | '#' | '@' | '$' => true,
            // An image, an entity, an emoji shortcode or a scheme.
            '!' => next == '[',
            '&' => next.is_alphanumeric() || next == '#',
            ':' => next == '/' || emoji_code(&chars[i + 1..]),
            '`' => !keep_backticks,
            // Inside a word an underscore cannot open emphasis.
            '_' => !(alnum(i.checked_sub(1)) && alnum(Some(i + 1))),
            _ => block_start == Some(i),
        };
        if c == '.'
            && i >= 3
            && chars[i - 3..i]
                .iter()
                .collect::<String>()
                .eq_ignore_ascii_case("www")
        {
            out.push(WORD_JOINER);
        }
        if live {
            out.push('\\');
        }
        out.push(c);
        if matches!(c, '@' | '#') || (c == ':' && chars.get(i + 1) == Some(&'/')) {
            out.push(WORD_JOINER);
        }
    }
    out
}

/// Whether `rest` (after a colon) closes a GitHub emoji shortcode such as
/// `:white_check_mark:`.
fn emoji_code(rest: &[char]) -> bool {
    let name = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-'))
        .count();
    name > 0 && rest.get(name) == Some(&':')
}

/// A URL for a Markdown code span: the characters that could end the span
/// or a table cell percent-encoded (the URL means the same).
pub fn md_url(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '`' => "%60".to_string(),
            '|' => "%7C".to_string(),
            ' ' => "%20".to_string(),
            c if c.is_control() => String::new(),
            c => c.to_string(),
        })
        .collect()
}

/// Foreign text for a code span inside a Markdown table cell: backticks
/// become quotes (the span cannot end early), `|` is escaped (GFM reads
/// `\\|` as a pipe inside a cell's code span), one line. Nothing inside
/// a code span is a link, mention or markup.
pub fn md_code(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('`', "'")
        .replace('|', "\\|")
}

/// Text escaped by [`md_cell`] made plain again: the backslash escapes and
/// word joiners removed (for plain-text output).
pub fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' if it.peek().is_some_and(char::is_ascii_punctuation) => {
                if let Some(n) = it.next() {
                    out.push(n);
                }
            }
            WORD_JOINER => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_text_is_escaped_and_comes_back() {
        let hostile = "[x](https://e.example) ![p](http://e/p.png) **B** _e_ @octocat #1 <b>&amp; www.e.example |`";
        let m = md_cell(hostile);
        for live in [
            "[x]", " ![", "**", " _e_", "@octocat", "#1", "<b>", ">&amp;", "https://", "www.",
            " |", " `",
        ] {
            assert!(!m.contains(live), "{live} left live in {m}");
        }
        assert_eq!(plain(&m), hostile);
        assert_eq!(
            md_cell("章纲 chapter_3: a-b (c)"),
            "章纲 chapter_3: a-b (c)"
        );
        assert_eq!(md_cell("- 1. x"), "\\- 1. x");
        assert_eq!(md_cell("12. x"), "12\\. x");
        assert_eq!(md_code("a`b|c\nd"), "a'b\\|c d");
        assert_eq!(md_url("http://h/a`b|c d"), "http://h/a%60b%7Cc%20d");
    }
}
