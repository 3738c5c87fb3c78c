//! Property tests: the readers of untrusted input never panic, and the SSE
//! parser's output does not depend on how the bytes were split.

use std::path::Path;

use flora_gate::stream::chunk::StreamSpec;
use flora_gate::stream::sse::SseParser;
use proptest::prelude::*;

fn parse_all(pieces: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for piece in pieces {
        // Errors (over-long lines) are fine; panics are not.
        let _ = p.feed(piece, |d| out.push(d.to_vec()));
    }
    out
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points {
        pieces.push(bytes[last..p].to_vec());
        last = p;
    }
    pieces.push(bytes[last..].to_vec());
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn sse_events_do_not_depend_on_the_split(
        events in prop::collection::vec("[^\r\n]{0,40}", 1..8),
        endings in prop::collection::vec(0u8..3, 8),
        comments in prop::collection::vec(any::<bool>(), 8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let eol: &[u8] = match endings[i % endings.len()] { 0 => b"\n", 1 => b"\r\n", _ => b"\r" };
            if comments[i % comments.len()] {
                stream.extend_from_slice(b": keep-alive");
                stream.extend_from_slice(eol);
            }
            stream.extend_from_slice(b"data: ");
            stream.extend_from_slice(e.as_bytes());
            stream.extend_from_slice(eol);
            stream.extend_from_slice(eol);
        }
        let whole = parse_all(&[stream.clone()]);
        let pieces = parse_all(&split(&stream, &cuts));
        prop_assert_eq!(&whole, &pieces);
        let expected: Vec<Vec<u8>> = events.iter().map(|e| e.as_bytes().to_vec()).collect();
        prop_assert_eq!(whole, expected);
    }

    #[test]
    fn sse_and_chunk_readers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let events = parse_all(&split(&bytes, &cuts));
        let spec = StreamSpec::default();
        let generic = StreamSpec { fast: false, ..StreamSpec::default() };
        for e in events {
            let a = spec.interpret(&e, None);
            let b = generic.interpret(&e, None);
            prop_assert_eq!(a, b);
        }
        let _ = spec.interpret(&bytes, None);
    }

    #[test]
    fn scenario_reader_never_panics(text in "\\PC{0,300}") {
        let _ = flora_gate::scenario::Scenario::parse(&text, Path::new("fuzz.toml"), None, &[]);
    }

    #[test]
    fn mutated_scenarios_never_panic(pos in any::<usize>(), len in 0usize..20, insert in "\\PC{0,10}") {
        let base = flora_gate::scenario::BUNDLED[0].1;
        let mut chars: Vec<char> = base.chars().collect();
        let at = pos % chars.len();
        let end = (at + len).min(chars.len());
        chars.splice(at..end, insert.chars());
        let text: String = chars.into_iter().collect();
        let _ = flora_gate::scenario::Scenario::parse(&text, Path::new("fuzz.toml"), None, &[]);
    }

    #[test]
    fn baseline_result_and_tokens_readers_never_panic(pos in any::<usize>(), len in 0usize..40, insert in "\\PC{0,10}") {
        let base = flora_gate::commands::BASELINE;
        let mut chars: Vec<char> = base.chars().take(4000).collect();
        let at = pos % chars.len();
        let end = (at + len).min(chars.len());
        chars.splice(at..end, insert.chars());
        let text: String = chars.into_iter().collect();
        let _ = flora_gate::result::baseline::Baseline::parse(&text, Path::new("b.json"));
        let _ = flora_gate::result::RunResult::parse(&text, Path::new("r.json"));
        let _ = flora_gate::tokens::parse(&insert, Path::new("t.csv"));
    }

    #[test]
    fn whole_baseline_with_one_value_changed_never_panics(pos in any::<usize>(), replacement in prop::sample::select(vec!["null", "-1", "1e308", "\"x\"", "[]", "{}", "true"])) {
        let base = flora_gate::commands::BASELINE;
        // Replace one number in the file.
        let numbers: Vec<(usize, usize)> = base
            .char_indices()
            .filter(|(_, c)| c.is_ascii_digit())
            .map(|(i, _)| i)
            .fold(Vec::new(), |mut acc: Vec<(usize, usize)>, i| {
                match acc.last_mut() {
                    Some(last) if last.1 == i => last.1 = i + 1,
                    _ => acc.push((i, i + 1)),
                }
                acc
            });
        let (a, b) = numbers[pos % numbers.len()];
        let text = format!("{}{}{}", &base[..a], replacement, &base[b..]);
        if let Ok(b) = flora_gate::result::baseline::Baseline::parse(&text, Path::new("b.json")) {
            // A parsed baseline must be usable by the gate without panicking.
            let (_, current) = (0, flora_gate::result::RunResult::parse(
                &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/current.json")).expect("fixture"),
                Path::new("c.json"),
            ).expect("fixture parses"));
            let _ = flora_gate::gate::compare_baseline(&b, &current, &current.gate, vec![]);
        }
    }
}
