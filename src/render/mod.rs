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
