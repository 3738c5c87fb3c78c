//! Distributed runs on the command line: `plan`, `run --plan --shard`
//! and `merge` into their settings. The plan fixes the load, the seed and
//! the start; a shard may not change them.

use std::path::PathBuf;
use std::sync::Arc;

use super::duration_flag;
use super::run::{load_spec, parse_vars, run_plan};
use crate::cli::{MergeArgs, PlanArgs, RunArgs};
use crate::commands::{MergeSettings, PlanSettings, RunSettings};
use crate::error::UserError;
use crate::result::shard::{self, PlanLoad, ShardPlan};
use crate::result::{RunResult, ScenarioRef};
use crate::scenario::{Scenario, Shard};

pub use crate::result::shard::MAX_SHARDS;

/// `run` flags with the plan's load over them.
fn with_plan_load(a: &RunArgs, load: &PlanLoad, seed: u64) -> RunArgs {
    RunArgs {
        concurrency: load.concurrency,
        duration: load.duration.clone(),
        warmup: load.warmup.clone(),
        stages: load.stages.clone(),
        model: load.model.clone(),
        window: load.window.clone(),
        seed: Some(seed),
        ..a.clone()
    }
}

/// `run`, or `run --plan --shard`.
pub(super) fn run(a: &RunArgs) -> Result<RunSettings, UserError> {
    let (Some(path), Some(which)) = (&a.plan, &a.shard) else {
        return Ok(RunSettings {
            plan: run_plan(a)?,
            out: a.out.clone(),
            requests_out: a.requests_out.clone(),
            shard: None,
        });
    };
    let sp = ShardPlan::read(path)?;
    for (flag, given) in [
        ("--concurrency", a.concurrency.is_some()),
        ("--duration", a.duration.is_some()),
        ("--requests", a.requests.is_some()),
        ("--warmup", a.warmup.is_some()),
        ("--stages", a.stages.is_some()),
        ("--model", a.model.is_some()),
        ("--window", a.window.is_some()),
        ("--seed", a.seed.is_some()),
        ("--baseline-target", a.baseline_target.is_some()),
    ] {
        if given {
            return Err(UserError::flag(
                flag,
                format!(
                    "comes from the plan `{}`; a shard cannot change it",
                    path.display()
                ),
            ));
        }
    }
    let index = shard_index(which, sp.shards)?;
    if sp.tool_version != env!("CARGO_PKG_VERSION") {
        return Err(UserError::flag(
            "--plan",
            format!(
                "was made by flora-gate {}, and this is {}: every shard must run the version that made the plan",
                sp.tool_version,
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    let start = sp.start().map_err(|m| UserError::flag("--plan", m))?;
    let mut plan = run_plan(&with_plan_load(a, &sp.load, sp.seed))?;
    if plan.scenario.sha256 != sp.scenario.sha256 {
        return Err(UserError::flag(
            "--scenario",
            format!(
                "`{}` is not the scenario of the plan (its content differs from `{}`)",
                a.scenario.as_deref().unwrap_or_default(),
                sp.scenario.origin
            ),
        ));
    }
    // A shard writes its result, its records beside it, and perhaps its
    // requests: three files, none of them another's.
    let records = shard::records_path(&a.out);
    let mut outputs = vec![
        ("--out", a.out.as_path()),
        ("--out (its records)", records.as_path()),
    ];
    if let Some(p) = &a.requests_out {
        outputs.push(("--requests-out", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    plan.load.shard = Some(Shard {
        index,
        count: sp.shards,
    });
    plan.start_at = Some(start);
    Ok(RunSettings {
        plan,
        out: a.out.clone(),
        requests_out: a.requests_out.clone(),
        shard: Some((sp, index)),
    })
}

/// `i/N` into `i`, checked against the plan's N.
fn shard_index(which: &str, count: u32) -> Result<u32, UserError> {
    let bad = |why: String| UserError::flag("--shard", why);
    let (i, n) = which
        .split_once('/')
        .ok_or_else(|| bad(format!("`{which}` is not `i/N`, like `0/{count}`")))?;
    let (i, n): (u32, u32) = match (i.trim().parse(), n.trim().parse()) {
        (Ok(i), Ok(n)) => (i, n),
        _ => return Err(bad(format!("`{which}` is not `i/N` with whole numbers"))),
    };
    if n != count {
        return Err(bad(format!("says {n} shards, and the plan has {count}")));
    }
    if i >= n {
        return Err(bad(format!(
            "shard {i} does not exist: shards are numbered 0 to {}",
            n - 1
        )));
    }
    Ok(i)
}

/// `plan`: the scenario and load checked as a run would check them.
pub(super) fn plan(a: &PlanArgs) -> Result<PlanSettings, UserError> {
    crate::error::check_outputs(&[("--out", a.out.as_path())])?;
    if a.shards == 0 || a.shards > MAX_SHARDS {
        return Err(UserError::flag(
            "--shards",
            format!("must be between 1 and {MAX_SHARDS}"),
        ));
    }
    let start = match &a.start_at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| {
                UserError::flag(
                    "--start-at",
                    format!("`{t}` is not an RFC 3339 time like 2026-11-27T03:00:00Z: {e}"),
                )
            })?
            .with_timezone(&chrono::Utc),
        None => shard::start_in(duration_flag("--start-in", &a.start_in)?),
    };
    let vars = parse_vars(&a.vars)?;
    let scenario = Scenario::load(&a.scenario, &vars)?;
    let load = PlanLoad {
        concurrency: a.concurrency,
        duration: a.duration.clone(),
        warmup: a.warmup.clone(),
        stages: a.stages.clone(),
        model: a.model.clone(),
        window: a.window.clone(),
    };
    let seed = a.seed.unwrap_or(scenario.load.seed);
    let spec = load_spec(&plan_run_args(&a.scenario, &load, seed), &scenario, false)?;
    if spec.requests.is_some() {
        return Err(UserError::flag(
            "--duration",
            "the scenario stops after a number of requests, which shards cannot share; give a duration or stages",
        ));
    }
    let now = chrono::Utc::now();
    let id = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(now.to_rfc3339().as_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update(scenario.sha256.as_bytes());
        h.update(format!("{:?}", std::time::Instant::now()).as_bytes());
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    Ok(PlanSettings {
        plan: ShardPlan {
            kind: shard::PLAN_KIND.into(),
            schema_version: shard::PLAN_VERSION,
            plan_id: id,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            start_at: start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            shards: a.shards,
            scenario: ScenarioRef {
                name: scenario.name.clone(),
                origin: scenario.origin.clone(),
                sha256: scenario.sha256.clone(),
            },
            seed,
            load,
        },
        out: a.out.clone(),
    })
}

/// The `run` flags a plan stands for (no target, no tokens: only the load).
fn plan_run_args(scenario: &str, load: &PlanLoad, seed: u64) -> RunArgs {
    let base = super::run_args(scenario.into(), None, None);
    with_plan_load(&base, load, seed)
}

/// `merge`: the shards read and checked, the scenario and the global load
/// rebuilt from the plan they share.
pub(super) fn merge(a: &MergeArgs) -> Result<MergeSettings, UserError> {
    let mut outputs = vec![("--out", a.out.as_path())];
    if let Some(p) = &a.requests_out {
        outputs.push(("--requests-out", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    let files = shard_files(&a.shards)?;
    let inputs: Vec<PathBuf> = files
        .iter()
        .flat_map(|p| [p.clone(), shard::records_path(p)])
        .collect();
    crate::error::check_not_inputs(&outputs, &inputs)?;
    let mut read = Vec::with_capacity(a.shards.len());
    for p in files {
        let r = RunResult::read(&p)?;
        read.push((p, r));
    }
    let (shards, missing) = shard::check_shards(read, a.allow_partial)?;
    let (first_path, first, info) = shards
        .first()
        .ok_or_else(|| UserError::flag("SHARD", "no shard results to merge"))?;
    let spec = a.scenario.clone().unwrap_or_else(|| {
        let origin = &first.provenance.scenario.origin;
        origin
            .strip_prefix("bundled:")
            .unwrap_or(origin)
            .to_string()
    });
    let vars: Vec<(String, String)> = first
        .provenance
        .var_overrides
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let scenario = Scenario::load(&spec, &vars).map_err(|e| {
        UserError::flag(
            "--scenario",
            format!("the shards' scenario `{spec}` cannot be read ({e}); pass `--scenario FILE`"),
        )
    })?;
    if scenario.sha256 != first.provenance.scenario.sha256 {
        return Err(UserError::flag(
            "--scenario",
            format!(
                "`{spec}` is not the scenario the shards ran (see {})",
                first_path.display()
            ),
        ));
    }
    let load = load_spec(
        &plan_run_args(&spec, &info.plan.load, info.plan.seed),
        &scenario,
        false,
    )?;
    let target = crate::target::Target::parse(
        &first.provenance.target,
        crate::target::Source { name: "--target" },
    )
    .map_err(|e| {
        UserError::invalid(
            "shard result",
            first_path,
            Some("`provenance.target`".into()),
            e.to_string(),
        )
    })?;
    Ok(MergeSettings {
        shards,
        missing,
        plan: crate::engine::Plan::new(Arc::new(scenario), target, Arc::default(), load),
        out: a.out.clone(),
        requests_out: a.requests_out.clone(),
    })
}

/// The shard files named: a directory stands for every `shard-*.json` in it
/// (for a container without a shell to expand the pattern).
fn shard_files(given: &[PathBuf]) -> Result<Vec<PathBuf>, UserError> {
    let mut out = Vec::new();
    for p in given {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|source| UserError::Read {
            path: p.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".json"))
            })
            .collect();
        if found.is_empty() {
            return Err(UserError::flag(
                "SHARD",
                format!("the directory `{}` holds no `shard-*.json`", p.display()),
            ));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}
