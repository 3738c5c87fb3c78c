//! Reading events, in nanoseconds per event, hot in the cache: the SSE
//! framing, the default chunk shape through the one-pass walk, and the same
//! chunk through the generic JSON reader. `cargo bench --bench events`.

use std::hint::black_box;
use std::time::Instant;

use flora_gate::stream::chunk::StreamSpec;
use flora_gate::stream::sse::SseParser;

const ROUNDS: usize = 7;
const EVENTS: usize = 300_000;

/// Median over `ROUNDS` of the time per call of `f`, in nanoseconds.
fn per_event(mut f: impl FnMut() -> usize) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let mut sink = 0usize;
            for _ in 0..EVENTS {
                sink = sink.wrapping_add(f());
            }
            black_box(sink);
            t.elapsed().as_nanos() as f64 / EVENTS as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let event = br#"{"id":"chatcmpl-1a2b3c4d5e","object":"chat.completion.chunk","created":1764288000,"model":"mock-model","choices":[{"index":0,"delta":{"content":"night "},"finish_reason":null}]}"#;
    let mut framed = b"data: ".to_vec();
    framed.extend_from_slice(event);
    framed.extend_from_slice(b"\n\n");

    let walk = StreamSpec::default();
    let generic = StreamSpec {
        fast: false,
        ..StreamSpec::default()
    };
    let mut parser = SseParser::new();
    let sse = per_event(|| {
        let mut n = 0;
        parser
            .feed(black_box(&framed), |d| n += d.len())
            .expect("SSE");
        n
    });
    let read = |spec: &StreamSpec| {
        per_event(|| {
            spec.interpret(black_box(event), None)
                .expect("JSON")
                .content_len
        })
    };
    let (fast, slow) = (read(&walk), read(&generic));
    println!(
        "{}-byte chat chunk, median of {ROUNDS} rounds of {EVENTS} events:",
        event.len()
    );
    println!("  SSE framing:            {sse:7.1} ns/event");
    println!("  chunk, one-pass walk:   {fast:7.1} ns/event");
    println!(
        "  chunk, generic reader:  {slow:7.1} ns/event ({:.1}x the walk)",
        slow / fast
    );
}
