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

/// Write an output file so that nothing but the named file can be harmed.
///
/// - A new path or a regular file is replaced atomically: a temporary file
///   beside it (created exclusively, never through a planted link), then a
///   rename, so a reader never sees half a result.
/// - A symlink is followed deliberately: the file it points to is written by
///   these same rules and the link itself stays. A dangling link is refused.
/// - A character device or a FIFO (`/dev/null`, `/dev/stdout`, a pipe) is
///   written through, never replaced: renaming over `/dev/null` as root
///   would break it for the whole machine.
/// - Anything else (a directory, a socket, a block device) is refused.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), UserError> {
    write_atomic_with(path, &mut |w| w.write_all(bytes))
}

/// [`write_atomic`] for output made piece by piece: `fill` writes it to a
/// buffered writer, so a large file is never held in memory.
pub fn write_atomic_with(
    path: &std::path::Path,
    fill: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), UserError> {
    use std::io::Write;
    let err = |source| UserError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (target, kind) = destination(path).map_err(err)?;
    match kind {
        Kind::Absent | Kind::Regular { .. } => {}
        Kind::Stream => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(err)?;
            let mut w = std::io::BufWriter::new(f);
            return fill(&mut w).and_then(|()| w.flush()).map_err(err);
        }
        Kind::Other => return Err(err(not_a_file())),
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let (tmp, f) = create_temporary(&dir, &file_name).map_err(err)?;
    let mut w = std::io::BufWriter::new(f);
    let written = fill(&mut w)
        .and_then(|()| w.into_inner().map_err(std::io::IntoInnerError::into_error))
        .and_then(|f| {
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &target)
        });
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// What an output path is, after following a symlink.
enum Kind {
    /// Nothing there yet.
    Absent,
    /// A regular file.
    Regular { read_only: bool },
    /// A character device or a FIFO: written through, never replaced.
    Stream,
    /// A directory, socket or block device: refused.
    Other,
}

/// Where writing `path` lands (a symlink followed deliberately; a dangling
/// one refused) and what is there: the one decision both the up-front check
/// and the write make.
fn destination(path: &std::path::Path) -> std::io::Result<(PathBuf, Kind)> {
    let target = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("it is a symbolic link whose target cannot be resolved ({e})"),
            )
        })?,
        Ok(_) => path.to_path_buf(),
    };
    let kind = match std::fs::metadata(&target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kind::Absent,
        Err(e) => return Err(e),
        Ok(meta) if meta.is_file() => Kind::Regular {
            read_only: meta.permissions().readonly(),
        },
        Ok(meta) if is_stream_like(&meta) => Kind::Stream,
        Ok(_) => Kind::Other,
    };
    Ok((target, kind))
}

fn not_a_file() -> std::io::Error {
    std::io::Error::other("it exists and is not a regular file, a character device or a FIFO")
}

/// Check before any work that `path` can be written by [`write_atomic`], so
/// a long run never ends in an unwritable output. Touches nothing but a
/// probe file of its own, which it removes.
pub fn check_writable(path: &std::path::Path) -> Result<(), UserError> {
    let err = |source| UserError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (target, kind) = destination(path).map_err(err)?;
    match kind {
        Kind::Stream => return Ok(()),
        Kind::Other => return Err(err(not_a_file())),
        Kind::Regular { read_only: true } => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the file is read-only",
            )))
        }
        Kind::Absent | Kind::Regular { .. } => {}
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (probe, f) = create_temporary(&dir, "probe").map_err(err)?;
    drop(f);
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Check several output paths up front; the same file twice is refused.
pub fn check_outputs(outputs: &[(&'static str, &std::path::Path)]) -> Result<(), UserError> {
    for (i, (flag, path)) in outputs.iter().enumerate() {
        check_writable(path).map_err(|e| match e {
            UserError::Write { path, source } => UserError::Flag {
                flag,
                message: format!("cannot write `{}`: {source}", path.display()),
                hint: Some("check that the directory exists and is writable".into()),
            },
            other => other,
        })?;
        for (other_flag, other) in &outputs[..i] {
            if same_file(path, other) {
                return Err(UserError::flag(
                    flag,
                    format!("`{}` is also given to `{other_flag}`", path.display()),
                )
                .with_hint("give each output its own file"));
            }
        }
    }
    Ok(())
}

/// Refuse an output that is also one of the command's inputs: reading a
/// file and writing it in one command loses it.
pub fn check_not_inputs(
    outputs: &[(&'static str, &std::path::Path)],
    inputs: &[std::path::PathBuf],
) -> Result<(), UserError> {
    for (flag, out) in outputs {
        if let Some(input) = inputs.iter().find(|i| same_file(out, i)) {
            return Err(UserError::flag(
                flag,
                format!(
                    "`{}` is one of the files this command reads (`{}`)",
                    out.display(),
                    input.display()
                ),
            )
            .with_hint("write the output to a new file"));
        }
    }
    Ok(())
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let resolve = |p: &std::path::Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            match (
                abs.parent().and_then(|d| std::fs::canonicalize(d).ok()),
                abs.file_name(),
            ) {
                (Some(d), Some(n)) => d.join(n),
                _ => abs,
            }
        })
    };
    // Devices (`/dev/null` twice) are fine to share.
    let device = std::fs::metadata(a).is_ok_and(|m| is_stream_like(&m));
    !device && resolve(a) == resolve(b)
}

/// A new temporary file in `dir`, created exclusively so an existing file
/// or link of that name is never opened.
fn create_temporary(
    dir: &std::path::Path,
    name: &str,
) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut last = None;
    for n in 0..100u32 {
        let tmp = dir.join(format!(".{name}.tmp{}.{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary file name")))
}

#[cfg(unix)]
fn is_stream_like(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    t.is_char_device() || t.is_fifo()
}

#[cfg(not(unix))]
fn is_stream_like(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_regular_files_are_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("r.json");
        write_atomic(&p, b"one").expect("new");
        write_atomic(&p, b"two").expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn dev_null_stays_a_device() {
        use std::os::unix::fs::FileTypeExt;
        // Through a link in a directory we own, so the test never touches
        // /dev when it fails: the link's target is what must survive.
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &link).expect("symlink");
        write_atomic(&link, b"discarded").expect("written through");
        let meta = std::fs::metadata("/dev/null").expect("stat");
        assert!(
            meta.file_type().is_char_device(),
            "/dev/null is still a device"
        );
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("lstat")
                .file_type()
                .is_symlink(),
            "the link itself stays"
        );
    }

    #[cfg(unix)]
    #[test]
    fn fifo_is_written_through() {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let reader_path = fifo.clone();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(reader_path)
                .expect("open fifo")
                .read_to_string(&mut s)
                .expect("read fifo");
            s
        });
        write_atomic(&fifo, b"through the pipe").expect("written");
        assert_eq!(reader.join().expect("reader"), "through the pipe");
        let meta = std::fs::symlink_metadata(&fifo).expect("lstat");
        assert!(meta.file_type().is_fifo(), "the FIFO is still a FIFO");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_to_a_file_is_followed_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.json");
        std::fs::write(&real, "old").expect("seed");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        write_atomic(&link, b"new").expect("written");
        assert_eq!(std::fs::read(&real).expect("read"), b"new");
        assert!(std::fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink());
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink(dir.path().join("missing/x"), &dangling).expect("symlink");
        let e = write_atomic(&dangling, b"x").expect_err("dangling link refused");
        assert!(format!("{:#}", anyhow::Error::from(e)).contains("symbolic link"));
    }

    #[test]
    fn directories_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(write_atomic(dir.path(), b"x").is_err());
        assert!(dir.path().is_dir());
    }
}
