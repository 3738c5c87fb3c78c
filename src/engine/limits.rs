//! The process's own limits, checked before a run: a generator that runs
//! out of file descriptors mid-run fails its own connections, which would
//! read as the target refusing them.

use crate::error::UserError;

/// Descriptors kept for everything but the users' connections: standard
/// streams, the record files, the runtime's poller, DNS, scrapes in flight.
pub const RESERVE: u64 = 64;

/// The soft and hard limits on open files, after raising the soft one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// What this process may open now.
    pub soft: u64,
    /// The most it could raise that to.
    pub hard: Option<u64>,
}

/// Raise the soft limit on open files to the hard one (once per process)
/// and say where it stands; `None` where the system has no such limit.
pub fn raise_fd_limit() -> Option<FdLimit> {
    static RAISED: std::sync::OnceLock<Option<FdLimit>> = std::sync::OnceLock::new();
    *RAISED.get_or_init(raise)
}

#[cfg(unix)]
fn raise() -> Option<FdLimit> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        // macOS refuses a soft limit above OPEN_MAX even when the hard one
        // is unlimited; stay within what the kernel takes.
        let want = match l.maximum {
            Some(h) => Some(h),
            None => Some(1 << 20),
        };
        let raised = rustix::process::Rlimit {
            current: want,
            maximum: l.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            l = raised;
        }
    }
    Some(FdLimit {
        soft: l.current.unwrap_or(u64::MAX),
        hard: l.maximum,
    })
}

#[cfg(not(unix))]
fn raise() -> Option<FdLimit> {
    None
}

/// Refuse a run that needs more descriptors than the process may open.
pub fn check(users: u64, other: u64, limit: Option<FdLimit>) -> Result<(), UserError> {
    let Some(l) = limit else { return Ok(()) };
    let need = users + other + RESERVE;
    if need <= l.soft {
        return Ok(());
    }
    let hard = l
        .hard
        .map_or_else(|| "unlimited".to_string(), |h| h.to_string());
    Err(UserError::Environment {
        message: format!(
            "{users} users need about {need} open files (one connection each, plus {} for scrapes, listeners and the run's own files); this process may open {} (hard limit {hard})",
            other + RESERVE,
            l.soft
        ),
        hint: Some(
            "raise the limit before the run (`ulimit -n 65536`, or `LimitNOFILE=` for a service), or spread the users over shards (`flora-gate plan --shards N`)".into(),
        ),
    })
}

/// Bytes a run keeps on disk per request and per iteration.
pub const RECORD_BYTES: u64 = 96 + 40;

/// Free bytes in `dir`'s file system, where the system says.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// A warning when the temporary directory looks too small for the run's
/// records: `requests` expected (an estimate), `free` bytes there.
pub fn space_warning(dir: &std::path::Path, requests: u64, free: Option<u64>) -> Option<String> {
    let need = requests.saturating_mul(RECORD_BYTES);
    let free = free?;
    (free < need).then(|| {
        format!(
            "warning: {} has {} MiB free, and this run may record about {} MiB there ({} bytes a request, at about one request a second per user); a full disk stops the run (what was recorded is kept); set TMPDIR to a larger directory",
            dir.display(),
            free >> 20,
            need.div_ceil(1 << 20),
            RECORD_BYTES
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_tmpdir_is_warned_of() {
        let d = std::path::Path::new("/tmp");
        assert!(space_warning(d, 1_000_000, Some(10 << 20)).is_some());
        assert!(space_warning(d, 1_000, Some(10 << 20)).is_none());
        assert!(space_warning(d, u64::MAX, None).is_none());
    }

    use super::*;

    #[test]
    fn a_run_beyond_the_limit_is_refused_with_the_numbers() {
        let l = Some(FdLimit {
            soft: 1024,
            hard: Some(4096),
        });
        assert!(check(900, 2, l).is_ok());
        let e = check(1500, 2, l).expect_err("refused").to_string();
        assert!(e.contains("1500 users need about 1566 open files"), "{e}");
        assert!(e.contains("may open 1024 (hard limit 4096)"), "{e}");
        assert!(
            check(1_000_000, 0, None).is_ok(),
            "no limit known, no refusal"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let l = raise_fd_limit().expect("unix has a limit");
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(Some(l.soft), now.current.or(Some(u64::MAX)));
        if let Some(h) = l.hard {
            assert!(l.soft <= h);
        }
    }
}
