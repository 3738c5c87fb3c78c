//! Templates: the environment request paths and bodies render in, the
//! values a user's iteration sees, and their helpers.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{DataSet, Scenario};

pub(super) fn template_message(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// The first 12 characters of a hash, for display; never slices by byte,
/// so a short or non-ASCII value from a file cannot panic.
pub fn short_hash(s: &str) -> String {
    s.chars().take(12).collect()
}

/// Hex sha256 of some bytes.
pub fn hex_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Most template instructions one render may run (a loop that never ends
/// fails at load, in the dry run).
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Values visible to the templates of one virtual user's iteration.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    pub(super) values: BTreeMap<String, minijinja::Value>,
}

impl TemplateContext {
    /// The context at the start of an iteration.
    pub fn new(
        scenario: &Scenario,
        vu: u32,
        user_id: &str,
        iteration: u64,
        data: BTreeMap<String, String>,
    ) -> Self {
        let mut values = BTreeMap::new();
        let vars = match &scenario.sweep {
            Some(s) if !s.values.is_empty() => {
                let mut v = scenario.vars.clone();
                let at = (iteration.max(1) - 1) % s.values.len() as u64;
                v.insert(s.name.clone(), s.values[at as usize].clone());
                minijinja::Value::from_serialize(&v)
            }
            _ => minijinja::Value::from_serialize(&scenario.vars),
        };
        values.insert("vars".into(), vars);
        values.insert("data".into(), minijinja::Value::from_serialize(&data));
        values.insert("vu".into(), minijinja::Value::from(vu));
        values.insert("user_id".into(), minijinja::Value::from(user_id));
        values.insert("iteration".into(), minijinja::Value::from(iteration));
        values.insert("book".into(), minijinja::Value::from(1));
        // A story carried across iterations starts empty.
        for var in scenario.steps.iter().filter_map(|s| s.append_text.as_ref()) {
            values.insert(var.clone(), minijinja::Value::from(""));
        }
        Self { values }
    }

    /// Set a variable extracted from a response.
    pub fn set(&mut self, name: &str, value: serde_json::Value) {
        self.values
            .insert(name.to_string(), minijinja::Value::from_serialize(&value));
    }

    /// Give one request its drawn `prompt` and `max_tokens`; a step that
    /// draws none sees neither (a template naming them fails at load).
    pub fn set_drawn(&mut self, drawn: Option<super::lengths::Drawn>) {
        let d = drawn.unwrap_or_default();
        match d.prompt {
            Some(p) => self
                .values
                .insert("prompt".into(), minijinja::Value::from(p)),
            None => self.values.remove("prompt"),
        };
        match d.max_tokens {
            Some(n) => self
                .values
                .insert("max_tokens".into(), minijinja::Value::from(n)),
            None => self.values.remove("max_tokens"),
        };
    }
}

/// The template environment: strict about undefined variables, with a
/// `clip(n)` filter (first n characters) and a `filler(n)` function (n
/// characters of prose from the data set, for prompts of a set length).
pub fn template_env(data: Arc<DataSet>) -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // A template is data from a file: a loop may not run for ever.
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Values put into a path are percent-encoded, so an extracted id like
    // `../../x?` stays one path segment and cannot traverse or add a query.
    env.set_formatter(|out, state, value| {
        if state.name().ends_with(".path") {
            let text = match value.as_str() {
                Some(s) => s.to_string(),
                None => value.to_string(),
            };
            if text == "." || text == ".." || text.is_empty() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("`{text}` cannot be a path segment"),
                ));
            }
            out.write_str(&encode_path_segment(&text)).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
            })
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("clip", |s: String, n: usize| -> String {
        s.chars().take(n).collect()
    });
    // Like the built-in, but an undefined value is an error, not `null`, so
    // a misspelt variable in a body fails at load time.
    env.add_filter(
        "tojson",
        |v: minijinja::Value| -> Result<String, minijinja::Error> {
            if v.is_undefined() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    "`tojson` of an undefined value",
                ));
            }
            serde_json::to_string(&v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
            })
        },
    );
    env.add_function(
        "filler",
        move |state: &minijinja::State, n: usize| -> String {
            let vu = state
                .lookup("vu")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(0);
            let it = state
                .lookup("iteration")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(0);
            data.filler(
                n.min(1 << 20),
                vu.wrapping_mul(131).wrapping_add(it.wrapping_mul(17)),
            )
        },
    );
    env
}
