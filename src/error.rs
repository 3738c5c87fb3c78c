//! Errors the user must act on, each with a hint naming the flag or file.

use std::path::PathBuf;

/// A failure caused by input or environment: exit code 2, printed with a hint.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file's content is wrong; `place` names the line, key or field.
    #[error("invalid {what} `{path}`{}: {message}", place.as_deref().map(|p| format!(" at {p}")).unwrap_or_default())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        place: Option<String>,
        message: String,
        hint: Option<String>,
    },
    /// A command-line value is wrong.
    #[error("invalid value for `{flag}`: {message}")]
    Flag {
        flag: &'static str,
        message: String,
        hint: Option<String>,
    },
    /// The target could not be used at all (for example nothing listens there).
    #[error("{message}")]
    Environment {
        message: String,
        hint: Option<String>,
    },
}

impl UserError {
    /// The hint printed after the error, if any.
    pub fn hint(&self) -> Option<String> {
        match self {
            UserError::Read { path, .. } => Some(format!(
                "check that `{}` exists and is readable",
                path.display()
            )),
            UserError::Write { path, .. } => Some(format!(
                "check that the directory of `{}` exists and is writable",
                path.display()
            )),
            UserError::Invalid { hint, .. }
            | UserError::Flag { hint, .. }
            | UserError::Environment { hint, .. } => hint.clone(),
        }
    }

    /// Shorthand for an invalid-file error.
    pub fn invalid(
        what: &'static str,
        path: impl Into<PathBuf>,
        place: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        UserError::Invalid {
            what,
            path: path.into(),
            place,
            message: message.into(),
            hint: None,
        }
    }

    /// Shorthand for a bad flag.
    pub fn flag(flag: &'static str, message: impl Into<String>) -> Self {
        UserError::Flag {
            flag,
            message: message.into(),
            hint: None,
        }
    }

    /// Attach or replace the hint.
    #[must_use]
    pub fn with_hint(mut self, new: impl Into<String>) -> Self {
        match &mut self {
            UserError::Invalid { hint, .. }
            | UserError::Flag { hint, .. }
            | UserError::Environment { hint, .. } => {
                *hint = Some(new.into());
            }
            UserError::Read { .. } | UserError::Write { .. } => {}
        }
        self
    }
}

/// Read a whole file to a string, naming the file on failure.
pub fn read_to_string(path: &std::path::Path) -> Result<String, UserError> {
    std::fs::read_to_string(path).map_err(|source| UserError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Write a file atomically: a temporary file beside it, then a rename, so a
/// reader never sees half a result.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), UserError> {
    use std::io::Write;
    let err = |source| UserError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}
