//! Gate policy: which metrics gate, by what margin, at what error rate.
//! Plain data at the foundation: read from the scenario's `[gate]` table,
//! copied into every result, overridable on the command line, applied by the
//! gate.

pub mod metrics;
pub mod slo;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use metrics::Metric;

/// The `[gate]` table as written; every key optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Gated metrics, from the list in `flora-gate compare --help`.
    #[serde(default)]
    pub metrics: Option<Vec<String>>,
    /// Smallest change that can fail the gate (0.10 = 10%).
    #[serde(default)]
    pub margin: Option<f64>,
    /// Smallest significant change that warns.
    #[serde(default)]
    pub warn_margin: Option<f64>,
    /// The margin in duet mode (default 0.05): interleaved slots cancel the
    /// drift that makes a committed baseline need 10%.
    #[serde(default)]
    pub duet_margin: Option<f64>,
    /// Family-wise false-alarm level (Holm across gated metrics).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Absolute bound on the error rate (0.01 = 1%).
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Per-metric margins.
    #[serde(default)]
    pub margins: Option<BTreeMap<String, f64>>,
    /// Absolute objectives on the whole run: a latency maximum in ms or a
    /// rate minimum, e.g. `ttft_p90 = 800`.
    #[serde(default)]
    pub slo: Option<BTreeMap<String, f64>>,
    /// The stage of a staged load the gate judges (by name), e.g. the hold
    /// at 64 users of a short ramp; unset judges the whole run.
    #[serde(default)]
    pub stage: Option<String>,
}

/// A complete policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    /// Gated metrics.
    pub metrics: Vec<String>,
    /// Default margin.
    pub margin: f64,
    /// Warn margin.
    pub warn_margin: f64,
    /// Margin in duet mode.
    #[serde(default = "default_duet_margin")]
    pub duet_margin: f64,
    /// Family-wise α.
    pub alpha: f64,
    /// Error-rate bound.
    pub max_error_rate: f64,
    /// Per-metric margins.
    pub margins: BTreeMap<String, f64>,
    /// Absolute objectives.
    pub slo: BTreeMap<String, f64>,
    /// The stage judged, by name; `None` judges the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            metrics: ["ttft_p50", "ttft_p90", "tpot_p50", "output_tokens_per_s"]
                .map(String::from)
                .to_vec(),
            margin: 0.10,
            warn_margin: 0.05,
            duet_margin: default_duet_margin(),
            alpha: 0.01,
            max_error_rate: 0.01,
            margins: BTreeMap::new(),
            slo: BTreeMap::new(),
            stage: None,
        }
    }
}

fn default_duet_margin() -> f64 {
    0.05
}

impl Policy {
    /// The policy a duet is judged by: `duet_margin` in place of `margin`
    /// (per-metric margins still win), and warnings from half of it.
    pub fn for_duet(&self) -> Policy {
        Policy {
            margin: self.duet_margin,
            warn_margin: self.warn_margin.min(self.duet_margin / 2.0),
            ..self.clone()
        }
    }

    /// Defaults overlaid with a file's settings; `Err` names the bad key.
    pub fn from_file(f: &PolicyFile) -> Result<Self, String> {
        let mut p = Policy::default();
        p.apply(f)?;
        Ok(p)
    }

    /// Overlay settings (later layers win).
    pub fn apply(&mut self, f: &PolicyFile) -> Result<(), String> {
        if let Some(m) = &f.metrics {
            self.metrics = m.clone();
        }
        if let Some(v) = f.margin {
            self.margin = v;
        }
        if let Some(v) = f.warn_margin {
            self.warn_margin = v;
        }
        if let Some(v) = f.duet_margin {
            self.duet_margin = v;
        }
        if let Some(v) = f.alpha {
            self.alpha = v;
        }
        if let Some(v) = f.max_error_rate {
            self.max_error_rate = v;
        }
        if let Some(m) = &f.margins {
            self.margins.extend(m.clone());
        }
        if let Some(s) = &f.slo {
            self.slo.extend(s.clone());
        }
        if let Some(s) = &f.stage {
            self.stage = Some(s.clone());
        }
        self.validate()?;
        // Each metric under its one name (`ttft_p95.0` is `ttft_p95`).
        let canonical = |m: &String| Metric::parse(m).map_or_else(|_| m.clone(), |x| x.name());
        self.metrics = self.metrics.iter().map(canonical).collect();
        self.margins = self
            .margins
            .iter()
            .map(|(k, v)| (canonical(k), *v))
            .collect();
        self.slo = self.slo.iter().map(|(k, v)| (canonical(k), *v)).collect();
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if self.metrics.is_empty() {
            return Err("`metrics` is empty: a gate needs at least one metric (the default is ttft_p50, ttft_p90, tpot_p50, output_tokens_per_s)".into());
        }
        for m in self
            .metrics
            .iter()
            .chain(self.margins.keys())
            .chain(self.slo.keys())
        {
            let metric = Metric::parse(m)?;
            if metric.base == metrics::Base::ErrorRate && self.metrics.contains(m) {
                return Err("`error_rate` gates as an absolute bound: set `max_error_rate` instead of listing it".into());
            }
        }
        let frac = |name: &str, v: f64| {
            if (0.0..=10.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("`{name}` = {v} must be a fraction like 0.10"))
            }
        };
        frac("margin", self.margin)?;
        frac("warn_margin", self.warn_margin)?;
        frac("duet_margin", self.duet_margin)?;
        for (k, v) in &self.margins {
            frac(&format!("margins.{k}"), *v)?;
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(format!(
                "`alpha` = {} must be between 0 and 0.5",
                self.alpha
            ));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err(format!(
                "`max_error_rate` = {} must be between 0 and 1",
                self.max_error_rate
            ));
        }
        Ok(())
    }

    /// The margin of one metric.
    pub fn margin_of(&self, metric: &str) -> f64 {
        self.margins.get(metric).copied().unwrap_or(self.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let p = Policy::from_file(&PolicyFile {
            margin: Some(0.2),
            margins: Some([("ttft_p90".to_string(), 0.3)].into()),
            ..PolicyFile::default()
        })
        .expect("valid");
        assert_eq!(p.margin_of("ttft_p50"), 0.2);
        assert_eq!(p.margin_of("ttft_p90"), 0.3);
        assert_eq!(p.metrics.len(), 4);
    }

    #[test]
    fn bad_policies_are_explained() {
        let bad = |f: PolicyFile| Policy::from_file(&f).expect_err("invalid");
        assert!(bad(PolicyFile {
            metrics: Some(vec!["latency_p50".into()]),
            ..Default::default()
        })
        .contains("unknown metric"));
        assert!(bad(PolicyFile {
            alpha: Some(0.7),
            ..Default::default()
        })
        .contains("alpha"));
        assert!(bad(PolicyFile {
            metrics: Some(vec!["error_rate".into()]),
            ..Default::default()
        })
        .contains("max_error_rate"));
    }
}
