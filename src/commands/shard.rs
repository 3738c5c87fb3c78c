//! `flora-gate plan` and `flora-gate merge`: a distributed run's plan out,
//! its shards' results in.

use super::{MergeSettings, Outcome, PlanSettings};
use crate::result::{requests, shard};

pub(super) fn plan(s: &PlanSettings) -> anyhow::Result<Outcome> {
    let p = &s.plan;
    crate::jsonfile::write(&s.out, p, "plan")?;
    eprintln!(
        "plan {} written to {}: {} shard(s) of `{}` start at {}",
        p.plan_id,
        s.out.display(),
        p.shards,
        p.scenario.name,
        p.start_at
    );
    crate::output::out(&format!(
        "each shard runs: flora-gate run --plan {} --shard I/{} --scenario {} --target URL [--tokens CSV] --out shard-I.json\n\
         then:            flora-gate merge shard-*.json --out result.json\n",
        s.out.display(),
        p.shards,
        p.scenario.origin.strip_prefix("bundled:").unwrap_or(&p.scenario.origin),
    ));
    Ok(Outcome::Success)
}

pub(super) fn merge(s: &MergeSettings) -> anyhow::Result<Outcome> {
    let (merged, records) = shard::merge(&s.plan, &s.shards, s.missing.clone())?;
    merged.write(&s.out)?;
    eprintln!(
        "{} shard(s) merged into {}",
        s.shards.len(),
        s.out.display()
    );
    if let Some(p) = &s.requests_out {
        requests::write_sides(p, &s.plan.scenario, &[(None, &records)])?;
        eprintln!("requests written to {}", p.display());
    }
    crate::output::out(&crate::render::text::summary(&merged));
    if let Some(m) = &merged.merged {
        crate::output::out(&crate::render::text::shards(m));
    }
    Ok(Outcome::Success)
}
