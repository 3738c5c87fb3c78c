//! Reports from minijinja templates: Markdown for PR comments and job
//! summaries, plain text for terminals, JSON for machines. Templates live in
//! `templates/`, are embedded in the binary, and a directory given with
//! `--templates` overrides them file by file.

use std::path::{Path, PathBuf};

pub use super::context::{context, fmt_value, ReportContext};
pub use super::md_cell;
use crate::error::UserError;

/// GitHub's limit for a comment body is 65,536 characters; stay under it.
pub const MAX_MARKDOWN_CHARS: usize = MAX_COMMENT_CHARS - COMMENT_OVERHEAD;

/// GitHub's limit for a comment body, in characters: the one limit the
/// report and the sticky comment both keep.
pub const MAX_COMMENT_CHARS: usize = 65_536;
/// Room kept for the comment's hidden marker and a cut note.
pub const COMMENT_OVERHEAD: usize = 536;

const EMBEDDED: &[(&str, &str)] = &[
    ("report.md.j2", include_str!("../../templates/report.md.j2")),
    (
        "report.txt.j2",
        include_str!("../../templates/report.txt.j2"),
    ),
    (
        "report.html.j2",
        include_str!("../../templates/report.html.j2"),
    ),
];

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GitHub-flavoured Markdown.
    Markdown,
    /// Plain text.
    Text,
    /// The report's data as JSON.
    Json,
    /// One self-contained HTML file (see [`super::html`]).
    Html,
}

/// Renders a report context in one format.
pub trait Renderer {
    /// The report text.
    fn render(&self, ctx: &ReportContext) -> Result<String, UserError>;
}

/// Most template instructions one report may take.
pub const TEMPLATE_FUEL: u64 = 50_000_000;
/// Largest rendered report (the HTML report with charts stays far below).
pub const MAX_TEMPLATE_OUTPUT: usize = 32 << 20;

/// Collects rendered text and fails once it passes `cap` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(std::io::Error::other(format!(
                "the report would be larger than {} MiB",
                self.cap >> 20
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Templates: embedded, or overridden from a directory.
#[derive(Debug)]
pub struct Templates {
    env: minijinja::Environment<'static>,
}

impl Templates {
    /// Load the embedded templates, replaced by any same-named file in `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Self, UserError> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_keep_trailing_newline(true);
        // A user template (`--templates`) may loop for ever or blow up: a
        // bound on instructions, and one on output in `render` below.
        env.set_fuel(Some(TEMPLATE_FUEL));
        // The HTML template escapes everything it is not told is safe.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html.j2") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        // Plain text shows foreign text as it was, without Markdown escapes.
        env.set_formatter(|out, state, value| {
            if state.name().ends_with(".txt.j2") {
                if let Some(s) = value.as_str() {
                    return out
                        .write_str(&super::plain(s))
                        .map_err(minijinja::Error::from);
                }
            }
            minijinja::escape_formatter(out, state, value)
        });
        env.add_filter("md", |s: &str| {
            minijinja::Value::from_safe_string(super::html::from_markdown(s))
        });
        for (name, text) in EMBEDDED {
            let (source, origin): (String, PathBuf) =
                match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                    Some(p) => (crate::error::read_to_string(&p)?, p),
                    None => (
                        (*text).to_string(),
                        PathBuf::from(format!("<embedded templates/{name}>")),
                    ),
                };
            env.add_template_owned(*name, source).map_err(|e| {
                UserError::invalid(
                    "template",
                    origin,
                    e.line().map(|l| format!("line {l}")),
                    e.to_string(),
                )
            })?;
        }
        Ok(Self { env })
    }

    fn render<S: serde::Serialize>(&self, name: &str, ctx: &S) -> Result<String, UserError> {
        let mut out = CappedWriter {
            buf: Vec::new(),
            cap: MAX_TEMPLATE_OUTPUT,
        };
        self.env
            .get_template(name)
            .and_then(|t| t.render_captured_to(ctx, &mut out).map(|_| ()))
            .map(|()| String::from_utf8_lossy(&out.buf).into_owned())
            .map_err(|e| {
                UserError::invalid(
                    "template",
                    name,
                    e.line().map(|l| format!("line {l}")),
                    e.to_string(),
                )
            })
    }
}

/// The HTML page.
pub fn html(templates: &Templates, page: &super::html::Page) -> Result<String, UserError> {
    templates.render("report.html.j2", page)
}

/// Markdown, kept under [`MAX_MARKDOWN_CHARS`] by dropping details, then
/// step rows, before the verdict table.
#[derive(Debug)]
pub struct Markdown<'a>(pub &'a Templates);

impl Renderer for Markdown<'_> {
    fn render(&self, ctx: &ReportContext) -> Result<String, UserError> {
        let mut ctx = ctx.clone();
        let mut out = self.0.render("report.md.j2", &ctx)?;
        if out.chars().count() <= MAX_MARKDOWN_CHARS {
            return Ok(out);
        }
        ctx.details = false;
        ctx.step_checks.clear();
        ctx.chart = None;
        out = self.0.render("report.md.j2", &ctx)?;
        let total = ctx.steps.len();
        while out.chars().count() > MAX_MARKDOWN_CHARS && !ctx.steps.is_empty() {
            let keep = ctx.steps.len() / 2;
            ctx.steps.truncate(keep);
            ctx.error_rows.truncate(keep);
            ctx.truncated = Some(format!(
                "{} of {total} steps shown: the report was cut to stay under GitHub's comment limit; the result file has everything.",
                ctx.steps.len()
            ));
            out = self.0.render("report.md.j2", &ctx)?;
        }
        if out.chars().count() > MAX_MARKDOWN_CHARS {
            out = out.chars().take(MAX_MARKDOWN_CHARS - 40).collect();
            out.push_str("\n\n_… report truncated._\n");
        }
        Ok(out)
    }
}

/// Plain text.
#[derive(Debug)]
pub struct Text<'a>(pub &'a Templates);

impl Renderer for Text<'_> {
    fn render(&self, ctx: &ReportContext) -> Result<String, UserError> {
        self.0.render("report.txt.j2", ctx)
    }
}

/// The context as JSON.
#[derive(Debug)]
pub struct Json;

impl Renderer for Json {
    fn render(&self, ctx: &ReportContext) -> Result<String, UserError> {
        serde_json::to_string_pretty(ctx)
            .map(|s| s + "\n")
            .map_err(|e| UserError::Environment {
                message: format!("cannot serialise the report: {e}"),
                hint: None,
            })
    }
}

/// Render in `format`.
pub fn render(
    format: Format,
    templates: &Templates,
    ctx: &ReportContext,
) -> Result<String, UserError> {
    match format {
        Format::Markdown => Markdown(templates).render(ctx),
        Format::Text => Text(templates).render(ctx),
        Format::Json => Json.render(ctx),
        // Without its result the page has no charts: callers that have it
        // build the page with `super::html`.
        Format::Html => html(
            templates,
            &super::html::Page {
                title: "flora-gate report".into(),
                kind: "run",
                csp: super::html::csp(),
                css: super::html::CSS,
                r: Some(ctx),
                timeline: Vec::new(),
                analysis: Vec::new(),
                server: Vec::new(),
                sections: None,
            },
        ),
    }
}
