//! `flora-gate trace check` and `trace convert`.

use super::{Outcome, TraceCheckSettings, TraceConvertSettings};
use crate::output;

pub(super) fn check(s: &TraceCheckSettings) -> anyhow::Result<Outcome> {
    let i = s.replay.info(None);
    let mut out = format!(
        "{}: {} trace, {} lines; {} requests from {} sessions over {} of trace time\n",
        s.replay.path.display(),
        match s.replay.format {
            crate::scenario::trace::Format::Flora => "flora-gate",
            crate::scenario::trace::Format::Mooncake => "Mooncake",
        },
        i.lines,
        i.requests,
        i.sessions,
        humantime::format_duration(std::time::Duration::from_millis((i.span_s * 1000.0) as u64)),
    );
    if s.replay.begun_before > 0 {
        out.push_str(&format!(
            "{} of those sessions began before the window: their steps that need ids made earlier will fail\n",
            s.replay.begun_before
        ));
    }
    for (step, n) in &i.per_step {
        out.push_str(&format!("  {step}: {n}\n"));
    }
    out.push_str(&format!(
        "against {}: at --speed {} the replay sends for {}\n",
        s.scenario,
        s.replay.speed,
        humantime::format_duration(std::time::Duration::from_millis(
            s.replay.duration().as_millis() as u64
        )),
    ));
    output::out(&out);
    Ok(Outcome::Success)
}

pub(super) fn convert(s: &TraceConvertSettings) -> anyhow::Result<Outcome> {
    let c = crate::scenario::trace::convert::convert(&s.requests, &s.out)?;
    let mut line = format!(
        "{} requests of {} sessions written to {}",
        c.requests,
        c.sessions,
        s.out.display()
    );
    if c.reference_left_out > 0 {
        line.push_str(&format!(
            " ({} of the duet's reference side left out)",
            c.reference_left_out
        ));
    }
    eprintln!("{line}");
    Ok(Outcome::Success)
}
