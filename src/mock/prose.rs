//! Chinese prose cut into token-sized pieces, pre-escaped for JSON.

use crate::scenario::data::BUNDLED_NOVEL;

/// The pieces the mock streams, one per content chunk.
pub struct Prose {
    tokens: Vec<String>,
    escaped: Vec<String>,
}

impl Prose {
    /// Cut the bundled passages into pieces of one to three characters, the
    /// usual size of a Chinese token.
    pub fn new() -> Self {
        let passages: Vec<String> = serde_json::from_str::<serde_json::Value>(BUNDLED_NOVEL)
            .ok()
            .and_then(|v| v.get("passage").cloned())
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or_else(|| vec!["夜色渐深，灯火阑珊。".to_string()]);
        let chars: Vec<char> = passages.concat().chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        let mut width = 1;
        while i < chars.len() {
            let end = (i + width).min(chars.len());
            tokens.push(chars[i..end].iter().collect::<String>());
            i = end;
            width = width % 3 + 1;
        }
        let escaped = tokens
            .iter()
            .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "\"\"".into()))
            .collect();
        Self { tokens, escaped }
    }

    /// Token `i` (wrapping).
    pub fn token(&self, i: usize) -> &str {
        &self.tokens[i % self.tokens.len()]
    }

    /// Token `i` as a JSON string literal.
    pub fn token_json(&self, i: usize) -> &str {
        &self.escaped[i % self.escaped.len()]
    }
}
