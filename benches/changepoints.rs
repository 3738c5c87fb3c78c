//! The history's detection and false-alarm figures on synthetic nightly
//! series with known truth (log-normal noise of a given CV, seeded): how
//! often a step is found (with the true night inside its range) by the
//! time N nights at the new level are recorded, how many change points 100
//! stationary nights give, and after how many nights a creep of 1% a night
//! is reported. `cargo bench --bench changepoints` prints the tables the
//! README and docs/history.md quote.

use std::time::Instant;

use flora_gate::gate::change::{self, normal};
use flora_gate::gate::trend::{self, Settings};
use flora_gate::result::history::Read;
use rand::rngs::SmallRng;
use rand::SeedableRng;

const SEEDS: u64 = 200;
const BEFORE: usize = 30;

fn series(n: usize, cv: f64, seed: u64, level: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|i| 100.0 * level(i) * (cv * normal(&mut rng)).exp())
        .collect()
}

fn found(cv: f64, step: f64, after: usize) -> f64 {
    let s = change::Settings::default();
    let hits = (0..SEEDS)
        .filter(|&seed| {
            let v = series(BEFORE + after, cv, seed, |i| {
                if i >= BEFORE {
                    1.0 + step
                } else {
                    1.0
                }
            });
            change::detect(&v, &s)
                .iter()
                .any(|c| c.step.abs() >= 0.02 && c.earliest <= BEFORE && BEFORE <= c.latest)
        })
        .count();
    hits as f64 / SEEDS as f64
}

/// A history of `values` (TTFT p90 over all steps), one record a night.
fn history(values: &[f64]) -> Read {
    let records = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let date = format!("2026-{:02}-{:02}T03:00:00Z", 1 + i / 28, 1 + i % 28);
            let json = serde_json::json!({
                "kind": "flora-gate/history", "schema_version": 1,
                "commit": format!("{i:040x}"), "date": date, "source": "nightly",
                "tool_version": "1.0.0",
                "scenario": {"name": "novel", "origin": "bundled:novel", "sha256": "ab"},
                "concurrency": 4, "vars": {}, "target": "http://127.0.0.1:1",
                "runner": {"os": "linux", "arch": "x86_64", "cores": 2, "hostname": "r"},
                "gate": flora_gate::policy::Policy::default(),
                "runs": 1,
                "run": {"started_at": date, "metrics": {"all": {"ttft_p90": v}}, "blocks": []}
            });
            serde_json::from_value(json).expect("a record")
        })
        .collect();
    Read {
        records,
        skipped: vec![],
    }
}

/// The first night (counted from the creep's start) on which the analysis
/// reports the creep: a worse change point or a drift.
fn creep_reported(cv: f64, seed: u64) -> Option<usize> {
    let v = series(BEFORE + 20, cv, 7_000 + seed, |i| {
        1.01f64.powi(i.saturating_sub(BEFORE - 1) as i32)
    });
    (1..=20).find(|&k| {
        let t = trend::analyse(&history(&v[..BEFORE + k]), &Settings::default()).expect("analysed");
        t.series.iter().any(|s| {
            s.drift.is_some()
                || s.changes
                    .iter()
                    .any(|c| c.regression && c.change.index >= BEFORE - 3)
        })
    })
}

fn main() {
    let started = Instant::now();
    let cvs = [0.0125, 0.03, 0.05, 0.10, 0.15];
    println!(
        "change points: binary segmentation on logarithms, permutation p ≤ 0.01 (999 shuffles), ≥ 3 nights a side, steps ≥ 2%;\n{SEEDS} seeds a cell, {BEFORE} steady nights before the step; found = a change point whose range holds the step's night\n"
    );
    print!("{:<22}", "step, nights after");
    for cv in cvs {
        print!(
            "{:>9}",
            format!("CV {:.2}%", cv * 100.0).replace(".00%", "%")
        );
    }
    println!();
    for (step, after) in [
        (0.05, 3),
        (0.05, 5),
        (0.05, 10),
        (0.05, 20),
        (0.10, 3),
        (0.10, 10),
        (0.25, 3),
        (0.50, 3),
    ] {
        print!("{:<22}", format!("+{:.0}%, {after}", step * 100.0));
        for cv in cvs {
            print!("{:>9}", format!("{:.0}%", found(cv, step, after) * 100.0));
        }
        println!();
    }
    println!("\nfalse change points per series of 100 stationary nights ({SEEDS} seeds):");
    for cv in cvs {
        let s = change::Settings::default();
        let points: usize = (0..SEEDS)
            .map(|seed| {
                change::detect(&series(100, cv, 50_000 + seed, |_| 1.0), &s)
                    .iter()
                    .filter(|c| c.step.abs() >= 0.02)
                    .count()
            })
            .sum();
        println!(
            "  CV {:>5.2}%: {:.3}",
            cv * 100.0,
            points as f64 / SEEDS as f64
        );
    }
    println!("\ncreep of 1% a night after {BEFORE} steady nights: nights until reported (a worse step or a drift past the warn margin), 100 seeds");
    for cv in [0.0125, 0.03, 0.05] {
        let mut nights: Vec<usize> = (0..100)
            .map(|s| creep_reported(cv, s).unwrap_or(99))
            .collect();
        nights.sort_unstable();
        let within10 = nights.iter().filter(|&&n| n <= 10).count();
        println!(
            "  CV {:>5.2}%: median {} nights, within 10 nights in {within10}%",
            cv * 100.0,
            nights[nights.len() / 2]
        );
    }
    println!("\n({:.0} s)", started.elapsed().as_secs_f64());
}
