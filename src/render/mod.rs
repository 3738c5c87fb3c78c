//! Rendering results for people.

pub mod capacity;
pub mod context;
pub mod html;
pub mod prompt;
pub mod report;
pub mod server;
pub mod shape;
pub mod text;

/// A latency in milliseconds as a number, with the same precision wherever
/// it is printed: whole above 100, one decimal above 10, two below.
pub fn ms_number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

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

/// Foreign text made safe inside a Markdown table cell: no cell breaks, no
/// code spans, no HTML, one line.
pub fn md_cell(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|")
        .replace('`', "'")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
