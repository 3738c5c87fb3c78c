//! Latency histograms in which failed requests are +∞.
//!
//! A failed request has no latency, but leaving it out would make errors look
//! like speed. So each histogram keeps the successes in an HdrHistogram
//! (microseconds, 3 significant figures) and the failures as a count of
//! values above every finite one. A percentile whose rank falls among the
//! failures is +∞ (`null` in JSON).

use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency tracked: one hour, in microseconds.
const HIGHEST_US: u64 = 3_600_000_000;

/// Successes in an HdrHistogram plus failures as +∞.
#[derive(Debug, Clone)]
pub struct LatencyHist {
    hist: Histogram<u64>,
    failures: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

/// A histogram that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("invalid serialized histogram: {0}")]
pub struct HistDecodeError(String);

impl LatencyHist {
    /// An empty histogram.
    pub fn new() -> Self {
        #[allow(clippy::expect_used, reason = "constant, valid bounds")]
        let hist = Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds");
        Self { hist, failures: 0 }
    }

    /// Record one finite latency (clamped into the tracked range).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(HIGHEST_US)
            .clamp(1, HIGHEST_US);
        // Saturating record cannot fail inside the bounds.
        self.hist.saturating_record(us);
    }

    /// Record a latency given in microseconds as f64 (derived metrics like TPOT).
    pub fn record_us(&mut self, us: f64) {
        if us.is_finite() {
            self.hist
                .saturating_record((us.round() as u64).clamp(1, HIGHEST_US));
        }
    }

    /// Record a failure: +∞.
    pub fn record_failure(&mut self) {
        self.failures += 1;
    }

    /// Add another histogram's counts (exact).
    pub fn merge(&mut self, other: &LatencyHist) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.failures += other.failures;
    }

    /// Finite values recorded.
    pub fn successes(&self) -> u64 {
        self.hist.len()
    }

    /// Failures recorded.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// All values, failures included.
    pub fn count(&self) -> u64 {
        self.hist.len() + self.failures
    }

    /// The q-quantile in milliseconds; `Some(f64::INFINITY)` when it falls
    /// among the failures, `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let ok = self.hist.len();
        if rank > ok {
            return Some(f64::INFINITY);
        }
        let q_ok = rank as f64 / ok as f64;
        Some(self.hist.value_at_quantile(q_ok.min(1.0)) as f64 / 1000.0)
    }

    /// Finite values above `ms` milliseconds.
    pub fn count_above_ms(&self, ms: f64) -> u64 {
        let floor = (ms * 1000.0).max(0.0) as u64;
        if floor >= HIGHEST_US {
            return 0;
        }
        // Values equal to `floor` share its bucket; the count above it is
        // every value minus those at or below.
        self.hist.len() - self.hist.count_between(0, floor)
    }

    /// Mean of the finite values in milliseconds.
    pub fn mean_ms(&self) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.mean() / 1000.0)
    }

    /// The summary written into results.
    pub fn dist(&self) -> Dist {
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        let q = |p| self.quantile_ms(p);
        Dist {
            count: self.count(),
            failures: self.failures,
            p50: finite(q(0.5)),
            p90: finite(q(0.9)),
            p95: finite(q(0.95)),
            p99: finite(q(0.99)),
            mean: self.mean_ms(),
            min: (!self.hist.is_empty()).then(|| self.hist.min() as f64 / 1000.0),
            max: (!self.hist.is_empty()).then(|| self.hist.max() as f64 / 1000.0),
        }
    }

    /// Base64 of the HdrHistogram V2 deflate encoding of the successes.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let mut s = V2DeflateSerializer::new();
        // Writing into a Vec only fails on a histogram too large to encode.
        if s.serialize(&self.hist, &mut buf).is_err() {
            buf.clear();
        }
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    /// Read back what [`encode`](Self::encode) wrote, with the failure count.
    pub fn decode(b64: &str, failures: u64) -> Result<Self, HistDecodeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| HistDecodeError(e.to_string()))?;
        let mut h = Self::new();
        if !bytes.is_empty() {
            let decoded: Histogram<u64> = Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .map_err(|e| HistDecodeError(format!("{e:?}")))?;
            h.hist
                .add(&decoded)
                .map_err(|e| HistDecodeError(format!("{e:?}")))?;
        }
        h.failures = failures;
        Ok(h)
    }
}

/// A distribution summary in milliseconds. A percentile is `null` when it is
/// +∞ (failures reach it) or when nothing was recorded; `count` and
/// `failures` tell the two apart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dist {
    /// Values, failures included.
    pub count: u64,
    /// Failures (+∞ values).
    pub failures: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
}

impl Dist {
    /// A percentile with +∞ restored: `None` only when nothing was recorded.
    pub fn get(&self, p: &str) -> Option<f64> {
        let v = match p {
            "p50" => self.p50,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "mean" => return self.mean,
            _ => return None,
        };
        match v {
            Some(x) => Some(x),
            None if self.count > 0 => Some(f64::INFINITY),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_successes() {
        let mut h = LatencyHist::new();
        for i in 1..=100 {
            h.record(ms(i));
        }
        let p50 = h.quantile_ms(0.5).expect("non-empty");
        assert!((49.9..=50.1).contains(&p50), "{p50}");
        let p99 = h.quantile_ms(0.99).expect("non-empty");
        assert!((98.9..=99.1).contains(&p99), "{p99}");
    }

    #[test]
    fn counts_above_a_limit() {
        let mut h = LatencyHist::new();
        for i in 1..=100 {
            h.record(ms(i));
        }
        h.record_failure();
        assert_eq!(h.count_above_ms(90.0), 10);
        assert_eq!(h.count_above_ms(0.0), 100);
        assert_eq!(h.count_above_ms(100.0), 0);
        assert_eq!(h.count_above_ms(1e12), 0);
    }

    #[test]
    fn failures_are_infinite_and_never_make_latency_better() {
        let mut h = LatencyHist::new();
        for i in 1..=90 {
            h.record(ms(i));
        }
        for _ in 0..10 {
            h.record_failure();
        }
        // Rank 50 of 100 is still the 50th success.
        let p50 = h.quantile_ms(0.5).expect("non-empty");
        assert!((49.9..=50.1).contains(&p50), "{p50}");
        assert_eq!(h.quantile_ms(0.95), Some(f64::INFINITY));
        let d = h.dist();
        assert_eq!(d.p95, None);
        assert_eq!(d.get("p95"), Some(f64::INFINITY));
        assert_eq!(d.failures, 10);
    }

    #[test]
    fn empty_has_no_percentiles() {
        let h = LatencyHist::new();
        assert_eq!(h.quantile_ms(0.5), None);
        assert_eq!(h.dist().get("p50"), None);
    }

    #[test]
    fn encode_decode_merge_is_exact() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        for i in 0..1000 {
            a.record(Duration::from_micros(100 + i * 37));
            b.record(Duration::from_micros(5000 + i * 11));
        }
        b.record_failure();
        let a2 = LatencyHist::decode(&a.encode(), a.failures()).expect("decodes");
        let b2 = LatencyHist::decode(&b.encode(), b.failures()).expect("decodes");
        let mut m1 = a.clone();
        m1.merge(&b);
        let mut m2 = a2;
        m2.merge(&b2);
        assert_eq!(m1.dist(), m2.dist());
        assert_eq!(m2.count(), 2001);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(LatencyHist::decode("!!!", 0).is_err());
        assert!(LatencyHist::decode("AAAA", 0).is_err());
    }
}
