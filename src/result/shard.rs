//! Distributed runs: the plan every shard computes its share from, what a
//! shard records about itself, and the merge of shards into one result.
//! A shard's requests go to a record file beside its result; the merge
//! reads all of them into one and summarises that through the same
//! [`super::build`] a single run uses, so every histogram, block, stage and
//! window of the merged result is exactly the one a single process would
//! have computed from the same requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RunResult, ScenarioRef};
use crate::error::UserError;

/// The `kind` of a plan file.
pub const PLAN_KIND: &str = "flora-gate/plan";
/// Its schema version.
pub const PLAN_VERSION: u32 = 1;

/// The load settings of a plan, as `run` flags would give them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanLoad {
    /// `--concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// `--duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// `--warmup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<String>,
    /// `--stages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<String>,
    /// `--model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `--window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// One global plan that every shard takes its share of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// [`PLAN_KIND`].
    pub kind: String,
    /// [`PLAN_VERSION`].
    pub schema_version: u32,
    /// Random, shared by the plan's shards and nothing else.
    pub plan_id: String,
    /// The tool version that made it; shards must run the same.
    pub tool_version: String,
    /// When the plan was made.
    pub created_at: String,
    /// When every shard starts (RFC 3339, UTC).
    pub start_at: String,
    /// How many shards.
    pub shards: u32,
    /// The scenario (its content hash is checked by every shard).
    pub scenario: ScenarioRef,
    /// The seed of the data set, the mix and the arrivals.
    pub seed: u64,
    /// The load, over the scenario's own.
    pub load: PlanLoad,
}

const PLAN_FILE: crate::jsonfile::FileType = crate::jsonfile::FileType {
    what: "plan",
    kind: PLAN_KIND,
    version: PLAN_VERSION,
    oldest: PLAN_VERSION,
    stale_hint: "make the plan again with `flora-gate plan` of this version",
};

impl ShardPlan {
    /// Read a plan file.
    pub fn read(path: &Path) -> Result<Self, UserError> {
        let plan: Self = crate::jsonfile::read(path, &PLAN_FILE)?;
        plan.check().map_err(|(field, why)| {
            UserError::invalid("plan", path, Some(format!("`{field}`")), why)
        })?;
        Ok(plan)
    }

    /// Every count a plan holds within its bounds, before anything is
    /// built from it: a forged plan must not size an allocation.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err((
                "shards".into(),
                format!(
                    "{} is not a shard count from 1 to {MAX_SHARDS}",
                    self.shards
                ),
            ));
        }
        Ok(())
    }

    /// The agreed start on the wall clock.
    pub fn start(&self) -> Result<std::time::SystemTime, String> {
        chrono::DateTime::parse_from_rfc3339(&self.start_at)
            .map(|t| t.with_timezone(&chrono::Utc).into())
            .map_err(|e| {
                format!(
                    "`start_at` `{}` is not an RFC 3339 time: {e}",
                    self.start_at
                )
            })
    }
}

/// Most shards of one plan.
pub const MAX_SHARDS: u32 = 1000;

/// What a shard says about itself in its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The plan it ran a share of.
    pub plan: ShardPlan,
    /// This shard, from 0.
    pub index: u32,
    /// How late after it this shard began, ms.
    pub late_ms: f64,
    /// This machine's clock minus the target's (`Date` header, 1 s
    /// resolution), ms; `null` when the target sends no date.
    pub clock_offset_ms: Option<f64>,
    /// The record file beside the result (its requests, for `merge`).
    pub records: String,
}

/// One shard of a merged result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRow {
    /// Its index.
    pub index: u32,
    /// Its measured requests.
    pub requests: u64,
    /// Its pooled TTFT median (streamed steps), ms.
    pub ttft_p50_ms: Option<f64>,
    /// Its generator saturated.
    pub saturated: bool,
    /// Its worst event-loop lag, ms.
    pub loop_lag_max_ms: Option<f64>,
    /// How late it began, ms.
    pub late_ms: f64,
    /// Its clock offset, ms.
    pub clock_offset_ms: Option<f64>,
    /// Why it stands out, if it does (slower than the others beyond noise,
    /// or a saturated generator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// How a merged result was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    /// The plan's id.
    pub plan_id: String,
    /// Shards in the plan.
    pub count: u32,
    /// The shards merged.
    pub shards: Vec<ShardRow>,
    /// Shards of the plan not merged (`--allow-partial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u32>,
    /// Until this offset from the agreed start not every shard was
    /// running: its windows are marked partial, ms.
    pub all_running_from_ms: f64,
}

impl Merged {
    /// Why a verdict on this result can be a warning at most, if it can.
    pub fn partial_note(&self) -> Option<String> {
        (!self.missing.is_empty()).then(|| {
            format!(
                "merged from {} of {} shards (missing: {}): not the whole planned load",
                self.shards.len(),
                self.count,
                self.missing
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// A shard's result file, its result and what it says of itself.
pub type ShardFile = (PathBuf, RunResult, ShardInfo);

/// The record file of a shard's result: `shard-0.json` → `shard-0.records`.
pub fn records_path(result: &Path) -> PathBuf {
    result.with_extension("records")
}

/// A shard's records, beside its result.
pub fn write_records(
    result: &Path,
    records: &crate::engine::spill::Samples,
) -> Result<(), UserError> {
    let path = records_path(result);
    crate::error::write_atomic_with(&path, &mut |w| records.export(w))
}

/// The delay from an agreed start given as `--start-in`.
pub fn start_in(delay: Duration) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    now + chrono::Duration::from_std(delay).unwrap_or_default()
}

/// A shard belongs with the first one read: the same plan, scenario, tool
/// version, shard count, seed and variables.
fn same_run(
    (first_path, first, fi): &ShardFile,
    (path, r, info): (&Path, &RunResult, &ShardInfo),
) -> Result<(), UserError> {
    let differs = |what: &str, a: String, b: String| {
        UserError::invalid(
            "shard result",
            path,
            None,
            format!(
                "another {what} ({b}) than {} ({a}): shards of one plan only",
                first_path.display()
            ),
        )
    };
    let identity = [
        ("plan", fi.plan.plan_id.clone(), info.plan.plan_id.clone()),
        (
            "scenario",
            first.provenance.scenario.sha256.clone(),
            r.provenance.scenario.sha256.clone(),
        ),
        (
            "tool version",
            first.provenance.tool_version.clone(),
            r.provenance.tool_version.clone(),
        ),
        (
            "shard count",
            fi.plan.shards.to_string(),
            info.plan.shards.to_string(),
        ),
        (
            "seed",
            first.provenance.seed.to_string(),
            r.provenance.seed.to_string(),
        ),
        (
            "set of variables",
            format!("{:?}", first.provenance.var_overrides),
            format!("{:?}", r.provenance.var_overrides),
        ),
    ];
    for (what, a, b) in identity {
        if a != b {
            return Err(differs(what, a, b));
        }
    }
    Ok(())
}

/// The shards to merge, read and checked: the same plan, scenario, tool
/// version, shard count and seed; no index twice; none missing unless
/// `allow_partial`. Returns them sorted by index, and the missing indexes.
pub fn check_shards(
    shards: Vec<(PathBuf, RunResult)>,
    allow_partial: bool,
) -> Result<(Vec<ShardFile>, Vec<u32>), UserError> {
    let mut out: Vec<ShardFile> = Vec::new();
    for (path, r) in shards {
        let info = r.shard.clone().ok_or_else(|| {
            UserError::invalid(
                "shard result",
                &path,
                Some("`shard`".into()),
                "not a shard: it was not made by `run --plan --shard`",
            )
        })?;
        info.plan.check().map_err(|(field, why)| {
            UserError::invalid(
                "shard result",
                &path,
                Some(format!("`shard.plan.{field}`")),
                why,
            )
        })?;
        if let Some(first) = out.first() {
            same_run(first, (&path, &r, &info))?;
        }
        if let Some((other, _, _)) = out.iter().find(|(_, _, i)| i.index == info.index) {
            return Err(UserError::invalid(
                "shard result",
                &path,
                Some("`shard.index`".into()),
                format!(
                    "shard {} of {} twice (also {})",
                    info.index,
                    info.plan.shards,
                    other.display()
                ),
            ));
        }
        if info.index >= info.plan.shards {
            return Err(UserError::invalid(
                "shard result",
                &path,
                Some("`shard.index`".into()),
                format!(
                    "shard {} of {} is out of range",
                    info.index, info.plan.shards
                ),
            ));
        }
        out.push((path, r, info));
    }
    out.sort_by_key(|(_, _, i)| i.index);
    let count = out.first().map_or(0, |(_, _, i)| i.plan.shards);
    let missing: Vec<u32> = (0..count)
        .filter(|i| !out.iter().any(|(_, _, s)| s.index == *i))
        .collect();
    if !missing.is_empty() && !allow_partial {
        return Err(UserError::Environment {
            message: format!(
                "shard(s) {} of {count} missing",
                missing
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: Some(
                "give every shard's result, or `--allow-partial` to merge what exists (the verdict is then a warning at most)"
                    .into(),
            ),
        });
    }
    Ok((out, missing))
}

/// A 99% interval of the median from order statistics.
fn median_interval(h: &crate::stats::LatencyHist) -> Option<(f64, f64)> {
    let n = h.count() as f64;
    if n < 20.0 {
        return None;
    }
    let half = 2.576 * (0.25 / n).sqrt();
    Some((h.quantile_ms(0.5 - half)?, h.quantile_ms(0.5 + half)?))
}

/// The per-shard table, with a flag on a shard that stands out.
fn shard_rows(shards: &[ShardFile]) -> Vec<ShardRow> {
    let hists: Vec<_> = shards
        .iter()
        .map(|(_, r, _)| super::values::pooled(&r.steps, crate::policy::metrics::Base::Ttft))
        .collect();
    shards
        .iter()
        .enumerate()
        .map(|(k, (_, r, info))| {
            let mine = &hists[k];
            let mut others = crate::stats::LatencyHist::new();
            for (j, h) in hists.iter().enumerate() {
                if j != k {
                    others.merge(h);
                }
            }
            let p50 = mine.quantile_ms(0.5).filter(|x| x.is_finite());
            let slower = match (median_interval(mine), median_interval(&others), p50) {
                (Some((lo, _)), Some((_, o_hi)), Some(m)) if lo > o_hi && m > o_hi * 1.1 => {
                    Some(format!(
                        "TTFT p50 {m:.0} ms, beyond the other shards' (at most {o_hi:.0} ms): a slower network path or machine?"
                    ))
                }
                _ => None,
            };
            let saturated = r
                .self_check
                .saturated
                .then(|| "its load generator saturated: its latencies include the client's".to_string());
            let flags: Vec<String> = slower.into_iter().chain(saturated).collect();
            let flag = (!flags.is_empty()).then(|| flags.join("; "));
            ShardRow {
                index: info.index,
                requests: r.totals.requests,
                ttft_p50_ms: p50,
                saturated: r.self_check.saturated,
                loop_lag_max_ms: r.self_check.loop_lag_max_ms,
                late_ms: info.late_ms,
                clock_offset_ms: info.clock_offset_ms,
                flag,
            }
        })
        .collect()
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Sum the shards' load traces window by window and stage by stage.
fn merged_trace(
    load: &crate::scenario::LoadSpec,
    shards: &[ShardFile],
) -> crate::engine::monitor::LoadTrace {
    use crate::engine::monitor::{ArrivalStats, LoadTrace, StageLoad, WindowLoad};
    let mut windows: Vec<WindowLoad> = Vec::new();
    let mut stages: Vec<StageLoad> = Vec::new();
    let mut arrivals: Option<ArrivalStats> = None;
    for (_, r, _) in shards {
        for w in &r.windows {
            let i = w.index as usize;
            if windows.len() <= i {
                windows.resize_with(i + 1, WindowLoad::default);
            }
            let m = &mut windows[i];
            let l = &w.load;
            m.intended += l.intended;
            m.users += l.users;
            m.in_flight += l.in_flight;
            m.arrivals_due += l.arrivals_due;
            m.arrivals_started += l.arrivals_started;
            m.arrivals_missed += l.arrivals_missed;
            m.lag_max_ms = m.lag_max_ms.max(l.lag_max_ms);
            m.cpu_cores = sum(m.cpu_cores, l.cpu_cores);
            m.rss_mib = sum(m.rss_mib, l.rss_mib);
        }
        let open = load
            .shape
            .as_ref()
            .is_some_and(|s| s.model == crate::scenario::Model::Open);
        for s in &r.stages {
            let i = s.index as usize;
            if stages.len() <= i {
                stages.resize_with(i + 1, StageLoad::default);
            }
            let secs = ((s.end_ms - s.start_ms) / 1000.0).max(1e-9);
            let (due, started) = if open {
                (
                    (s.intended * secs).round() as u64,
                    (s.achieved * secs).round() as u64,
                )
            } else {
                (0, 0)
            };
            stages[i].add(
                if open { 0.0 } else { s.intended },
                if open { 0.0 } else { s.achieved },
                (due, started, due.saturating_sub(started)),
            );
        }
        if let Some(a) = &r.arrivals {
            let m = arrivals.get_or_insert_with(ArrivalStats::default);
            m.due += a.due;
            m.started += a.started;
            m.missed_cap += a.missed_cap;
            m.missed_held += a.missed_held;
            m.missed_late += a.missed_late;
        }
    }
    LoadTrace {
        window: load.window,
        windows,
        stages,
        arrivals,
        writer_streams_max: shards
            .iter()
            .filter_map(|(_, r, _)| r.traffic.as_ref()?.streams_per_writer_max)
            .max()
            .unwrap_or(0),
        replay: None,
    }
}

fn sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

/// The shards' record files, opened: each beside its result, by file name
/// only (a result cannot point the merge elsewhere), none shared.
fn open_records(
    shards: &[ShardFile],
) -> Result<(Vec<std::io::BufReader<std::fs::File>>, Vec<PathBuf>), UserError> {
    let mut paths = Vec::new();
    let mut files = Vec::new();
    for (p, _, info) in shards {
        let dir = p.parent().unwrap_or_else(|| Path::new("."));
        let name = Path::new(&info.records)
            .file_name()
            .map_or_else(|| records_path(p), |n| dir.join(n));
        let f = std::fs::File::open(&name).map_err(|source| UserError::Read {
            path: name.clone(),
            source,
        })?;
        files.push(std::io::BufReader::with_capacity(256 * 1024, f));
        paths.push(name);
    }
    for (i, a) in paths.iter().enumerate() {
        if let Some(b) = paths[..i].iter().find(|b| same_path(a, b)) {
            return Err(UserError::invalid(
                "shard record file",
                a,
                None,
                format!(
                    "also the record file of another shard (`{}`): each shard has its own",
                    b.display()
                ),
            ));
        }
    }
    Ok((files, paths))
}

/// The merged run's state: aborted when a shard was, else partial when a
/// shard was, naming it.
fn merged_status(shards: &[ShardFile]) -> crate::engine::RunStatus {
    use crate::engine::RunStatus;
    let first = |state: super::RunState, make: fn(String) -> RunStatus, word: &str| {
        shards.iter().find_map(|(_, r, i)| {
            (r.state() == state).then(|| {
                make(format!(
                    "shard {}: {}",
                    i.index,
                    r.status_reason.as_deref().unwrap_or(word)
                ))
            })
        })
    };
    first(super::RunState::Aborted, RunStatus::Aborted, "aborted")
        .or_else(|| first(super::RunState::Partial, RunStatus::Partial, "partial"))
        .unwrap_or(RunStatus::Complete)
}

/// The worst generator's health stands for the run; the table has each.
fn worst_self_check(shards: &[ShardFile]) -> crate::engine::SelfCheck {
    let key = |r: &RunResult| {
        (
            r.self_check.saturated,
            r.self_check.loop_lag_max_ms.unwrap_or(0.0),
        )
    };
    shards
        .iter()
        .max_by(|(_, a, _), (_, b, _)| {
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|(_, r, _)| r.self_check.clone())
        .unwrap_or_default()
}

/// Merge checked shards into one result, through the one summary a single
/// run gets; `plan` is the whole run's (no shard).
pub fn merge(
    plan: &crate::engine::Plan,
    shards: &[ShardFile],
    missing: Vec<u32>,
) -> Result<(RunResult, crate::engine::spill::Samples), UserError> {
    use crate::engine::RunOutput;
    let (files, paths) = open_records(shards)?;
    let owners: Vec<crate::engine::spill::Owner> = shards
        .iter()
        .map(|(_, _, info)| crate::engine::spill::Owner {
            index: info.index,
            count: info.plan.shards,
            steps: plan.scenario.steps.len(),
        })
        .collect();
    let records = crate::engine::spill::import(files, &owners).map_err(|(i, m)| {
        UserError::invalid("shard record file", &paths[i.min(paths.len() - 1)], None, m)
    })?;
    let steps = plan.scenario.steps.len();
    let mut itl = vec![crate::stats::LatencyHist::new(); steps];
    for (_, r, _) in shards {
        for (k, s) in r.steps.iter().enumerate().take(steps) {
            if let Ok(h) = crate::stats::LatencyHist::decode(&s.histograms.itl, 0) {
                itl[k].merge(&h);
            }
        }
    }
    let late = shards
        .iter()
        .map(|(_, _, i)| i.late_ms)
        .fold(0.0f64, f64::max);
    let status = merged_status(shards);
    let worst = worst_self_check(shards);
    let start = shards
        .first()
        .and_then(|(_, _, i)| chrono::DateTime::parse_from_rfc3339(&i.plan.start_at).ok())
        .map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc));
    let out = RunOutput {
        recorder: crate::engine::Recorder {
            records,
            examples: Vec::new(),
            itl,
        },
        started_at: start,
        elapsed: Duration::from_secs_f64(
            shards
                .iter()
                .map(|(_, r, _)| r.provenance.elapsed_s)
                .fold(0.0, f64::max),
        ),
        status,
        self_check: worst,
        active: None,
        trace: merged_trace(&plan.load, shards),
        late: Duration::from_secs_f64(late / 1000.0),
        clock_offset_ms: None,
        server: Vec::new(),
        endpoint: None,
        trace_salt: None,
    };
    let mut r = super::build(plan, &out)?;
    fold_shards(&mut r, shards, late, missing);
    r.shard = None;
    Ok((r, out.recorder.records))
}

/// What a merged result takes from its shards beyond their records: error
/// examples, the worst lateness, which windows were before every shard ran,
/// and the shard table.
fn fold_shards(r: &mut RunResult, shards: &[ShardFile], late: f64, missing: Vec<u32>) {
    let scraped: Vec<(u32, &super::server::ServerMetrics)> = shards
        .iter()
        .filter_map(|(_, s, i)| s.server_metrics.as_ref().map(|m| (i.index, m)))
        .collect();
    r.server_metrics = super::server::merge(&scraped).map(super::resources::with_resources);
    for (_, s, _) in shards {
        for e in &s.error_examples {
            let same = r
                .error_examples
                .iter()
                .filter(|x| x.step == e.step && x.class == e.class)
                .count();
            if same < crate::engine::sample::EXAMPLES_PER_CLASS {
                r.error_examples.push(e.clone());
            }
        }
    }
    if let Some(a) = r.arrivals.as_mut() {
        // Lateness is known per shard only: the worst shard's.
        let worst = |f: fn(&super::time::ArrivalResult) -> Option<f64>| {
            shards
                .iter()
                .filter_map(|(_, s, _)| s.arrivals.as_ref().and_then(f))
                .reduce(f64::max)
        };
        a.lateness_p50_ms = worst(|x| x.lateness_p50_ms);
        a.lateness_p99_ms = worst(|x| x.lateness_p99_ms);
    }
    for w in &mut r.windows {
        w.partial = w.start_ms < late;
    }
    r.self_check.notes.push(format!(
        "merged from {} shard(s): the generator figures are the worst shard's; see `shards`",
        shards.len()
    ));
    r.merged = Some(Merged {
        plan_id: shards
            .first()
            .map(|(_, _, i)| i.plan.plan_id.clone())
            .unwrap_or_default(),
        count: shards.first().map_or(0, |(_, _, i)| i.plan.shards),
        shards: shard_rows(shards),
        missing,
        all_running_from_ms: late,
    });
}
