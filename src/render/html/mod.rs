//! One self-contained HTML file per result: the report's sections and
//! charts drawn here as inline SVG. No script, no URL of any kind, a strict
//! Content-Security-Policy (the one style block is allowed by its hash),
//! every foreign string escaped, light and dark schemes, printable.

pub mod capacity;
pub mod charts;
pub mod svg;
pub mod trend;

use base64::Engine as _;
use serde::Serialize;
use sha2::Digest as _;

use self::charts::{Against, Figure};
use super::context::ReportContext;
use crate::result::RunResult;

/// Text escaped for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The page's one style block.
pub const CSS: &str = include_str!("../../../templates/report.css");

/// The Content-Security-Policy: nothing may load, nothing may run; the
/// style block is allowed by its hash.
pub fn csp() -> String {
    let hash = sha2::Sha256::digest(CSS.as_bytes());
    format!(
        "default-src 'none'; style-src 'sha256-{}'; img-src 'none'; script-src 'none'; base-uri 'none'; form-action 'none'",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// A report string built for Markdown (foreign text escaped by
/// [`super::md_cell`]) as HTML: backslash escapes made plain, word joiners
/// dropped, every character escaped for HTML, and only the report's own
/// `code` spans and `**bold**` kept as elements (an escaped `\\*` or
/// `\\`` from foreign text stays a character). Unbalanced markers fall
/// back to plain text.
pub fn from_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let (mut code, mut strong) = (false, false);
    let mut it = s.chars().peekable();
    let mut buf = [0u8; 4];
    while let Some(c) = it.next() {
        match c {
            '\\' if !code && it.peek().is_some_and(char::is_ascii_punctuation) => {
                if let Some(n) = it.next() {
                    out.push_str(&esc(n.encode_utf8(&mut buf)));
                }
            }
            // GFM reads `\\|` as a pipe inside a table cell's code span.
            '\\' if code && it.peek() == Some(&'|') => {}
            super::WORD_JOINER => {}
            '`' => {
                out.push_str(if code { "</code>" } else { "<code>" });
                code = !code;
            }
            '*' if !code && it.peek() == Some(&'*') => {
                it.next();
                out.push_str(if strong { "</strong>" } else { "<strong>" });
                strong = !strong;
            }
            c => out.push_str(&esc(c.encode_utf8(&mut buf))),
        }
    }
    if code || strong {
        return esc(&super::plain(s));
    }
    out
}

/// Everything the HTML template sees.
#[derive(Debug, Serialize)]
pub struct Page<'a> {
    /// `<title>`.
    pub title: String,
    /// `run`, `duet`, `merged` or `capacity`.
    pub kind: &'static str,
    /// The policy for the meta tag.
    pub csp: String,
    /// The style block.
    pub css: &'static str,
    /// The report's sections, as the Markdown report has them.
    pub r: Option<&'a ReportContext>,
    /// Over time.
    pub timeline: Vec<Figure>,
    /// Against the load, and the distribution.
    pub analysis: Vec<Figure>,
    /// The server's metrics.
    pub server: Vec<Figure>,
    /// A capacity search's or a history's own sections (pre-rendered HTML).
    pub sections: Option<String>,
}

/// The page of a run (a single run, a merged one, or a duet's candidate).
pub fn run_page<'a>(
    r: &RunResult,
    ctx: &'a ReportContext,
    against: &Against,
    duet: bool,
) -> Page<'a> {
    let mut analysis = Vec::new();
    analysis.extend(charts::ttft_by_load(r));
    analysis.extend(charts::ttft_cdf(r, against));
    analysis.extend(charts::step_bars(r, against));
    Page {
        title: format!("flora-gate · {}", r.provenance.scenario.name),
        kind: if duet {
            "duet"
        } else if r.merged.is_some() {
            "merged"
        } else {
            "run"
        },
        csp: csp(),
        css: CSS,
        r: Some(ctx),
        timeline: charts::timeline(r),
        analysis,
        server: charts::server_panels(r),
        sections: None,
    }
}

/// The page of a capacity search.
pub fn capacity_page(
    r: &crate::result::capacity::CapacityResult,
    verdict: Option<&crate::gate::capacity::CapacityVerdict>,
) -> Page<'static> {
    Page {
        title: format!("flora-gate capacity · {}", r.scenario.name),
        kind: "capacity",
        csp: csp(),
        css: CSS,
        r: None,
        timeline: Vec::new(),
        analysis: Vec::new(),
        server: Vec::new(),
        sections: Some(capacity::body(r, verdict)),
    }
}

/// The page of a history's analysis.
pub fn trend_page(t: &crate::gate::trend::Trend) -> Page<'static> {
    Page {
        title: format!("flora-gate history · {}", t.setup.scenario),
        kind: "history",
        csp: csp(),
        css: CSS,
        r: None,
        timeline: Vec::new(),
        analysis: Vec::new(),
        server: Vec::new(),
        sections: Some(trend::body(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_text_is_escaped_and_the_reports_own_code_spans_kept() {
        let hostile = super::super::md_cell(
            "</script><script>alert(1)</script> <img src=x onerror=alert(2)> `x`",
        );
        let h = from_markdown(&hostile);
        assert!(
            !h.contains('<') || !h.contains("<script") && !h.contains("<img"),
            "{h}"
        );
        assert!(h.contains("&lt;/script&gt;&lt;script&gt;"), "{h}");
        assert!(h.contains("&lt;img src=x onerror=alert(2)&gt;"), "{h}");
        assert_eq!(
            from_markdown("run `plan --shards 2` **now**"),
            "run <code>plan --shards 2</code> <strong>now</strong>"
        );
        assert_eq!(from_markdown("a `b"), "a `b");
        assert_eq!(
            from_markdown(&super::super::md_cell("**not bold** `not code`")),
            "**not bold** `not code`"
        );
        assert_eq!(esc("\"'&"), "&quot;&#39;&amp;");
    }

    #[test]
    fn the_policy_allows_exactly_the_style_block() {
        let p = csp();
        assert!(
            p.starts_with("default-src 'none'; style-src 'sha256-"),
            "{p}"
        );
        assert!(p.contains("script-src 'none'"));
    }
}
