//! The gate over weeks: the history's records of one setup made into a
//! series per metric and scope, each searched for change points
//! ([`super::change`]) and compared with its long-term reference (the nights
//! before its first change point), so a slow creep is said once it sums past
//! the margin even when no single night stepped.
//!
//! Everything the records do not make plain is said in `notes`: other
//! setups, unfit or unreadable records, gaps, repeated commits, a new
//! flora-gate version or runner, metrics missing on some nights.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::change::{self, Change};
use super::math::{mean_sd, t_cdf, t_quantile};
use crate::policy::metrics::{metric_def, ALL, WORKFLOW};
use crate::policy::Policy;
use crate::result::history::{Read, Record, Setup};

/// The `kind` of a trend file.
pub const KIND: &str = "flora-gate/trend";
/// Version of the trend format.
pub const SCHEMA_VERSION: u32 = 1;

/// How the history is read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The change-point search.
    pub change: change::Settings,
    /// The setup to analyse: a scenario name or a prefix of its sha256
    /// (default: the newest record's).
    pub setup: Option<String>,
    /// Only the newest N nights.
    pub last: Option<usize>,
    /// Smallest step reported (0.02 = 2%): a series quieter than its
    /// server's meaning shows real but idle changes.
    pub min_step: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            change: change::Settings::default(),
            setup: None,
            last: None,
            min_step: 0.02,
        }
    }
}

/// One night: a record of the setup that is a fair measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Night {
    /// Commit measured.
    pub commit: Option<String>,
    /// When, RFC 3339.
    pub date: String,
    /// What made it.
    pub source: String,
    /// flora-gate's version.
    pub tool_version: String,
    /// The runner: host name (or OS/arch) and cores.
    pub runner: String,
}

/// A change point placed on the nights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// The change (indices are nights).
    #[serde(flatten)]
    pub change: Change,
    /// The last commit surely on the old level.
    pub from_commit: Option<String>,
    /// The first commit surely on the new level.
    pub to_commit: Option<String>,
    /// Date of the likeliest first night on the new level.
    pub date: String,
    /// The step is in the worse direction.
    pub regression: bool,
}

/// The newest level against the long-term reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Relative change of the newest nights against the reference.
    pub change: f64,
    /// 95% interval.
    pub low: f64,
    /// 95% interval.
    pub high: f64,
    /// One-sided p-value that the change is real.
    pub p_value: f64,
    /// Nights in the reference.
    pub reference_nights: usize,
    /// Nights since the reference ended.
    pub nights: usize,
    /// The date the reference ends.
    pub since: String,
    /// Change points between the reference and now.
    pub steps: usize,
    /// The largest of their steps (0 without any).
    pub largest_step: f64,
    /// `warn` past the warn margin, `fail` past the margin.
    pub level: String,
}

/// One metric in one scope over the nights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// `all`, `workflow` or a step.
    pub scope: String,
    /// Metric name.
    pub metric: String,
    /// Human label.
    pub label: String,
    /// Unit.
    pub unit: String,
    /// Latencies and error rates.
    pub higher_is_worse: bool,
    /// The policy gates this metric.
    pub gated: bool,
    /// Per night; `null` when missing, not finite or not positive.
    pub values: Vec<Option<f64>>,
    /// Change points, oldest first.
    pub changes: Vec<Found>,
    /// Against the long-term reference, when past the warn margin.
    pub drift: Option<Drift>,
}

/// The analysis of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// [`KIND`].
    pub kind: String,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The setup analysed.
    pub setup: Setup,
    /// The nights, oldest first.
    pub nights: Vec<Night>,
    /// Every series, `all` first.
    pub series: Vec<Series>,
    /// What the reader should know about the data.
    pub notes: Vec<String>,
    /// The method and its settings, in words.
    pub method: String,
}

impl Trend {
    /// The series a nightly report leads with: the gated metrics over all
    /// steps.
    pub fn headline_series(&self) -> impl Iterator<Item = &Series> {
        self.series.iter().filter(|s| s.gated && s.scope == ALL)
    }

    /// Every other series: per step, per workflow, ungated metrics.
    pub fn other_series(&self) -> impl Iterator<Item = &Series> {
        self.series.iter().filter(|s| !(s.gated && s.scope == ALL))
    }

    /// Regression steps and drifts of the headline series.
    pub fn findings(&self) -> usize {
        self.headline_series()
            .map(|s| {
                s.changes.iter().filter(|c| c.regression).count() + usize::from(s.drift.is_some())
            })
            .sum()
    }
}

impl Drift {
    /// Worth saying beside the change points: no step since the reference
    /// explains most of it.
    pub fn beyond_steps(&self) -> bool {
        self.largest_step.abs() < self.change.abs() / 2.0
    }
}

/// The records of the chosen setup that are fair measurements, oldest
/// first, with what was left out said in `notes`.
pub fn nights_of<'a>(
    read: &'a Read,
    s: &Settings,
    notes: &mut Vec<String>,
) -> Result<(Setup, Vec<&'a Record>), String> {
    notes.extend(
        read.skipped
            .iter()
            .map(|k| format!("line {} left out: {}", k.line, k.why)),
    );
    let setup = choose_setup(&read.records, s.setup.as_deref(), notes)?;
    let mut records: Vec<(usize, &Record)> = read
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.setup() == setup)
        .collect();
    sort_and_dedupe(&mut records, notes);
    records.retain(|(i, r)| match &r.unfit {
        Some(why) => {
            notes.push(format!(
                "the run of {} (record {}) left out: {why}",
                day(&r.date),
                i + 1
            ));
            false
        }
        None => true,
    });
    if let Some(last) = s.last.filter(|&l| l < records.len()) {
        notes.push(format!(
            "the newest {last} of {} nights analysed (`--last`)",
            records.len()
        ));
        records.drain(..records.len() - last);
    }
    if records.is_empty() {
        return Err(format!(
            "no record of {setup} is a fair measurement; nothing to analyse"
        ));
    }
    Ok((setup, records.into_iter().map(|(_, r)| r).collect()))
}

/// Analyse the records read from a history file.
pub fn analyse(read: &Read, s: &Settings) -> Result<Trend, String> {
    analyse_nights(read, s).map(|(t, _)| t)
}

/// The analysis and the records its nights are, in the same order.
fn analyse_nights<'a>(read: &'a Read, s: &Settings) -> Result<(Trend, Vec<&'a Record>), String> {
    let mut notes = Vec::new();
    let (setup, records) = nights_of(read, s, &mut notes)?;
    let need = 2 * s.change.min_segment.max(1);
    if records.len() < need {
        notes.push(format!(
            "{} night(s) of this setup: change points need at least {need}; values shown only",
            records.len()
        ));
    }
    describe_nights(&records, &mut notes);
    let nights: Vec<Night> = records.iter().map(|r| night(r)).collect();
    let policy = &records[records.len() - 1].gate;
    let series = keys(&records)
        .into_iter()
        .map(|(scope, metric)| series(&records, &nights, policy, &scope, &metric, s, &mut notes))
        .collect();
    let trend = Trend {
        kind: KIND.into(),
        schema_version: SCHEMA_VERSION,
        setup,
        nights,
        series,
        notes,
        method: format!(
            "binary segmentation of each series' logarithms: the split with the largest two-sample t is a change point when {} shuffled copies say p ≤ {} (at least {} nights each side); the newest {} nights against the nights before the first change point, past the warn margin at p ≤ {}",
            s.change.permutations, s.change.alpha, s.change.min_segment, RECENT, s.change.alpha
        ),
    };
    Ok((trend, records))
}

/// The nights since the newest change point of any gated metric over all
/// steps (all nights when there is none): what a baseline that must not
/// mix two levels holds. Returns the records and a sentence saying why.
pub fn since_last_change<'a>(
    read: &'a Read,
    s: &Settings,
) -> Result<(Vec<&'a Record>, String), String> {
    let (t, records) = analyse_nights(read, s)?;
    let newest = t
        .series
        .iter()
        .filter(|x| x.gated && x.scope == ALL)
        .flat_map(|x| x.changes.iter().map(move |c| (x, c)))
        .max_by_key(|(_, c)| c.change.index);
    let (from, why) = match newest {
        Some((x, c)) => (
            c.change.latest,
            format!(
                "the {} nights since {}'s change point ({} {:+.1}%, from {})",
                records.len() - c.change.latest,
                x.label,
                day(&c.date),
                c.change.step * 100.0,
                day(&records[c.change.latest].date)
            ),
        ),
        None => (
            0,
            format!(
                "all {} nights (no change point in the gated metrics)",
                records.len()
            ),
        ),
    };
    let min = s.change.min_segment.max(1);
    if records.len() - from < min {
        return Err(format!(
            "only {} night(s) since the newest change point ({}); a baseline of one level needs {min}: wait for more nights or refresh from runs",
            records.len() - from,
            day(&records[from.min(records.len() - 1)].date)
        ));
    }
    Ok((records[from..].to_vec(), why))
}

/// The current run against the history's long-term reference: it joins
/// the history as its newest night, and each gated metric over all steps
/// that drifted past the warn margin is a sentence, with whether it is past
/// the margin itself.
pub fn against_reference(read: &Read, current: Record) -> Vec<(String, bool)> {
    let mut read = read.clone();
    let sha = current.scenario.sha256.clone();
    read.records.push(current);
    let s = Settings {
        setup: Some(sha),
        ..Settings::default()
    };
    let Ok(t) = analyse(&read, &s) else {
        return Vec::new();
    };
    t.headline_series()
        .filter_map(|x| {
            let d = x.drift.as_ref()?;
            let steps = match d.steps {
                0 => "no single step".to_string(),
                n => format!("{n} step(s) on the way"),
            };
            Some((
                format!(
                    "against the long-term reference (the {} nights up to {}): {} {:+.1}% (95% {:+.1}% to {:+.1}%) with this run, over {} nights, {steps}",
                    d.reference_nights,
                    day(&d.since),
                    x.label,
                    d.change * 100.0,
                    d.low * 100.0,
                    d.high * 100.0,
                    d.nights
                ),
                d.level == "fail",
            ))
        })
        .collect()
}

/// Nights that make the newest level.
pub const RECENT: usize = 3;

fn choose_setup(
    records: &[Record],
    wanted: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Setup, String> {
    let newest = |pred: &dyn Fn(&Record) -> bool| {
        records
            .iter()
            .filter(|r| pred(r))
            .max_by(|a, b| a.date.cmp(&b.date))
    };
    let chosen = match wanted {
        None => newest(&|_| true).ok_or("the history holds no record")?,
        Some(w) => newest(&|r| r.scenario.name == w || r.scenario.sha256.starts_with(w))
            .ok_or_else(|| {
                format!("no record of a scenario named `{w}` (or with a sha256 starting so)")
            })?,
    }
    .setup();
    let mut others: BTreeMap<Setup, (usize, String, String)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.setup() != chosen) {
        let e = others
            .entry(r.setup())
            .or_insert((0, r.date.clone(), r.date.clone()));
        e.0 += 1;
        e.1 = e.1.clone().min(r.date.clone());
        e.2 = e.2.clone().max(r.date.clone());
    }
    for (setup, (n, from, to)) in others {
        let why = if setup.scenario == chosen.scenario && setup.sha256 != chosen.sha256 {
            "another version of the scenario"
        } else {
            "another setup"
        };
        notes.push(format!(
            "{n} record(s) of {setup} ({why}, {} to {}) are not in these series; `--setup {}` analyses them",
            day(&from),
            day(&to),
            setup.sha256.get(..12).unwrap_or(&setup.sha256)
        ));
    }
    Ok(chosen)
}

fn sort_and_dedupe(records: &mut Vec<(usize, &Record)>, notes: &mut Vec<String>) {
    if records.windows(2).any(|w| w[0].1.date > w[1].1.date) {
        notes.push("the records were not in date order; they are read by date".into());
    }
    records.sort_by(|a, b| a.1.date.cmp(&b.1.date).then(a.0.cmp(&b.0)));
    // A run is its start: the same start twice is one run added twice.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    records.retain(|(i, r)| {
        let key = r.date.clone();
        match seen.get(&key) {
            Some(first) => {
                notes.push(format!(
                    "record {} repeats record {first} (the same run of {}); counted once",
                    i + 1,
                    day(&r.date)
                ));
                false
            }
            _ => {
                seen.insert(key, i + 1);
                true
            }
        }
    });
}

fn night(r: &Record) -> Night {
    Night {
        commit: r.commit.clone(),
        date: r.date.clone(),
        source: r.source.clone(),
        tool_version: r.tool_version.clone(),
        runner: format!(
            "{} ({} cores)",
            r.runner
                .hostname
                .clone()
                .unwrap_or_else(|| format!("{}/{}", r.runner.os, r.runner.arch)),
            r.runner.cores
        ),
    }
}

/// Notes on the nights themselves: repeated commits, gaps, a new version
/// or runner.
fn describe_nights(records: &[&Record], notes: &mut Vec<String>) {
    let mut by_commit: BTreeMap<&str, usize> = BTreeMap::new();
    for c in records.iter().filter_map(|r| r.commit.as_deref()) {
        *by_commit.entry(c).or_default() += 1;
    }
    for (c, n) in by_commit.iter().filter(|(_, n)| **n > 1) {
        notes.push(format!(
            "commit {} was measured {n} times; each run is a night of its own",
            short(c)
        ));
    }
    let medians = records.iter().filter(|r| r.runs > 1).count();
    if medians > 0 {
        let most = records.iter().map(|r| r.runs).max().unwrap_or(1);
        notes.push(format!(
            "{medians} night(s) are the median of several runs (up to {most}): steadier than one run"
        ));
    }
    let missing = records.iter().filter(|r| r.commit.is_none()).count();
    if missing > 0 {
        notes.push(format!(
            "{missing} night(s) have no commit; their change points cannot name one"
        ));
    }
    let times: Vec<i64> = records
        .iter()
        .filter_map(|r| chrono::DateTime::parse_from_rfc3339(&r.date).ok())
        .map(|t| t.timestamp())
        .collect();
    let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    if let Some(&typical) = gaps.get(gaps.len() / 2) {
        for (w, r) in times.windows(2).zip(records.windows(2)) {
            let gap = w[1] - w[0];
            if gap > 2 * typical.max(3600) && gap > 36 * 3600 {
                notes.push(format!(
                    "no record between {} and {} ({:.0} days)",
                    day(&r[0].date),
                    day(&r[1].date),
                    gap as f64 / 86_400.0
                ));
            }
        }
    }
    for w in records.windows(2) {
        if w[0].tool_version != w[1].tool_version {
            notes.push(format!(
                "flora-gate {} → {} from {}: a step there may be the tool's",
                w[0].tool_version,
                w[1].tool_version,
                day(&w[1].date)
            ));
        }
        if w[0].runner != w[1].runner {
            notes.push(format!(
                "the runner changed on {} ({} → {}): a step there may be the machine's",
                day(&w[1].date),
                night(w[0]).runner,
                night(w[1]).runner
            ));
        }
    }
}

/// Every (scope, metric) any night has, `all` first, then `workflow`, then
/// the steps.
fn keys(records: &[&Record]) -> Vec<(String, String)> {
    let mut set = BTreeSet::new();
    for r in records {
        for (scope, m) in &r.run.metrics {
            for metric in m.keys() {
                set.insert((scope_rank(scope), scope.clone(), metric.clone()));
            }
        }
    }
    set.into_iter().map(|(_, s, m)| (s, m)).collect()
}

fn scope_rank(scope: &str) -> u8 {
    match scope {
        ALL => 0,
        WORKFLOW => 1,
        _ => 2,
    }
}

fn series(
    records: &[&Record],
    nights: &[Night],
    policy: &Policy,
    scope: &str,
    metric: &str,
    s: &Settings,
    notes: &mut Vec<String>,
) -> Series {
    let def = metric_def(metric);
    let higher_is_worse = def.as_ref().is_none_or(|d| d.higher_is_worse);
    let name = format!("{metric} of `{scope}`");
    let values = night_values(records, scope, metric, &name, notes);
    let present: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|x| (i, x)))
        .collect();
    let xs: Vec<f64> = present.iter().map(|p| p.1).collect();
    let all = change::detect(&xs, &s.change);
    let small = all.iter().filter(|c| c.step.abs() < s.min_step).count();
    if small > 0 {
        notes.push(format!(
            "{name}: {small} significant step(s) under {:.0}% left out (`--min-step`)",
            s.min_step * 100.0
        ));
    }
    let changes: Vec<Found> = all
        .into_iter()
        .filter(|c| c.step.abs() >= s.min_step)
        .map(|c| place(c, &present, nights, higher_is_worse))
        .collect();
    let first_change = changes.first().map(|c| {
        present
            .iter()
            .position(|p| p.0 == c.change.index)
            .unwrap_or(0)
    });
    let largest =
        changes
            .iter()
            .map(|c| c.change.step)
            .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
    let drift = drift(
        &present,
        nights,
        first_change,
        (changes.len(), largest),
        policy,
        metric,
        higher_is_worse,
        s.change.alpha,
    );
    Series {
        scope: scope.into(),
        metric: metric.into(),
        label: def
            .as_ref()
            .map_or_else(|| metric.to_string(), |d| d.label.clone()),
        unit: def.as_ref().map_or("", |d| d.unit).to_string(),
        higher_is_worse,
        gated: policy.metrics.iter().any(|m| m == metric),
        values,
        changes,
        drift,
    }
}

/// Each night's value of a series (`None`: missing, unbounded or not
/// positive), with a note for each kind of gap.
fn night_values(
    records: &[&Record],
    scope: &str,
    metric: &str,
    name: &str,
    notes: &mut Vec<String>,
) -> Vec<Option<f64>> {
    let raw: Vec<Option<Option<f64>>> = records
        .iter()
        .map(|r| {
            r.run
                .metrics
                .get(scope)
                .and_then(|m| m.get(metric))
                .copied()
        })
        .collect();
    let absent = raw.iter().filter(|v| v.is_none()).count();
    let unbounded = raw.iter().filter(|v| matches!(v, Some(None))).count();
    let nonpositive = raw
        .iter()
        .filter(|v| matches!(v, Some(Some(x)) if *x <= 0.0))
        .count();
    if absent > 0 {
        notes.push(format!(
            "{name}: missing on {absent} of {} nights",
            records.len()
        ));
    }
    if unbounded > 0 {
        notes.push(format!(
            "{name}: unbounded (failures) on {unbounded} night(s); left out of its series"
        ));
    }
    if nonpositive > 0 && nonpositive < raw.len() {
        notes.push(format!(
            "{name}: zero on {nonpositive} night(s); a relative series leaves them out"
        ));
    }
    raw.iter()
        .map(|v| v.flatten().filter(|x| x.is_finite() && *x > 0.0))
        .collect()
}

/// A change found among the present values, placed on the nights (indices
/// of `present` become nights) with its commit range.
fn place(c: Change, present: &[(usize, f64)], nights: &[Night], higher_is_worse: bool) -> Found {
    let at = |k: usize| present[k.min(present.len() - 1)].0;
    let (earliest, latest, index) = (at(c.earliest), at(c.latest), at(c.index));
    let from = present[c.earliest.saturating_sub(1)].0;
    Found {
        from_commit: nights[from].commit.clone(),
        to_commit: nights[latest].commit.clone(),
        date: nights[index].date.clone(),
        regression: (c.step > 0.0) == higher_is_worse,
        change: Change {
            index,
            earliest,
            latest,
            ..c
        },
    }
}

/// The newest [`RECENT`] nights against the reference (the nights before
/// the first change point; the older half when there is none): reported in
/// the worse direction past the warn margin when a one-sided t test on the
/// logarithms says p ≤ alpha.
#[allow(clippy::too_many_arguments)]
fn drift(
    present: &[(usize, f64)],
    nights: &[Night],
    first_change: Option<usize>,
    (changes, largest_step): (usize, f64),
    policy: &Policy,
    metric: &str,
    higher_is_worse: bool,
    alpha: f64,
) -> Option<Drift> {
    let n = present.len();
    let reference = first_change.unwrap_or(n / 2).min(n.saturating_sub(RECENT));
    if reference < RECENT {
        return None;
    }
    let logs: Vec<f64> = present.iter().map(|p| p.1.ln()).collect();
    let (mr, sr) = mean_sd(&logs[..reference]);
    let (mn, _) = mean_sd(&logs[n - RECENT..]);
    let df = (reference - 1) as f64;
    let se = sr.max(crate::gate::math::MIN_LOG_SD)
        * (1.0 / reference as f64 + 1.0 / RECENT as f64).sqrt();
    let d = mn - mr;
    let worse = if higher_is_worse { d } else { -d };
    let t = worse / se;
    let p = 1.0 - t_cdf(t, df);
    let q = t_quantile(0.975, df);
    let change = d.exp_m1();
    let margin = policy.margins.get(metric).copied().unwrap_or(policy.margin);
    let past = |m: f64| worse >= (1.0 + m).ln();
    if !(past(policy.warn_margin) && p <= alpha) {
        return None;
    }
    Some(Drift {
        change,
        low: (d - q * se).exp_m1(),
        high: (d + q * se).exp_m1(),
        p_value: p,
        reference_nights: reference,
        nights: n - reference,
        since: nights[present[reference - 1].0].date.clone(),
        steps: changes,
        largest_step,
        level: if past(margin) { "fail" } else { "warn" }.into(),
    })
}

/// `2026-12-02T03:17:00Z` → `2026-12-02`.
pub fn day(date: &str) -> &str {
    date.get(..10).unwrap_or(date)
}

/// A commit's first 7 characters.
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

#[cfg(test)]
#[path = "trend_tests.rs"]
mod tests;
