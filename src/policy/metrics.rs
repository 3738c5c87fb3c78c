//! The metric vocabulary: a metric is a base (TTFT, TPOT, ITL, TTFB, E2E,
//! a rate, the error rate) and, for latencies, a quantile (`p50`, `p95`,
//! `p99.9`, any). One parser reads every metric name the gate, the
//! hypotheses, capacity objectives, results and reports use; a base is one
//! entry in the `bases!` list below (the enum and its table come from it),
//! and `result::values` reads its figures in `match`es the compiler keeps
//! complete. Plain data.
//!
//! Scope `all` pools every streamed step (histograms merged exactly), so a
//! handful of gated metrics cover the whole workflow; each step is also its
//! own scope for the per-step table.

use std::collections::BTreeMap;
use std::fmt;

/// Declares [`Base`] and [`BASES`] from one list, so a base and its entry
/// cannot drift apart.
macro_rules! bases {
    ($($(#[$doc:meta])* $variant:ident {
        key: $key:literal, label: $label:literal, unit: $unit:literal,
        higher_is_worse: $worse:literal, latency: $latency:literal, streamed_only: $streamed:literal $(,)?
    }),* $(,)?) => {
        /// What a metric measures, before any statistic.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Base {
            $($(#[$doc])* $variant,)*
        }

        /// Every base, in the order reports show them.
        pub const BASES: &[BaseDef] = &[
            $(BaseDef {
                base: Base::$variant,
                key: $key,
                label: $label,
                unit: $unit,
                higher_is_worse: $worse,
                latency: $latency,
                streamed_only: $streamed,
            },)*
        ];
    };
}

/// One base: its name in files, its label, its unit, which way is worse,
/// whether it is a latency (then it takes a quantile) and whether only a
/// streamed step has it.
#[derive(Debug, Clone, Copy)]
pub struct BaseDef {
    /// The base.
    pub base: Base,
    /// Key in files (`ttft`; a whole metric name for a rate).
    pub key: &'static str,
    /// Human label.
    pub label: &'static str,
    /// Unit for display.
    pub unit: &'static str,
    /// True for latencies and error rates.
    pub higher_is_worse: bool,
    /// A latency distribution (named with a quantile: `ttft_p90`).
    pub latency: bool,
    /// Only a streamed step has it (no token timings in a JSON reply).
    pub streamed_only: bool,
}

bases! {
    /// Time to first token (a latency).
    Ttft { key: "ttft", label: "TTFT", unit: "ms", higher_is_worse: true, latency: true, streamed_only: true },
    /// Time per output token after the first (a latency).
    Tpot { key: "tpot", label: "TPOT", unit: "ms", higher_is_worse: true, latency: true, streamed_only: true },
    /// Inter-token latency, gap by gap (a latency).
    Itl { key: "itl", label: "ITL", unit: "ms", higher_is_worse: true, latency: true, streamed_only: true },
    /// Time to the response's first byte (a latency).
    Ttfb { key: "ttfb", label: "TTFB", unit: "ms", higher_is_worse: true, latency: true, streamed_only: false },
    /// End to end: request to last token (a latency).
    E2e { key: "e2e", label: "E2E", unit: "ms", higher_is_worse: true, latency: true, streamed_only: false },
    /// Output tokens per second.
    OutputTokensPerS { key: "output_tokens_per_s", label: "output tok/s", unit: "tok/s", higher_is_worse: false, latency: false, streamed_only: false },
    /// Requests per second.
    RequestsPerS { key: "requests_per_s", label: "requests/s", unit: "req/s", higher_is_worse: false, latency: false, streamed_only: false },
    /// Successful requests per second.
    GoodputPerS { key: "goodput_per_s", label: "goodput", unit: "req/s", higher_is_worse: false, latency: false, streamed_only: false },
    /// Failed requests over requests.
    ErrorRate { key: "error_rate", label: "error rate", unit: "", higher_is_worse: true, latency: false, streamed_only: false },
}

impl Base {
    /// Its entry in [`BASES`].
    pub fn def(self) -> &'static BaseDef {
        // `bases!` lists the variants and the table in one order.
        &BASES[self as usize]
    }
}

/// A metric: a base, and a quantile (0 < q < 1) when the base is a latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// What is measured.
    pub base: Base,
    /// Which quantile of a latency; `None` for rates.
    pub quantile: Option<f64>,
}

impl Metric {
    /// Read a metric name: `ttft_p90`, `itl_p99.9`, `e2e_p50`,
    /// `output_tokens_per_s`, `error_rate`. `Err` says why not.
    pub fn parse(name: &str) -> Result<Metric, String> {
        let name = name.trim();
        if let Some(d) = BASES.iter().find(|d| !d.latency && d.key == name) {
            return Ok(Metric {
                base: d.base,
                quantile: None,
            });
        }
        let unknown = || {
            format!(
                "unknown metric `{name}`; a latency with a quantile ({}, each _pNN such as _p50, _p95, _p99.9) or one of {}",
                BASES
                    .iter()
                    .filter(|d| d.latency)
                    .map(|d| d.key)
                    .collect::<Vec<_>>()
                    .join(", "),
                BASES
                    .iter()
                    .filter(|d| !d.latency)
                    .map(|d| d.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let (key, stat) = name.rsplit_once('_').ok_or_else(unknown)?;
        let d = BASES
            .iter()
            .find(|d| d.latency && d.key == key)
            .ok_or_else(unknown)?;
        let digits = stat.strip_prefix('p').ok_or_else(unknown)?;
        let ok_digits = !digits.is_empty()
            && !digits.starts_with('.')
            && !digits.ends_with('.')
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.matches('.').count() <= 1;
        let pct: f64 = digits
            .parse()
            .ok()
            .filter(|p| ok_digits && *p > 0.0 && *p < 100.0)
            .ok_or_else(|| {
                format!("`{name}`: the quantile `{stat}` must be p followed by a percentage above 0 and below 100 (p50, p95, p99.9)")
            })?;
        Ok(Metric {
            base: d.base,
            // Exact for the usual spellings: p99.9 is 0.999, not 0.999…01.
            quantile: Some((pct * 1e7).round() / 1e9),
        })
    }

    /// The canonical name (`ttft_p90`, `itl_p99.9`, `error_rate`).
    pub fn name(&self) -> String {
        let d = self.base.def();
        match self.quantile {
            Some(q) => format!("{}_{}", d.key, quantile_word(q)),
            None => d.key.to_string(),
        }
    }

    /// The label reports show (`TTFT p90`).
    pub fn label(&self) -> String {
        let d = self.base.def();
        match self.quantile {
            Some(q) => format!("{} {}", d.label, quantile_word(q)),
            None => d.label.to_string(),
        }
    }

    /// The unit for display.
    pub fn unit(&self) -> &'static str {
        self.base.def().unit
    }

    /// True when a rise is a regression.
    pub fn higher_is_worse(&self) -> bool {
        self.base.def().higher_is_worse
    }

    /// The latency and quantile it names: `(Base::Ttft, 0.9)` for
    /// `ttft_p90`; `None` for a rate.
    pub fn latency(&self) -> Option<(Base, f64)> {
        self.quantile.map(|q| (self.base, q))
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `p90` for 0.9, `p99.9` for 0.999: the percentage without trailing zeros.
fn quantile_word(q: f64) -> String {
    let pct = format!("{:.6}", q * 100.0);
    let pct = pct.trim_end_matches('0').trim_end_matches('.');
    format!("p{pct}")
}

/// The metrics every result carries and every report's full table shows,
/// in order; a policy, hypothesis or objective may name any other.
pub const SHOWN: &[&str] = &[
    "ttft_p50",
    "ttft_p90",
    "ttft_p99",
    "tpot_p50",
    "tpot_p90",
    "itl_p50",
    "e2e_p50",
    "e2e_p90",
    "output_tokens_per_s",
    "requests_per_s",
    "goodput_per_s",
    "error_rate",
];

/// What a metric is and which way is worse, by name.
#[derive(Debug, Clone)]
pub struct MetricDef {
    /// Canonical name.
    pub name: String,
    /// Human label.
    pub label: String,
    /// Unit for display.
    pub unit: &'static str,
    /// True for latencies and error rates.
    pub higher_is_worse: bool,
}

/// Look a metric up by name.
pub fn metric_def(name: &str) -> Option<MetricDef> {
    let m = Metric::parse(name).ok()?;
    Some(MetricDef {
        name: m.name(),
        label: m.label(),
        unit: m.unit(),
        higher_is_worse: m.higher_is_worse(),
    })
}

/// Scope name of the pooled streamed steps.
pub const ALL: &str = "all";
/// Scope name of whole workflow iterations.
pub const WORKFLOW: &str = "workflow";

/// metric → value (+∞ allowed for latencies reached by failures).
pub type Values = BTreeMap<String, f64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_itself() {
        for name in SHOWN.iter().copied().chain([
            "ttft_p95",
            "itl_p99",
            "itl_p99.9",
            "ttfb_p50",
            "e2e_p99.99",
            "tpot_p1",
        ]) {
            let m = Metric::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.name(), name);
            assert_eq!(Metric::parse(&m.name()), Ok(m));
        }
        let m = Metric::parse("itl_p99.9").expect("parses");
        assert_eq!(m.latency(), Some((Base::Itl, 0.999)));
        assert_eq!(m.label(), "ITL p99.9");
        assert!(Metric::parse("output_tokens_per_s").is_ok_and(|m| !m.higher_is_worse()));
    }

    #[test]
    fn bad_names_say_why() {
        for bad in [
            "",
            "ttft",
            "ttft_p",
            "ttft_p0",
            "ttft_p100",
            "ttft_p9x",
            "ttft_p.5",
            "ttft_p5.",
            "ttft_p1.2.3",
            "goodput",
            "error_rate_p50",
            "p50",
            "ttft_mean",
            "latency_p50",
        ] {
            let e = Metric::parse(bad).expect_err(bad);
            assert!(e.contains(bad.trim()) || bad.is_empty(), "{bad}: {e}");
        }
    }
}
