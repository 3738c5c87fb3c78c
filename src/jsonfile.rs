//! The project's JSON files (results, duet results, baselines, verdicts):
//! written atomically, read back with their `kind` and `schema_version`
//! checked, every failure naming the file and the place.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::UserError;

/// What a file type is called and how it is versioned.
#[derive(Debug, Clone, Copy)]
pub struct FileType {
    /// Noun for error messages ("result", "baseline", …).
    pub what: &'static str,
    /// The `kind` field.
    pub kind: &'static str,
    /// The `schema_version` written (the newest accepted).
    pub version: u32,
    /// The oldest `schema_version` still read.
    pub oldest: u32,
    /// What to do about a file of another version.
    pub stale_hint: &'static str,
}

/// Write pretty JSON atomically.
pub fn write<T: Serialize>(path: &Path, value: &T, what: &str) -> Result<(), UserError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| UserError::Environment {
        message: format!("cannot serialise the {what}: {e}"),
        hint: None,
    })?;
    text.push(b'\n');
    crate::error::write_atomic(path, &text)
}

/// Parse text of a file type, refusing other kinds and versions.
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path, ty: &FileType) -> Result<T, UserError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        UserError::invalid(
            ty.what,
            path,
            Some(format!("line {}, column {}", e.line(), e.column())),
            e.to_string(),
        )
    })?;
    if value.get("kind").and_then(|k| k.as_str()) != Some(ty.kind) {
        return Err(UserError::invalid(
            ty.what,
            path,
            Some("`kind`".into()),
            format!("not a flora-gate {} (expected kind `{}`)", ty.what, ty.kind),
        ));
    }
    let version = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64);
    if !version.is_some_and(|v| (u64::from(ty.oldest)..=u64::from(ty.version)).contains(&v)) {
        return Err(UserError::invalid(
            ty.what,
            path,
            Some("`schema_version`".into()),
            match version {
                Some(v) if ty.oldest < ty.version => format!(
                    "schema version {v} is not one this version reads ({} to {})",
                    ty.oldest, ty.version
                ),
                _ => format!("schema version {version:?} is not {}", ty.version),
            },
        )
        .with_hint(ty.stale_hint));
    }
    serde_json::from_value(value)
        .map_err(|e| UserError::invalid(ty.what, path, None, e.to_string()))
}

/// Read and parse a file of a type.
pub fn read<T: DeserializeOwned>(path: &Path, ty: &FileType) -> Result<T, UserError> {
    parse(&crate::error::read_to_string(path)?, path, ty)
}
