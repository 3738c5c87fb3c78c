//! Text for people and scripts: data to stdout, messages to stderr.
//!
//! Two hazards are handled here, once, for every command:
//! - inside GitHub Actions the runner executes any output line that starts
//!   with `::` (or holds a legacy `##[` command). Text that flora-gate did not
//!   write itself (a scenario or step name, a file's content, a server's or
//!   GitHub's words) must never become a command, so such text is printed
//!   inside a `::stop-commands::` block with an unguessable token;
//! - a closed pipe (`flora-gate report … | head`) ends the output quietly
//!   instead of panicking.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;

/// Whether this process runs as a GitHub Actions step.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Print data on stdout.
pub fn out(text: &str) {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    write_guarded(&mut lock, text, in_actions());
}

/// Print one message line on stderr.
pub fn err_line(text: &str) {
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    let mut line = text.to_string();
    line.push('\n');
    write_guarded(&mut lock, &line, in_actions());
}

/// Whether a line would be read by the Actions runner as a command.
pub fn looks_like_command(line: &str) -> bool {
    line.trim_start().starts_with("::") || line.contains("##[")
}

/// Write `text`; in Actions, with command processing stopped around it
/// when any of its lines could be taken for a command. Write errors (a
/// closed pipe among them) are dropped: the output is for reading only,
/// and results are files written before anything is printed.
pub fn write_guarded(w: &mut impl Write, text: &str, actions: bool) {
    let _ = if actions && text.lines().any(looks_like_command) {
        let token = fresh_token(text);
        write!(w, "::stop-commands::{token}\n{text}")
            .and_then(|()| {
                if text.ends_with('\n') {
                    Ok(())
                } else {
                    writeln!(w)
                }
            })
            .and_then(|()| writeln!(w, "::{token}::"))
    } else {
        w.write_all(text.as_bytes())
    }
    .and_then(|()| w.flush());
}

/// A token the guarded text does not contain, from the OS-seeded hasher
/// keys of `RandomState`, so the text cannot guess it and resume commands.
fn fresh_token(text: &str) -> String {
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(text.as_bytes());
        let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
        h2.write_u64(h.finish());
        let token = format!("flora-gate-{:016x}{:016x}", h.finish(), h2.finish());
        if !text.contains(&token) {
            return token;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_commands_are_fenced_in_actions() {
        let mut buf = Vec::new();
        write_guarded(&mut buf, "name\n::add-mask::x\n  ::warning ::y\n", true);
        let text = String::from_utf8(buf).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        let token = lines[0].strip_prefix("::stop-commands::").expect("fenced");
        assert!(token.len() > 20);
        assert_eq!(lines.last().copied(), Some(format!("::{token}::").as_str()));
        assert_eq!(&lines[1..4], ["name", "::add-mask::x", "  ::warning ::y"]);
    }

    #[test]
    fn plain_text_and_non_actions_output_are_untouched() {
        let mut buf = Vec::new();
        write_guarded(&mut buf, "a :: b\n", true);
        assert_eq!(buf, b"a :: b\n");
        let mut buf = Vec::new();
        write_guarded(&mut buf, "::warning::x\n", false);
        assert_eq!(buf, b"::warning::x\n");
        let mut buf = Vec::new();
        write_guarded(&mut buf, "see ##[error]x", true);
        assert!(String::from_utf8(buf)
            .expect("utf8")
            .starts_with("::stop-commands::"));
    }

    #[test]
    fn tokens_differ_and_avoid_the_text() {
        assert_ne!(fresh_token("x"), fresh_token("x"));
    }

    #[test]
    fn a_closed_pipe_is_not_a_panic() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        write_guarded(&mut Closed, "report\n", false);
    }
}
