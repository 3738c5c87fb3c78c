//! The `[load]` table and the `[[workflows]]` mix, checked into their typed
//! forms with the line and key of anything wrong.

use std::collections::BTreeSet;
use std::time::Duration;

use super::file::{FileLoad, FileWorkflow};
use super::shape::{Arrival, Finish, Model, Shape, Stage, Think, Workflow};
use super::{caps, line_col, LoadSpec, Step};
use crate::error::UserError;

type Invalid<'a> = &'a dyn Fn(Option<String>, String) -> UserError;

fn at(text: &str, span: std::ops::Range<usize>, key: &str) -> Option<String> {
    let (l, _) = line_col(text, span.start);
    Some(format!("line {l}, key `{key}`"))
}

/// `[load]` with its defaults, checked against the caps.
// Long by design: one `[load]` key after another with its default and its
// check, in the table's order.
pub(super) fn build(l: &FileLoad, text: &str, invalid: Invalid) -> Result<LoadSpec, UserError> {
    let mut load = LoadSpec {
        concurrency: l.concurrency.unwrap_or(4),
        duration: l.duration.map(|d| d.0).or(if l.requests.is_some() {
            None
        } else {
            Some(Duration::from_secs(30))
        }),
        requests: l.requests,
        warmup: l.warmup.map_or(Duration::ZERO, |d| d.0),
        think_time: match &l.think_time {
            Some(t) => Think::parse(t.get_ref())
                .map_err(|m| invalid(at(text, t.span(), "load.think_time"), m))?,
            None => Think::None,
        },
        seed: l.seed.unwrap_or(1),
        blocks: l.blocks.unwrap_or(10),
        shape: None,
        window: l.window.map_or(Duration::from_secs(10), |d| d.0),
        finish: match &l.finish {
            None => Finish::Request,
            Some(f) => match f.get_ref().as_str() {
                "request" => Finish::Request,
                "workflow" => Finish::Workflow,
                other => {
                    return Err(invalid(
                        at(text, f.span(), "load.finish"),
                        format!("`{other}` is not \"request\" or \"workflow\""),
                    ))
                }
            },
        },
        stop_runaway: false,
        start_together: false,
        shard: None,
        replay: None,
    };
    let model = match &l.model {
        None => Model::Closed,
        Some(m) => match m.get_ref().as_str() {
            "closed" => Model::Closed,
            "open" => Model::Open,
            other => {
                return Err(invalid(
                    at(text, m.span(), "load.model"),
                    format!(
                        "`{other}` is not \"closed\" (users) or \"open\" (arrivals per second)"
                    ),
                ))
            }
        },
    };
    let arrival = match &l.arrival {
        None => Arrival::Poisson,
        Some(a) => Arrival::parse(a.get_ref())
            .map_err(|m| invalid(at(text, a.span(), "load.arrival"), m))?,
    };
    if l.stages.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid(
            Some("`load.stages`".into()),
            "the stage list is empty; give at least one `[[load.stages]]` (or none for fixed users)".into(),
        ));
    }
    let file_stages = l.stages.as_deref().unwrap_or_default();
    if file_stages.is_empty() {
        if model == Model::Open || l.arrival.is_some() || l.max_in_flight.is_some() {
            return Err(invalid(
                Some("`load.stages`".into()),
                "an open-loop load (`model`, `arrival`, `max_in_flight`) needs `[[load.stages]]` with rates as targets".into(),
            ));
        }
    } else {
        if l.duration.is_some() || l.requests.is_some() || l.concurrency.is_some() {
            return Err(invalid(
                at(text, file_stages[0].span(), "load.stages"),
                "the stages set the run's length and users: drop `duration`, `requests` and `concurrency` from `[load]`".into(),
            ));
        }
        let stages = file_stages
            .iter()
            .map(|s| {
                let s = s.get_ref();
                Stage {
                    name: s.name.clone(),
                    duration: s.duration.0,
                    target: s.target,
                }
            })
            .collect();
        let shape = shape(model, stages, arrival, l.max_in_flight).map_err(|(key, m)| {
            let place = stage_index(&key)
                .and_then(|i| file_stages.get(i))
                .map_or_else(|| Some(format!("`{key}`")), |s| at(text, s.span(), &key));
            invalid(place, m)
        })?;
        load.set_shape(shape);
    }
    caps::check(&load).map_err(|e| invalid(Some(format!("`{}`", e.key)), e.message))?;
    Ok(load)
}

/// A shape from its parts, checked: `Err((key, why))`.
pub fn shape(
    model: Model,
    stages: Vec<Stage>,
    arrival: Arrival,
    max_in_flight: Option<u32>,
) -> Result<Shape, (String, String)> {
    for (i, s) in stages.iter().enumerate() {
        if s.name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.chars().any(char::is_control))
        {
            return Err((
                format!("load.stages[{i}].name"),
                "a stage name must be non-empty, without control characters".into(),
            ));
        }
    }
    let shape = Shape {
        model,
        stages,
        arrival,
        max_in_flight: max_in_flight.unwrap_or(1000),
    };
    shape.check()?;
    Ok(shape)
}

fn stage_index(key: &str) -> Option<usize> {
    key.strip_prefix("load.stages[")?
        .split(']')
        .next()?
        .parse()
        .ok()
}

/// The `[[workflows]]` mix, or one workflow of every step in order.
pub(super) fn workflows(
    file: &[toml::Spanned<FileWorkflow>],
    steps: &[Step],
    text: &str,
    invalid: Invalid,
) -> Result<Vec<Workflow>, UserError> {
    if file.is_empty() {
        return Ok(vec![Workflow {
            name: "workflow".into(),
            weight: 1.0,
            steps: (0..steps.len()).collect(),
        }]);
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(file.len());
    for (i, w) in file.iter().enumerate() {
        let place = |k: &str| at(text, w.span(), &format!("workflows[{i}].{k}"));
        let w = w.get_ref();
        if w.name.trim().is_empty()
            || w.name.chars().any(char::is_control)
            || !names.insert(w.name.clone())
        {
            return Err(invalid(
                place("name"),
                format!(
                    "workflow names must be non-empty, unique and without control characters (`{}`)",
                    w.name
                ),
            ));
        }
        // Bounded, so the weights' sum is always a finite number.
        if !w.weight.is_finite() || !(0.0..=1e9).contains(&w.weight) {
            return Err(invalid(
                place("weight"),
                format!("{} must be a number from 0 to 1e9", w.weight),
            ));
        }
        if w.steps.is_empty() {
            return Err(invalid(
                place("steps"),
                "a workflow needs at least one step".into(),
            ));
        }
        let mut idx = Vec::with_capacity(w.steps.len());
        for name in &w.steps {
            let Some(j) = steps.iter().position(|s| &s.name == name) else {
                return Err(invalid(
                    place("steps"),
                    format!(
                        "no step is named `{name}`; the steps are {}",
                        steps
                            .iter()
                            .map(|s| format!("`{}`", s.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            idx.push(j);
        }
        out.push(Workflow {
            name: w.name.clone(),
            weight: w.weight,
            steps: idx,
        });
    }
    if out.iter().map(|w| w.weight).sum::<f64>() <= 0.0 {
        return Err(invalid(
            Some("`workflows`".into()),
            "the workflow weights sum to 0: nothing would be drawn".into(),
        ));
    }
    Ok(out)
}
