//! What each command takes: typed, validated settings. The CLI layer builds
//! them (every bad flag becomes an error there); nothing here knows clap.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::Plan;
use crate::mock::MockConfig;
use crate::policy::PolicyFile;
use crate::render::report::Format;
use crate::result::Current;

/// One validated command.
#[derive(Debug)]
pub enum Settings {
    /// `demo`.
    Demo(DemoSettings),
    /// `mock`.
    Mock(MockSettings),
    /// `run`.
    Run(Box<RunSettings>),
    /// `compare`.
    Compare(CompareSettings),
    /// `report`.
    Report(ReportSettings),
    /// `baseline refresh`.
    Refresh(RefreshSettings),
    /// `baseline propose`.
    Propose(ProposeSettings),
    /// `gate`.
    Gate(Box<GateSettings>),
    /// `comment`.
    Comment(CommentSettings),
    /// `capacity`.
    Capacity(Box<CapacitySettings>),
    /// `compare` of two capacity results.
    CompareCapacity(Box<CompareCapacitySettings>),
    /// `report` of a capacity result.
    ReportCapacity(Box<ReportCapacitySettings>),
    /// `plan`.
    Plan(PlanSettings),
    /// `merge`.
    Merge(Box<MergeSettings>),
    /// `history`.
    History(Box<HistorySettings>),
    /// `trace check`.
    TraceCheck(Box<TraceCheckSettings>),
    /// `trace convert`.
    TraceConvert(TraceConvertSettings),
}

/// `trace check`: a checked trace and its scenario.
#[derive(Debug)]
pub struct TraceCheckSettings {
    /// The scenario's label.
    pub scenario: String,
    /// The checked trace.
    pub replay: crate::scenario::trace::Replay,
}

/// `trace convert`.
#[derive(Debug)]
pub struct TraceConvertSettings {
    /// The request log.
    pub requests: PathBuf,
    /// The trace to write.
    pub out: PathBuf,
}

/// Where a history is kept.
#[derive(Debug, Clone)]
pub enum HistoryStore {
    /// A local JSON Lines file.
    File(PathBuf),
    /// A file on a branch of the repository, through the API.
    Branch {
        /// owner/name (default: `GITHUB_REPOSITORY`).
        repo: Option<String>,
        /// The branch.
        branch: String,
        /// The file's path on it.
        path: String,
    },
}

/// What `history` adds.
#[derive(Debug, Clone)]
pub enum HistoryAdd {
    /// One run's result.
    Result(PathBuf),
    /// The median of a baseline's newest N runs.
    Baseline(PathBuf, usize),
}

/// `history`.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// The store.
    pub store: HistoryStore,
    /// What to add first.
    pub add: Option<HistoryAdd>,
    /// Its commit.
    pub commit: Option<String>,
    /// What made it.
    pub source: String,
    /// The analysis.
    pub trend: crate::gate::trend::Settings,
    /// Format on stdout or `out`.
    pub format: crate::render::report::Format,
    /// Instead of stdout.
    pub out: Option<PathBuf>,
    /// Markdown beside.
    pub markdown_out: Option<PathBuf>,
    /// JSON beside.
    pub json_out: Option<PathBuf>,
    /// HTML beside.
    pub html_out: Option<PathBuf>,
    /// Exit 1 on a finding this recent (0: never).
    pub fail_recent: usize,
}

/// `plan`: the plan to write.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// The plan.
    pub plan: crate::result::shard::ShardPlan,
    /// Where it goes.
    pub out: PathBuf,
}

/// `merge`: checked shards and what their merge needs.
#[derive(Debug, Clone)]
pub struct MergeSettings {
    /// The shards, by index: path, result and what it says of itself.
    pub shards: Vec<crate::result::shard::ShardFile>,
    /// Shards of the plan not given (`--allow-partial`).
    pub missing: Vec<u32>,
    /// The whole run's plan (no shard): the scenario they ran, its load, the
    /// target as the shards recorded it.
    pub plan: crate::engine::Plan,
    /// The merged result.
    pub out: PathBuf,
    /// Every request, if wanted.
    pub requests_out: Option<PathBuf>,
}

/// `report` of a capacity result, judged against a baseline capacity when one is given.
#[derive(Debug, Clone)]
pub struct ReportCapacitySettings {
    /// The capacity.
    pub current: crate::result::capacity::CapacityResult,
    /// The baseline capacity and the margin, if judged.
    pub baseline: Option<(crate::result::capacity::CapacityResult, f64)>,
    /// Markdown, text or JSON (the verdict, or the capacity itself).
    pub format: crate::render::report::Format,
    /// Where the report goes (stdout when `None`).
    pub out: Option<PathBuf>,
}

/// `compare` of a capacity result with a baseline capacity result.
#[derive(Debug, Clone)]
pub struct CompareCapacitySettings {
    /// The baseline capacity.
    pub baseline: crate::result::capacity::CapacityResult,
    /// The current capacity.
    pub current: crate::result::capacity::CapacityResult,
    /// Smallest fall that fails.
    pub margin: f64,
    /// Where the verdict goes, if anywhere.
    pub out: Option<PathBuf>,
}

/// A capacity search.
#[derive(Debug, Clone)]
pub struct CapacitySettings {
    /// The plan each probe runs (its load is set per probe).
    pub plan: Plan,
    /// What every passing level must meet.
    pub objectives: Vec<crate::policy::slo::Objective>,
    /// How to search: by users or rate, from where, how precisely.
    pub search: crate::result::capacity::SearchSettings,
    /// The capacity file.
    pub out: PathBuf,
    /// The Markdown report, if wanted.
    pub report_out: Option<PathBuf>,
}

/// A measurement and where its files go.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// What to run (a duet when it has a reference).
    pub plan: Plan,
    /// The result file.
    pub out: PathBuf,
    /// The request log, if wanted.
    pub requests_out: Option<PathBuf>,
    /// A shard of a distributed run: the plan and this shard's index.
    pub shard: Option<(crate::result::shard::ShardPlan, u32)>,
}

/// How a result is judged.
#[derive(Debug, Clone, Default)]
pub struct JudgeSettings {
    /// The baseline file (a duet needs none).
    pub baseline: Option<PathBuf>,
    /// Policy settings over the result's own.
    pub overrides: PolicyFile,
    /// Compare different setups anyway.
    pub force: bool,
}

/// `compare`.
#[derive(Debug, Clone)]
pub struct CompareSettings {
    /// The result to judge, read and checked.
    pub current: Current,
    /// How.
    pub judge: JudgeSettings,
    /// Where the verdict goes, if anywhere.
    pub out: Option<PathBuf>,
}

/// `report`.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// The result, read and checked.
    pub current: Current,
    /// A verdict file to show.
    pub verdict: Option<PathBuf>,
    /// Or a baseline to judge against.
    pub judge: JudgeSettings,
    /// Output format.
    pub format: Format,
    /// Template overrides.
    pub templates: Option<PathBuf>,
    /// The report file (stdout when none).
    pub out: Option<PathBuf>,
}

/// Where the runs of a baseline come from.
#[derive(Debug, Clone)]
pub enum RefreshSource {
    /// Existing result files.
    Files(Vec<PathBuf>),
    /// The embedded mock with the demo's workflow.
    Mock {
        /// Run length.
        duration: Duration,
        /// Warm-up (the demo's when none).
        warmup: Option<Duration>,
        /// Users.
        concurrency: u32,
    },
    /// Runs of a plan.
    Plan(Box<Plan>),
    /// A capacity result from `flora-gate capacity`, taken as it is.
    CapacityFile(PathBuf),
    /// The search of the capacity baseline in `--out`, repeated.
    CapacitySearch(Box<CapacitySettings>),
    /// The nights of a history since its newest change point.
    History {
        /// The history file.
        file: PathBuf,
        /// Its setup to take.
        setup: Option<String>,
    },
}

/// `baseline refresh`.
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Where the runs come from.
    pub source: RefreshSource,
    /// The stage the baseline holds, over the runs' own policy.
    pub gate_stage: Option<String>,
    /// How many runs to make (not for files).
    pub runs: u32,
    /// The baseline file.
    pub out: PathBuf,
    /// Add to the baseline in `out`.
    pub append: bool,
    /// Keep the newest this many runs when appending.
    pub keep: usize,
    /// Take unfit runs anyway.
    pub accept_bad_runs: bool,
}

/// `mock`.
#[derive(Debug, Clone)]
pub struct MockSettings {
    /// Behaviour.
    pub config: MockConfig,
    /// Where to listen.
    pub addr: SocketAddr,
}

/// `demo`.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Run length.
    pub duration: Duration,
    /// Users.
    pub concurrency: u32,
    /// Factor on the mock's latencies.
    pub slowdown: f64,
    /// The result file, if wanted.
    pub out: Option<PathBuf>,
    /// The HTML report, if wanted.
    pub html: Option<PathBuf>,
}

/// When `gate` posts a PR comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentMode {
    /// On pull_request events inside GitHub Actions.
    Auto,
    /// Whenever a PR number is known.
    Always,
    /// Never.
    Never,
}

/// Which sticky comment is ours.
#[derive(Debug, Clone)]
pub struct Sticky {
    /// Id in the hidden marker.
    pub id: String,
    /// Login flora-gate posts as; only its comments are edited.
    pub author: String,
}

/// `gate`.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// What is judged: a measurement, or a result file (`--result`).
    pub source: GateSource,
    /// The result file: the one the measurement writes, or the one judged.
    pub result: PathBuf,
    /// The judgement.
    pub judge: JudgeSettings,
    /// The verdict file.
    pub verdict_out: PathBuf,
    /// The Markdown report file.
    pub report_out: PathBuf,
    /// The HTML report (none when `--report-out` is a device or a pipe and
    /// no `--html-out` was given).
    pub html_out: Option<PathBuf>,
    /// When to comment.
    pub comment: CommentMode,
    /// Which comment.
    pub sticky: Sticky,
    /// Exit 1 on a regression.
    pub fail_on_regression: bool,
    /// Run once more before failing.
    pub confirm: bool,
    /// The history whose long-term reference the run is also judged against.
    pub history: Option<PathBuf>,
    /// Against a baseline capacity: the search to repeat instead of one run.
    pub capacity: Option<Box<CapacityGate>>,
}

/// What a gate judges.
#[derive(Debug, Clone)]
pub enum GateSource {
    /// A run it makes (a capacity gate's search uses only its files).
    Measure(Box<RunSettings>),
    /// A result made elsewhere (a merge of shards, say).
    File(Box<crate::result::Current>),
}

/// A gate on capacity: the baseline's search repeated on this target and
/// compared with the baseline's result.
#[derive(Debug, Clone)]
pub struct CapacityGate {
    /// The search, with the baseline's objectives and settings.
    pub search: CapacitySettings,
    /// The baseline capacity.
    pub baseline: crate::result::capacity::CapacityResult,
    /// Smallest fall that fails.
    pub margin: f64,
}

/// `comment`.
#[derive(Debug, Clone)]
pub struct CommentSettings {
    /// The Markdown to post.
    pub body: PathBuf,
    /// Which comment.
    pub sticky: Sticky,
    /// The PR (from the event when none).
    pub pr: Option<u64>,
    /// owner/name (from the environment when none).
    pub repo: Option<String>,
    /// The PR from the `workflow_run` event; the body is untrusted text.
    pub workflow_run: bool,
}

/// `baseline propose`.
#[derive(Debug, Clone)]
pub struct ProposeSettings {
    /// The baseline file, at its path in the repository.
    pub baseline: PathBuf,
    /// The branch to push to.
    pub branch: String,
    /// The branch the PR targets.
    pub base: String,
    /// owner/name (from the environment when none).
    pub repo: Option<String>,
    /// PR title.
    pub title: String,
}
