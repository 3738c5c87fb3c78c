use std::io::Write;

use super::*;
use crate::error::UserError;
use crate::scenario::Scenario;
use std::time::Duration;

fn scenario() -> Scenario {
    Scenario::load("replay-example", &[]).expect("bundled")
}

fn trace(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn open(text: &str) -> Result<Replay, UserError> {
    let f = trace(text);
    Replay::open(f.path(), &scenario(), 1.0, None, None)
}

fn error(text: &str) -> String {
    open(text).expect_err("refused").to_string()
}

#[test]
fn a_flora_trace_is_planned_and_read_again_alike() {
    let text = "\
{\"t_ms\": 1000, \"session\": \"w1\", \"book\": \"b1\", \"step\": \"outline\", \"prompt_tokens\": 300, \"output_tokens\": 80, \"prefix\": \"bible\", \"prefix_tokens\": 100}

{\"t_ms\": 1500, \"session\": 2, \"step\": \"draft\", \"prompt_chars\": 900}
{\"t_ms\": 4000, \"session\": \"w1\", \"book\": \"b1\", \"step\": \"draft\"}
";
    let f = trace(text);
    let r = Replay::open(f.path(), &scenario(), 2.0, None, None).expect("reads");
    assert_eq!((r.lines, r.requests, r.sessions), (4, 3, 2));
    assert_eq!(r.format, Format::Flora);
    assert_eq!(r.per_step[..2], [1, 2]);
    // The first request is the run's start; times run at twice the speed.
    assert_eq!(r.due(1000.0), Duration::ZERO);
    assert_eq!(r.due(4000.0), Duration::from_millis(1500));
    assert_eq!(r.token_steps, vec![0]);
    let again: Vec<TraceRequest> = r
        .requests()
        .expect("opens")
        .map(|x| x.expect("line"))
        .collect();
    assert_eq!(again.len(), 3);
    assert_eq!(again[1].session, "2");
    assert_eq!(again[1].line, 3);
    assert_eq!(
        again[0].prefix,
        Some(TracePrefix::Group {
            key: name_key("bible"),
            len: Len {
                n: 100,
                unit: Unit::Tokens
            }
        })
    );
    assert_eq!(
        again[1].prompt,
        Some(Len {
            n: 900,
            unit: Unit::Chars
        })
    );
    assert_eq!(again[2].prompt, None);
}

#[test]
fn a_mooncake_trace_maps_to_the_first_streamed_step() {
    let text = "\
{\"timestamp\": 0, \"input_length\": 1200, \"output_length\": 52, \"hash_ids\": [46, 47, 48]}
{\"timestamp\": 500, \"input_length\": 700, \"output_length\": 10, \"hash_ids\": [46, 47], \"extra\": true}
";
    let f = trace(text);
    let r = Replay::open(f.path(), &scenario(), 1.0, None, None).expect("reads");
    assert_eq!(r.format, Format::Mooncake);
    assert_eq!(r.sessions, 2, "each line its own session");
    let all: Vec<TraceRequest> = r
        .requests()
        .expect("opens")
        .map(|x| x.expect("line"))
        .collect();
    assert_eq!(all[0].step, 0);
    assert_eq!(all[0].prefix, Some(TracePrefix::Blocks(vec![46, 47, 48])));
    assert_eq!(all[1].output, Some(10));
    let named = Replay::open(f.path(), &scenario(), 1.0, None, Some(4)).expect("reads");
    assert_eq!(named.per_step[4], 2);
}

#[test]
fn bad_lines_are_named_with_what_is_wrong() {
    let ok = "{\"t_ms\": 100, \"session\": \"w\", \"step\": \"outline\"}\n";
    for (bad, says) in [
        ("{\"t_ms\": 50, \"session\": \"w\", \"step\": \"outline\"}", "before the line above"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"poem\"}", "`poem` is not a step"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"draft\", \"prompt_tokens\": -5}", "whole number from 1"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"draft\", \"output_tokens\": 1e12}", "whole number from 1"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"draft\", \"prompt_tokens\": 2.5}", "whole number"),
        ("{\"t_ms\": 200, \"step\": \"draft\"}", "missing field `session`"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"draft\", \"prompt_tokens\": 5, \"prompt_chars\": 9}", "not both"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"draft\", \"prompt_tokens\": 50, \"prefix\": \"b\"}", "needs its length"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"draft\", \"prompt_tokens\": 50, \"prefix\": \"b\", \"prefix_tokens\": 80}", "longer than the prompt"),
        ("{\"t_ms\": 200, \"session\": \"w\", \"step\": \"draft\", \"promt_tokens\": 50}", "unknown field `promt_tokens`"),
        ("{\"t_ms\": 1e15, \"session\": \"w\", \"step\": \"draft\"}", "not from 0 to a week"),
        ("not json", "expected"),
    ] {
        let e = error(&format!("{ok}{bad}\n"));
        assert!(e.contains("line 2"), "{bad}: {e}");
        assert!(e.contains(says), "{bad}: {e}");
    }
    let e = error("{\"t_ms\": 5}\n");
    assert!(
        e.contains("line 1") && e.contains("missing field `session`"),
        "{e}"
    );
    let e =
        error("{\"request_id\": \"fg-0-1-0\", \"start_ms\": 1.0, \"step\": \"a\", \"vu\": 0}\n");
    assert!(e.contains("trace convert"), "{e}");
    let e = error("{\"foo\": 1}\n");
    assert!(e.contains("not a trace line"), "{e}");
    let e = error("\n\n");
    assert!(e.contains("no requests"), "{e}");
}

#[test]
fn a_line_past_the_limit_is_refused_without_reading_it_whole() {
    let mut text = String::from("{\"t_ms\": 1, \"session\": \"w\", \"step\": \"outline\"}\n");
    text.push_str(&"x".repeat(4 * MAX_LINE));
    let e = error(&text);
    assert!(
        e.contains("line 2") && e.contains("longer than 64 kB"),
        "{e}"
    );
    let mut cursor = std::io::Cursor::new(vec![b'y'; 10 * MAX_LINE]);
    let mut buf = Vec::new();
    assert!(read_line(&mut cursor, &mut buf).is_err());
    assert!(
        cursor.position() <= MAX_LINE as u64 + 1,
        "read {}",
        cursor.position()
    );
    assert!(buf.len() <= MAX_LINE + 1);
}

#[test]
fn a_window_takes_a_slice_and_its_start_is_the_run_start() {
    let text: String = (0..10)
        .map(|i| {
            format!(
                "{{\"t_ms\": {}, \"session\": \"w{}\", \"step\": \"outline\"}}\n",
                i * 1000,
                i % 3
            )
        })
        .collect();
    let f = trace(&text);
    let w = Window::parse("2s..5s").expect("window");
    let r = Replay::open(f.path(), &scenario(), 1.0, Some(w), None).expect("reads");
    assert_eq!(r.requests, 3);
    assert_eq!(r.due(2000.0), Duration::ZERO);
    let times: Vec<f64> = r
        .requests()
        .expect("opens")
        .map(|x| x.expect("line").t_ms)
        .collect();
    assert_eq!(times, vec![2000.0, 3000.0, 4000.0]);
    assert_eq!(r.lines, 6, "reading stops at the window's end");
    // w0 and w1 sent a request before 2 s; w2 began inside the window.
    assert_eq!(r.begun_before, 2);
    let whole = Replay::open(f.path(), &scenario(), 1.0, None, None).expect("reads");
    assert_eq!(whole.begun_before, 0);
    let e = Replay::open(
        f.path(),
        &scenario(),
        1.0,
        Some(Window::parse("20s..").expect("w")),
        None,
    )
    .expect_err("empty window");
    assert!(e.to_string().contains("no request in the window"), "{e}");
    for bad in ["5s..2s", "2s", "x..3s"] {
        assert!(Window::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn too_many_sessions_ask_for_a_window() {
    let mut text = String::with_capacity(60 * (MAX_SESSIONS + 2));
    for i in 0..=MAX_SESSIONS {
        text.push_str(&format!("{{\"t_ms\":{i},\"session\":{i}}}\n"));
    }
    let f = trace(&text);
    let sc = scenario();
    let e = Replay::open(f.path(), &sc, 1.0, None, Some(0)).expect_err("too many");
    assert!(e.to_string().contains("--replay-window"), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("line {}", MAX_SESSIONS + 1)),
        "{e}"
    );
}
