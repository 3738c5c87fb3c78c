//! The history store: one small JSON record per nightly (or main-branch)
//! run, appended to a JSON Lines file. A record holds what the gate judges
//! (the baseline summary of the run: every gated metric per step, per
//! workflow and overall) with the commit, date, runner and setup — never
//! requests, tokens or server bodies.

use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::baseline::{unfit, Baseline, BaselineRun};
use super::{Host, RunResult, ScenarioRef};
use crate::error::UserError;
use crate::policy::Policy;

/// The `kind` of a history record.
pub const KIND: &str = "flora-gate/history";
/// Version of the record format.
pub const SCHEMA_VERSION: u32 = 1;
/// The file a history directory holds.
pub const FILE_NAME: &str = "history.jsonl";
/// Longest line read (a record is a few kB).
pub const MAX_LINE: usize = 256 * 1024;
/// Most records read from one file.
pub const MAX_RECORDS: usize = 20_000;

/// One run in the history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// [`KIND`].
    pub kind: String,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Commit of the measured code (`--commit`, `GITHUB_SHA` or `git rev-parse HEAD`).
    pub commit: Option<String>,
    /// Start of the run, RFC 3339.
    pub date: String,
    /// What made it: `nightly`, `gate`, or the user's word.
    pub source: String,
    /// flora-gate's version.
    pub tool_version: String,
    /// The scenario.
    pub scenario: ScenarioRef,
    /// Virtual users.
    pub concurrency: u32,
    /// The scenario's variables as the run used them.
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// The target (user info removed).
    pub target: String,
    /// The load generator's host.
    pub runner: Host,
    /// The gate policy of the run.
    pub gate: Policy,
    /// Why the run is not a fair measurement (saturated, partial, failing),
    /// when it is not; such records are kept and left out of the series.
    #[serde(default)]
    pub unfit: Option<String>,
    /// How many runs the values are the median of (a nightly refresh of
    /// five runs makes one record of five).
    #[serde(default = "one")]
    pub runs: u32,
    /// What the gate judges: metric values per scope.
    pub run: BaselineRun,
}

fn one() -> u32 {
    1
}

impl Record {
    /// The record of a finished run (the gated stage of a staged one).
    pub fn from_result(
        r: &RunResult,
        commit: Option<String>,
        source: &str,
    ) -> Result<Self, String> {
        let part = r.gated_part(r.gate.stage.as_deref())?;
        let mut run = BaselineRun::from_result(&part);
        // Blocks are the within-run detail a baseline keeps; a night is one
        // point of a series, so the record stays a few kB.
        run.blocks.clear();
        Ok(Self {
            kind: KIND.into(),
            schema_version: SCHEMA_VERSION,
            commit: commit.or_else(super::baseline::git_commit),
            date: r.provenance.started_at.clone(),
            source: source.into(),
            tool_version: r.provenance.tool_version.clone(),
            scenario: r.provenance.scenario.clone(),
            concurrency: r.provenance.concurrency,
            vars: r.provenance.vars.clone(),
            target: crate::target::redact_userinfo(&r.provenance.target),
            runner: r.provenance.host.clone(),
            gate: r.gate.clone(),
            unfit: unfit(r),
            runs: 1,
            run,
        })
    }

    /// One record of the newest `n` runs of a baseline (a night's
    /// refresh): each value the median of theirs, an unbounded value
    /// counting as the largest. The median of several runs is a steadier
    /// night than any one of them.
    pub fn from_baseline(
        b: &super::baseline::Baseline,
        n: usize,
        commit: Option<String>,
        source: &str,
    ) -> Result<Self, String> {
        if n == 0 || n > b.runs.len() {
            return Err(format!(
                "the baseline holds {} run(s); cannot take the newest {n}",
                b.runs.len()
            ));
        }
        let newest = &b.runs[b.runs.len() - n..];
        let mut metrics: std::collections::BTreeMap<
            String,
            std::collections::BTreeMap<String, Option<f64>>,
        > = std::collections::BTreeMap::new();
        for run in newest {
            for (scope, m) in &run.metrics {
                for metric in m.keys() {
                    metrics
                        .entry(scope.clone())
                        .or_default()
                        .entry(metric.clone())
                        .or_insert(None);
                }
            }
        }
        for (scope, m) in &mut metrics {
            for (metric, value) in m.iter_mut() {
                let mut v: Vec<f64> = newest
                    .iter()
                    .filter_map(|r| r.metrics.get(scope).and_then(|x| x.get(metric)))
                    .map(|x| x.unwrap_or(f64::INFINITY))
                    .collect();
                *value = super::passes::median(&mut v).filter(|x| x.is_finite());
            }
        }
        let p = &b.provenance;
        let last = &newest[newest.len() - 1];
        Ok(Self {
            kind: KIND.into(),
            schema_version: SCHEMA_VERSION,
            commit: commit
                .or_else(|| p.git_commit.clone())
                .or_else(super::baseline::git_commit),
            date: last.started_at.clone(),
            source: source.into(),
            tool_version: p.tool_version.clone(),
            scenario: p.scenario.clone(),
            concurrency: p.concurrency,
            vars: p.vars.clone(),
            target: p.target.clone(),
            runner: p.runner.clone(),
            gate: b.gate.clone(),
            unfit: None,
            runs: n as u32,
            run: BaselineRun {
                started_at: last.started_at.clone(),
                metrics,
                blocks: Vec::new(),
            },
        })
    }

    /// The setup a series is made of: runs of one scenario text at one
    /// user count with one set of variables are comparable.
    pub fn setup(&self) -> Setup {
        Setup {
            scenario: self.scenario.name.clone(),
            sha256: self.scenario.sha256.clone(),
            concurrency: self.concurrency,
            vars: serde_json::Value::Object(self.vars.clone()).to_string(),
        }
    }
}

/// What makes records comparable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Setup {
    /// Scenario name.
    pub scenario: String,
    /// sha256 of its text.
    pub sha256: String,
    /// Users.
    pub concurrency: u32,
    /// The variables, as JSON.
    pub vars: String,
}

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ({}) at {} users",
            self.scenario,
            &self.sha256.get(..12).unwrap_or(&self.sha256),
            self.concurrency
        )?;
        if self.vars != "{}" {
            write!(f, " with {}", self.vars)?;
        }
        Ok(())
    }
}

/// A baseline of history records (one setup, oldest first): the
/// newest record's setup and policy, every record's summary.
pub fn baseline_of(records: &[&Record]) -> Result<Baseline, UserError> {
    let Some(newest) = records.last() else {
        return Err(UserError::Environment {
            message: "a baseline needs at least one run".into(),
            hint: None,
        });
    };
    Ok(Baseline {
        schema_version: super::baseline::SCHEMA_VERSION,
        kind: super::baseline::KIND.into(),
        provenance: super::baseline::BaselineProvenance {
            tool_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: newest.commit.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
            scenario: newest.scenario.clone(),
            target: newest.target.clone(),
            concurrency: newest.concurrency,
            vars: newest.vars.clone(),
            runner: newest.runner.clone(),
        },
        gate: newest.gate.clone(),
        runs: records.iter().map(|r| r.run.clone()).collect(),
    })
}

/// A line of the file that is not a record, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// 1-based line number.
    pub line: usize,
    /// Why it was left out.
    pub why: String,
}

/// The records of a history file, in file order, and the lines that are not records.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// Records, in file order.
    pub records: Vec<Record>,
    /// Lines left out.
    pub skipped: Vec<Skipped>,
}

/// `DIR` → `DIR/history.jsonl`; a file path stays itself.
pub fn file_of(path: &Path) -> PathBuf {
    if path.is_dir() || path.extension().is_none() {
        path.join(FILE_NAME)
    } else {
        path.to_path_buf()
    }
}

/// Read a history file line by line (bounded memory per line, bounded
/// count). A line that is not a record is reported, not fatal: one bad
/// night must not hide the others.
pub fn read(path: &Path) -> Result<Read, UserError> {
    let file = std::fs::File::open(path).map_err(|source| UserError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read_from(BufReader::new(file), path)
}

/// [`read`] from any reader.
pub fn read_from(mut input: impl BufRead, path: &Path) -> Result<Read, UserError> {
    let mut out = Read::default();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| UserError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE && !line.ends_with(b"\n") {
            return Err(UserError::invalid(
                "history",
                path,
                Some(format!("line {number}")),
                format!("longer than {} kB; a record is a few kB", MAX_LINE / 1024),
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_line(text) {
            Ok(r) => out.records.push(r),
            Err(why) => out.skipped.push(Skipped { line: number, why }),
        }
        if out.records.len() > MAX_RECORDS {
            return Err(UserError::invalid(
                "history",
                path,
                Some(format!("line {number}")),
                format!("more than {MAX_RECORDS} records; split the history or keep fewer nights"),
            ));
        }
    }
    Ok(out)
}

fn parse_line(text: &str) -> Result<Record, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    match v.get("kind").and_then(|k| k.as_str()) {
        Some(KIND) => {}
        Some(other) => {
            return Err(format!(
                "a `{}` record, not a history record",
                other.chars().take(60).collect::<String>()
            ))
        }
        None => return Err("no `kind`; not a history record".into()),
    }
    match v.get("schema_version").and_then(serde_json::Value::as_u64) {
        Some(n) if n == u64::from(SCHEMA_VERSION) => {}
        Some(n) => {
            return Err(format!(
                "schema version {n}; this flora-gate reads {SCHEMA_VERSION}"
            ))
        }
        None => return Err("no `schema_version`".into()),
    }
    let r: Record = serde_json::from_value(v).map_err(|e| format!("not a valid record ({e})"))?;
    if chrono::DateTime::parse_from_rfc3339(&r.date).is_err() {
        return Err(format!(
            "`date` is not an RFC 3339 time: `{}`",
            r.date.chars().take(60).collect::<String>()
        ));
    }
    Ok(r)
}

/// Append one record as one line (the file and its directory are created
/// when missing; an existing file is only ever appended to).
pub fn append(path: &Path, record: &Record) -> Result<(), UserError> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| UserError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut line = serde_json::to_string(record).map_err(|e| UserError::Environment {
        message: format!("could not encode the history record: {e}"),
        hint: None,
    })?;
    line.push('\n');
    let write = |p: &Path| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(p)?;
        // A file whose last line lacks its newline (cut off) gets one first,
        // so the new record is a line of its own (writes go to the end
        // whatever was read).
        if f.metadata()?.len() > 0 {
            let mut last = [0u8; 1];
            std::io::Seek::seek(&mut f, std::io::SeekFrom::End(-1))?;
            std::io::Read::read_exact(&mut f, &mut last)?;
            if last[0] != b'\n' {
                f.write_all(b"\n")?;
            }
        }
        f.write_all(line.as_bytes())?;
        f.sync_all()
    };
    write(path).map_err(|source| UserError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named_and_good_ones_kept() {
        let text = "not json\n{\"kind\":\"flora-gate/verdict\"}\n\n{\"kind\":\"flora-gate/history\",\"schema_version\":9}\n{\"kind\":\"flora-gate/history\",\"schema_version\":1}\n";
        let r = read_from(text.as_bytes(), Path::new("h.jsonl")).expect("reads");
        assert!(r.records.is_empty());
        let lines: Vec<usize> = r.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![1, 2, 4, 5]);
        assert!(r.skipped[0].why.starts_with("not JSON"));
        assert!(r.skipped[1].why.contains("flora-gate/verdict"));
        assert!(r.skipped[2].why.contains("schema version 9"));
        assert!(r.skipped[3].why.contains("not a valid record"));
    }

    #[test]
    fn an_endless_line_is_refused_with_its_number() {
        let mut text = b"\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        let e = read_from(text.as_slice(), Path::new("h.jsonl")).expect_err("refused");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn directories_hold_history_jsonl() {
        let d = tempfile::tempdir().expect("dir");
        assert_eq!(file_of(d.path()), d.path().join(FILE_NAME));
        assert_eq!(file_of(Path::new("x/h.jsonl")), Path::new("x/h.jsonl"));
        assert_eq!(
            file_of(Path::new("x/new")),
            Path::new("x/new/history.jsonl")
        );
    }
}
