//! Command-line arguments (clap). Validation into typed settings happens in
//! `config.rs`, so every bad flag becomes an error in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `--drain` when not given (also what `baseline refresh` runs use).
pub const DEFAULT_DRAIN: &str = "15s";

/// Performance regression gate for streaming LLM APIs.
///
/// Drives short fixed-concurrency workflow load tests against a streaming LLM
/// API (the Dreaminkflora novel-writing API, any OpenAI-compatible server or
/// Anthropic's Messages API),
/// measures time to first token, time per output token, throughput and errors
/// per step, and writes a result file for the gate.
///
/// Exit codes: 0 success, 1 regression found, 2 usage, input or environment error.
#[derive(Debug, Parser)]
#[command(
    name = "flora-gate",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Zero set-up: start the mock, run the novel workflow against it, print the summary.
    Demo(DemoArgs),
    /// Serve the mock Dreaminkflora + OpenAI-compatible + Anthropic Messages API.
    Mock(MockArgs),
    /// Run one load test and write the result JSON.
    Run(Box<RunArgs>),
    /// Judge a result against a baseline (or a duet result on its own).
    Compare(CompareArgs),
    /// Render a result (and its verdict) as Markdown, text or JSON.
    Report(ReportArgs),
    /// Make and manage baselines.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Run + compare + report in one; in GitHub Actions also the job summary,
    /// step outputs, annotations and the sticky PR comment.
    Gate(Box<GateArgs>),
    /// Create or update the sticky PR comment with a report.
    Comment(CommentArgs),
    /// Find the most users the target holds within its SLOs: probe levels
    /// (double, then bisect), each measured until the evidence is clear.
    Capacity(CapacityArgs),
    /// Make the plan of a distributed run: every shard (`run --plan plan.json
    /// --shard i/N`) takes its share of it and starts at its agreed time.
    Plan(PlanArgs),
    /// Merge the results of a distributed run's shards into one result,
    /// exactly: their requests summarised as one run's.
    Merge(MergeArgs),
    /// Keep nightly results and see where they moved: add a result to a
    /// history, then find each series' change points (with their commit
    /// range, step and probability) and any drift from the long-term
    /// reference, as Markdown, text, JSON or an HTML trend report.
    History(HistoryArgs),
    /// Traces of real usage to replay with `run --replay`: check one
    /// against a scenario, or convert a run's request log into one.
    #[command(subcommand)]
    Trace(TraceCommand),
}

/// `flora-gate trace …`.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Read a trace line by line against a scenario and say what its
    /// replay would send (requests per step, sessions, how long).
    Check(TraceCheckArgs),
    /// Turn a run's request log (`--requests-out`) into a trace in
    /// flora-gate's format, each request at its start.
    Convert(TraceConvertArgs),
}

/// `flora-gate trace check`.
#[derive(Debug, Args)]
pub struct TraceCheckArgs {
    /// The trace (flora-gate or Mooncake JSONL).
    pub trace: PathBuf,
    /// The scenario whose steps it names.
    #[arg(long, short = 's', value_name = "FILE|NAME")]
    pub scenario: String,
    /// How many times faster than recorded.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speed: f64,
    /// Only the requests in this slice of the trace's time, `FROM..TO`.
    #[arg(long, value_name = "FROM..TO")]
    pub replay_window: Option<String>,
    /// The step of lines that name none.
    #[arg(long, value_name = "STEP")]
    pub replay_step: Option<String>,
}

/// `flora-gate trace convert`.
#[derive(Debug, Args)]
pub struct TraceConvertArgs {
    /// The request log (`run --requests-out`).
    pub requests: PathBuf,
    /// Where to write the trace.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
}

/// `flora-gate history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The history: a directory (its `history.jsonl`) or a `.jsonl` file;
    /// with `--branch`, the file's path on that branch.
    #[arg(value_name = "DIR|FILE")]
    pub path: PathBuf,
    /// Add this run result to the history first (a run of the gated stage
    /// that is unfit — saturated, partial, failing — is kept and marked).
    #[arg(long, value_name = "RESULT")]
    pub add: Option<PathBuf>,
    /// Add one record of a baseline's newest `--runs` runs (a nightly
    /// refresh): each value the median of theirs, a steadier night than one run.
    #[arg(long, value_name = "BASELINE", conflicts_with = "add")]
    pub add_baseline: Option<PathBuf>,
    /// With `--add-baseline`: how many of its newest runs make the night.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "add_baseline")]
    pub runs: usize,
    /// The commit the added result measured (default: `GITHUB_SHA`, else
    /// `git rev-parse HEAD`).
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// What made the added result: `nightly`, `gate`, or your word.
    #[arg(long, value_name = "WORD", default_value = "nightly")]
    pub source: String,
    /// Keep the history on this branch of the repository (`GITHUB_REPOSITORY`,
    /// through the API with `GITHUB_TOKEN`) instead of a local path; made
    /// from the default branch when missing.
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// owner/name for `--branch` (default: `GITHUB_REPOSITORY`).
    #[arg(long, value_name = "OWNER/NAME", requires = "branch")]
    pub repo: Option<String>,
    /// The setup to analyse: a scenario name or a prefix of its sha256
    /// (default: the newest record's).
    #[arg(long, value_name = "NAME|SHA")]
    pub setup: Option<String>,
    /// Only the newest N nights.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Largest permutation p-value of a change point (and of a drift).
    #[arg(long, value_name = "P", default_value_t = 0.01)]
    pub alpha: f64,
    /// Fewest nights on either side of a change point.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub min_nights: usize,
    /// Smallest step reported (0.02 = 2%); smaller significant steps are
    /// counted in the notes.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.02)]
    pub min_step: f64,
    /// Format of the report on stdout (or in `--out`).
    #[arg(long, short = 'f', value_enum, default_value = "markdown")]
    pub format: FormatArg,
    /// Write the report here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the Markdown report here.
    #[arg(long, value_name = "FILE")]
    pub markdown_out: Option<PathBuf>,
    /// Also write the analysis as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Also write the HTML trend report here.
    #[arg(long, value_name = "FILE")]
    pub html_out: Option<PathBuf>,
    /// Exit 1 when a gated metric stepped worse within the newest N nights
    /// or drifted past the warn margin (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_recent: usize,
}

/// `flora-gate plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Scenario TOML file, or a bundled scenario name.
    #[arg(long, short = 's', value_name = "FILE|NAME")]
    pub scenario: String,
    /// How many shards (machines, matrix jobs, pods) share the load.
    #[arg(long, value_name = "N")]
    pub shards: u32,
    /// Start this long after the plan is made, time for every shard to be
    /// scheduled and ready.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "120s",
        conflicts_with = "start_at"
    )]
    pub start_in: String,
    /// Start at this time instead (RFC 3339, e.g. `2026-11-27T03:00:00Z`).
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Users in all (as `run --concurrency`).
    #[arg(long, short = 'c', value_name = "N")]
    pub concurrency: Option<u32>,
    /// Run length (as `run --duration`).
    #[arg(long, short = 'd', value_name = "DURATION")]
    pub duration: Option<String>,
    /// Warm-up (as `run --warmup`).
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<String>,
    /// Stages of the whole load (as `run --stages`): users or rates in all.
    #[arg(long, value_name = "STAGES", conflicts_with_all = ["concurrency", "duration"])]
    pub stages: Option<String>,
    /// `closed` or `open` (as `run --model`).
    #[arg(long, value_name = "MODEL", requires = "stages")]
    pub model: Option<String>,
    /// Time-series window (as `run --window`).
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Seed of the data set, the mix and the arrivals (default: the scenario's).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Set a template variable (checked against the scenario only; each
    /// shard passes its own `--var`s, which must be the same).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Where to write the plan.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "plan.json")]
    pub out: PathBuf,
}

/// `flora-gate merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' result files (each with its `.records` file beside it).
    #[arg(value_name = "SHARD", required = true)]
    pub shards: Vec<PathBuf>,
    /// The scenario (default: the one the shards recorded, by name or path).
    #[arg(long, short = 's', value_name = "FILE|NAME")]
    pub scenario: Option<String>,
    /// Merge the shards that exist when some are missing; the verdict on
    /// the result is then a warning at most.
    #[arg(long)]
    pub allow_partial: bool,
    /// Where to write the merged result.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "result.json")]
    pub out: PathBuf,
    /// Also write every request of every shard, as JSON lines in the order they ended.
    #[arg(long, value_name = "FILE")]
    pub requests_out: Option<PathBuf>,
}

/// `flora-gate capacity`.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Scenario TOML file, or a bundled scenario name.
    #[arg(long, short = 's', value_name = "FILE|NAME")]
    pub scenario: String,
    /// Base URL of the target (overrides the scenario's `base_url`).
    #[arg(long, short = 't', value_name = "URL")]
    pub target: Option<String>,
    /// Tokens CSV (`user_id,access_token`).
    #[arg(long, value_name = "CSV", env = "FLORA_GATE_TOKENS_FILE")]
    pub tokens: Option<PathBuf>,
    /// An objective every passing level must meet, e.g. `--slo ttft_p90=800`
    /// (ms) or `--slo error_rate=0.01`; repeat for several. Default: the
    /// scenario's `[gate] slo`.
    #[arg(long = "slo", value_name = "METRIC=VALUE")]
    pub slo: Vec<String>,
    /// What a level counts: concurrent `users` (closed loop), or workflow
    /// starts per second (`rate`, open loop, Poisson arrivals unless the
    /// scenario's open-loop `[load]` says otherwise).
    #[arg(long, value_enum, default_value_t = CapacityBy::Users)]
    pub by: CapacityBy,
    /// Most users to try (`--by users`).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub max_users: u32,
    /// Seed of the data set, the mix and the arrivals (default: the scenario's).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Highest rate to try, workflow starts per second (`--by rate`).
    #[arg(long, default_value_t = 100.0, value_name = "PER_SECOND")]
    pub max_rate: f64,
    /// The first level probed; it doubles from there until a level fails
    /// [default: 8 users, or 1 per second]. Rates go in steps of 0.1/s.
    #[arg(long, value_name = "N")]
    pub start: Option<f64>,
    /// Stop when the bracket is within this share of the passing level (or one user).
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    pub tolerance: f64,
    /// Measured time of a probe; doubled when its evidence is not clear.
    #[arg(long, default_value = "4s", value_name = "DURATION")]
    pub probe: String,
    /// Warm-up of each probe (not measured).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub warmup: String,
    /// How many times an unclear probe is extended before it is called inconclusive.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub max_extensions: u32,
    /// Set a template variable.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Where to write the capacity JSON.
    #[arg(
        long,
        short = 'o',
        default_value = "capacity.json",
        value_name = "FILE"
    )]
    pub out: PathBuf,
    /// Also write the Markdown report (probes, and Mermaid charts of TTFT and
    /// throughput against users with the SLO line and C*).
    #[arg(long, value_name = "FILE")]
    pub report_out: Option<PathBuf>,
}

/// What a capacity level counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CapacityBy {
    /// Concurrent users.
    Users,
    /// Workflow starts per second.
    Rate,
}

/// When `gate` posts a PR comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CommentMode {
    /// On pull_request events inside GitHub Actions.
    Auto,
    /// Whenever a PR number is known.
    Always,
    /// Never.
    Never,
}

/// `flora-gate gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Baseline JSON (not needed with `--baseline-target`).
    #[arg(long, short = 'b', value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Judge this result instead of measuring (a merged result of a
    /// distributed run, say): the same verdict, report, job summary and
    /// comment as a gate that ran it.
    #[arg(long, value_name = "FILE")]
    pub result: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Compare even when scenario or concurrency differ from the baseline's.
    #[arg(long)]
    pub force: bool,
    /// Where to write the verdict JSON.
    #[arg(long, value_name = "FILE", default_value = "verdict.json")]
    pub verdict_out: PathBuf,
    /// Where to write the Markdown report.
    #[arg(long, value_name = "FILE", default_value = "report.md")]
    pub report_out: PathBuf,
    /// Where to write the HTML report (one file with charts; the Action
    /// uploads it as an artifact and links it from the summary and comment)
    /// [default: beside `--report-out`, as `.html`].
    #[arg(long, value_name = "FILE")]
    pub html_out: Option<PathBuf>,
    /// Post the sticky PR comment.
    #[arg(long, value_enum, default_value = "auto")]
    pub comment: CommentMode,
    /// Id in the comment's hidden marker, so several gates can share a PR.
    #[arg(long, default_value = "default", value_name = "ID")]
    pub comment_id: String,
    /// Login flora-gate posts as; only its own comments are ever edited
    /// (`github-actions[bot]` for the workflow token; a PAT's user otherwise).
    #[arg(
        long,
        env = "FLORA_GATE_COMMENT_AUTHOR",
        default_value = "github-actions[bot]",
        value_name = "LOGIN"
    )]
    pub comment_author: String,
    /// On a failure, run once more and fail only when both runs fail (the
    /// second run's result and verdict are reported; the first is kept as
    /// `RESULT.unconfirmed.json`).
    #[arg(long)]
    pub confirm: bool,
    /// Also judge the run against the long-term reference of this history
    /// (`flora-gate history`): a drift of the gated metrics past the warn
    /// margin since the nights before its first change point is a note, and
    /// a warning past the margin.
    #[arg(long, value_name = "HISTORY")]
    pub history: Option<PathBuf>,
    /// Exit 1 on a regression (`false`: report only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub fail_on_regression: bool,
}

/// `flora-gate comment`.
#[derive(Debug, Args)]
pub struct CommentArgs {
    /// The Markdown to post (a report from `report` or `gate`).
    #[arg(long, value_name = "FILE")]
    pub body: PathBuf,
    /// Id in the hidden marker.
    #[arg(long, default_value = "default", value_name = "ID")]
    pub id: String,
    /// Login flora-gate posts as; only its own comments are ever edited.
    #[arg(
        long,
        env = "FLORA_GATE_COMMENT_AUTHOR",
        default_value = "github-actions[bot]",
        value_name = "LOGIN"
    )]
    pub author: String,
    /// PR number (default: from `GITHUB_EVENT_PATH`).
    #[arg(long, value_name = "N", conflicts_with = "workflow_run")]
    pub pr: Option<u64>,
    /// owner/name (default: `GITHUB_REPOSITORY`).
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Comment for the pull request of the `workflow_run` event in
    /// `GITHUB_EVENT_PATH` (the fork-safe pattern): the PR is the one whose
    /// head is the run's commit, found from the event and the API, never
    /// from the artifact; the body is the artifact's and is posted as text
    /// inside a code block, so nothing in it is a link, image or mention.
    #[arg(long)]
    pub workflow_run: bool,
}

/// `flora-gate baseline …`.
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Run N times (or take existing result files) and write a baseline.
    Refresh(Box<RefreshArgs>),
    /// Propose a baseline file as a pull request (nightly refresh).
    Propose(ProposeArgs),
}

/// `flora-gate baseline propose`.
#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// The baseline file, at its path in the repository.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// Branch to push to (created or reset to the base).
    #[arg(long, default_value = "flora-gate/baseline-refresh")]
    pub branch: String,
    /// Branch the pull request targets.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// owner/name (default: `GITHUB_REPOSITORY`).
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Pull request title.
    #[arg(long, default_value = "Refresh the flora-gate baseline")]
    pub title: String,
}

/// Gate policy flags, overriding the scenario's `[gate]` table.
#[derive(Debug, Args, Clone, Default)]
pub struct PolicyArgs {
    /// Gated metric (repeat for several); replaces the policy's list.
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Smallest relative change that can fail the gate (0.10 = 10%).
    #[arg(long, value_name = "FRACTION")]
    pub margin: Option<f64>,
    /// Smallest significant change that warns.
    #[arg(long, value_name = "FRACTION")]
    pub warn_margin: Option<f64>,
    /// Margin in duet mode (default 0.05: interleaved slots cancel drift).
    #[arg(long, value_name = "FRACTION")]
    pub duet_margin: Option<f64>,
    /// Family-wise false-alarm level across gated metrics (Holm).
    #[arg(long, value_name = "P")]
    pub alpha: Option<f64>,
    /// Absolute bound on the error rate (0.01 = 1%).
    #[arg(long, value_name = "FRACTION")]
    pub max_error_rate: Option<f64>,
    /// Absolute objective, e.g. `--slo ttft_p90=800` (ms) or `--slo output_tokens_per_s=500`.
    #[arg(long = "slo", value_name = "METRIC=VALUE")]
    pub slo: Vec<String>,
    /// Judge only this stage of a staged run (by name), e.g. `--gate-stage "hold 64"`.
    #[arg(long, value_name = "NAME")]
    pub gate_stage: Option<String>,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// GitHub-flavoured Markdown.
    Markdown,
    /// Plain text.
    Text,
    /// The report's data as JSON.
    Json,
    /// One self-contained HTML file with charts (opens offline).
    Html,
}

/// `flora-gate compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Baseline JSON (not needed for a duet result).
    #[arg(long, short = 'b', value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Result JSON of the run to judge (a run result or a duet result).
    #[arg(long, short = 'r', value_name = "FILE")]
    pub current: PathBuf,
    /// Write the verdict JSON here.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Compare even when scenario or concurrency differ from the baseline's.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `flora-gate report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result JSON (a run result or a duet result).
    #[arg(long, short = 'r', value_name = "FILE")]
    pub current: PathBuf,
    /// Baseline JSON; with it and no `--verdict`, the verdict is computed.
    #[arg(long, short = 'b', value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Verdict JSON from `compare`.
    #[arg(long, value_name = "FILE")]
    pub verdict: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "markdown")]
    pub format: FormatArg,
    /// Directory whose `report.md.j2` / `report.txt.j2` replace the embedded templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Write the report here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Compare even when scenario or concurrency differ from the baseline's.
    #[arg(long)]
    pub force: bool,
}

/// `flora-gate baseline refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Scenario file or bundled name (not needed with result files).
    #[arg(long, short = 's', value_name = "FILE|NAME")]
    pub scenario: Option<String>,
    /// Target base URL.
    #[arg(long, short = 't', value_name = "URL")]
    pub target: Option<String>,
    /// Tokens CSV.
    #[arg(long, value_name = "CSV", env = "FLORA_GATE_TOKENS_FILE")]
    pub tokens: Option<PathBuf>,
    /// How many runs to make.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub runs: u32,
    /// Virtual users per run.
    #[arg(long, short = 'c')]
    pub concurrency: Option<u32>,
    /// Duration of each run.
    #[arg(long, short = 'd')]
    pub duration: Option<String>,
    /// Warm-up of each run.
    #[arg(long)]
    pub warmup: Option<String>,
    /// Set a template variable.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Run against the embedded mock with the demo's settings (this is how
    /// `baselines/novel-mock.json` is made).
    #[arg(long, conflicts_with_all = ["target", "tokens"])]
    pub mock: bool,
    /// Where to write the baseline.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Add the new runs to the baseline already in `--out` (same scenario,
    /// users and variables), so its spread includes day-to-day drift.
    #[arg(long)]
    pub append: bool,
    /// With `--append`: keep only the newest K runs.
    #[arg(long, value_name = "K", default_value_t = 20, requires = "append")]
    pub keep: u32,
    /// Load stages for the runs (as `run --stages`), e.g. `to 64=30s:64,hold 64=2m:64`.
    #[arg(long, value_name = "STAGES", conflicts_with_all = ["concurrency", "duration", "mock"])]
    pub stages: Option<String>,
    /// With `--stages`: `closed` (users) or `open` (workflow starts per second).
    #[arg(long, value_name = "MODEL", requires = "stages")]
    pub model: Option<String>,
    /// The stage the baseline holds (and the gate will judge), by name;
    /// overrides the scenario's `[gate] stage`.
    #[arg(long, value_name = "NAME")]
    pub gate_stage: Option<String>,
    /// Take runs that were aborted, partial, saturated or mostly failing
    /// (refused by default: a baseline of bad runs passes everything).
    #[arg(long)]
    pub accept_bad_runs: bool,
    /// Existing result files to combine instead of running.
    #[arg(value_name = "RESULT", conflicts_with_all = ["scenario", "target", "mock"])]
    pub from: Vec<PathBuf>,
    /// Make the baseline from a history (`flora-gate history`): the nights
    /// since the newest change point of a gated metric, so the baseline
    /// holds one level and does not absorb a creep.
    #[arg(
        long,
        value_name = "HISTORY",
        conflicts_with_all = ["scenario", "target", "mock", "from", "append", "stages"]
    )]
    pub since_change_point: Option<PathBuf>,
    /// With `--since-change-point`: the setup to take (scenario name or
    /// sha256 prefix; default: the newest record's).
    #[arg(long, value_name = "NAME|SHA", requires = "since_change_point")]
    pub setup: Option<String>,
}

/// `flora-gate run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Scenario TOML file, or a bundled scenario name (`novel`, `openai-chat`).
    #[arg(long, short = 's', value_name = "FILE|NAME")]
    pub scenario: Option<String>,
    /// Base URL of the target (overrides the scenario's `base_url`).
    #[arg(long, short = 't', value_name = "URL")]
    pub target: Option<String>,
    /// Tokens CSV (`user_id,access_token`, or one token per line); one token per virtual user, round-robin.
    #[arg(long, value_name = "CSV", env = "FLORA_GATE_TOKENS_FILE")]
    pub tokens: Option<PathBuf>,
    /// Virtual users (overrides `load.concurrency`).
    #[arg(long, short = 'c', value_name = "N")]
    pub concurrency: Option<u32>,
    /// How long to send requests, e.g. `30s`, `2m` (overrides `load.duration`).
    #[arg(long, short = 'd', value_name = "DURATION")]
    pub duration: Option<String>,
    /// Stop after this many requests instead of (or before) the duration.
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Requests started in this first period are not measured, e.g. `5s`.
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<String>,
    /// Seed for sampling the test data (overrides `load.seed`).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Set a template variable, e.g. `--var model=qwen --var prompt_chars=2000`.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Sweep a template variable: each user's iterations take the values in
    /// turn, e.g. `--sweep prompt_chars=1000,2000,4000,8000,16000` (with
    /// `-c 1`, the prefill curve).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub sweep: Option<String>,
    /// Scale the scenario's own times by this factor: every stage duration
    /// and hold, the run length, warm-up, window (at least 1 s) and think
    /// times (`0.05` runs the bundled 10.5-minute `ramp` in about 32 s).
    /// Values given by flags (`--duration`, `--stages`, `--warmup`) are
    /// taken as given.
    #[arg(long, value_name = "FACTOR")]
    pub time_scale: Option<f64>,
    /// Characters per token for prompt lengths in tokens, instead of the
    /// short calibration against the server's `usage.prompt_tokens` made
    /// before the measured part (needed when the server reports no usage).
    #[arg(long, value_name = "N")]
    pub chars_per_token: Option<f64>,
    /// Where to write the result JSON.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "result.json")]
    pub out: PathBuf,
    /// Also write every request as one JSON line.
    #[arg(long, value_name = "FILE")]
    pub requests_out: Option<PathBuf>,
    /// Longest wait for in-flight requests after sending stops, e.g. `60s`.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_DRAIN)]
    pub drain: String,
    /// No progress line on stderr (it is only drawn on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// Start every user in the same instant (a burst) instead of spread
    /// evenly over the first second (or the warm-up, when shorter).
    #[arg(long)]
    pub start_together: bool,
    /// Trust this PEM certificate (a self-signed or private CA) for HTTPS targets.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Duet mode: also drive this reference deployment, in randomly
    /// interleaved time slots; `--out` then gets a duet result for `compare`.
    #[arg(long, value_name = "URL")]
    pub baseline_target: Option<String>,
    /// Load stages, overriding `[[load.stages]]`: `DURATION:TARGET,...` with
    /// an optional `NAME=` before each, e.g. `30s:10,hold=2m:200,0s:2000`.
    /// The target moves linearly from the previous one; `0s` is a jump.
    #[arg(long, value_name = "STAGES", conflicts_with_all = ["concurrency", "duration", "requests"])]
    pub stages: Option<String>,
    /// With `--stages`: `closed` (targets are users) or `open` (workflow starts per second).
    #[arg(long, value_name = "MODEL", requires = "stages")]
    pub model: Option<String>,
    /// Length of the result's time-series windows, e.g. `10s` (overrides `load.window`).
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Serve the generator's live figures in the Prometheus text format at
    /// `ADDR:PORT/metrics` while the run lasts (for Grafana during a soak).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// Keep `--metrics-listen` serving the final figures this long after
    /// the run, once its files are written (two scrapes at a 15 s interval;
    /// Ctrl-C ends it), so a short run or a shard leaves its totals behind.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        requires = "metrics_listen"
    )]
    pub metrics_linger: String,
    /// Send the live figures to this Prometheus remote-write URL
    /// (`http://host:9090/api/v1/write`; Mimir, Thanos, VictoriaMetrics)
    /// every `--metrics-push-interval` and once at the end: a run that ends
    /// before any scrape still leaves its figures.
    #[arg(long, value_name = "URL")]
    pub metrics_push: Option<String>,
    /// How often to push during the run.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        requires = "metrics_push"
    )]
    pub metrics_push_interval: String,
    /// Scrape this Prometheus endpoint of the server during the run (repeat
    /// for several): the presets' families (vLLM, SGLang, TGI, Triton, DCGM,
    /// node_exporter, process) and any `--server-metric`, per window in the result.
    #[arg(long = "server-metrics", value_name = "URL")]
    pub server_metrics: Vec<String>,
    /// How often to scrape [default: `[server_metrics] interval`, or 1s].
    #[arg(long, value_name = "DURATION")]
    pub server_metrics_interval: Option<String>,
    /// Also keep this metric family (a database pool's gauge, say); repeat for several.
    #[arg(long = "server-metric", value_name = "NAME")]
    pub server_metric: Vec<String>,
    /// A distributed run's plan (from `flora-gate plan`): the load, seed and
    /// start time come from it.
    #[arg(long, value_name = "FILE", requires = "shard")]
    pub plan: Option<PathBuf>,
    /// Which shard of the plan this process runs, `i/N` (0-based), e.g. `0/3`.
    #[arg(long, value_name = "I/N", requires = "plan")]
    pub shard: Option<String>,
    /// Replay a trace open-loop instead of users or stages: flora-gate's
    /// JSONL (`t_ms`, `session`, `book`, `step`, lengths, `prefix`) or
    /// Mooncake's (`timestamp`, `input_length`, `output_length`,
    /// `hash_ids`); each session's requests in order, at their recorded
    /// times. A request log from `--requests-out` is converted first with
    /// `flora-gate trace convert`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["stages", "model", "requests", "concurrency", "baseline_target", "plan"])]
    pub replay: Option<PathBuf>,
    /// With `--replay`: this many times faster than recorded (`10` sends a
    /// 10-minute trace in 1 minute).
    #[arg(long, value_name = "X", default_value_t = 1.0, requires = "replay")]
    pub speed: f64,
    /// With `--replay`: only the requests in this slice of the trace's
    /// time, `FROM..TO`, e.g. `60s..180s` or `..5m`.
    #[arg(long, value_name = "FROM..TO", requires = "replay")]
    pub replay_window: Option<String>,
    /// With `--replay`: the step of lines that name none (Mooncake's) —
    /// by default the scenario's only step, or its first streamed one.
    #[arg(long, value_name = "STEP", requires = "replay")]
    pub replay_step: Option<String>,
}

/// `flora-gate mock`.
#[derive(Debug, Args, Clone)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, short = 'p', default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub behaviour: MockBehaviour,
    /// Accept only the tokens in this CSV (others get 401).
    #[arg(long, value_name = "CSV")]
    pub tokens: Option<PathBuf>,
}

/// How the mock behaves (shared by `mock` and `demo`).
#[derive(Debug, Args, Clone)]
pub struct MockBehaviour {
    /// Time to first token, ms.
    #[arg(long, default_value_t = 80.0, value_name = "MS")]
    pub ttft_ms: f64,
    /// Inter-token latency, ms.
    #[arg(long, default_value_t = 8.0, value_name = "MS")]
    pub itl_ms: f64,
    /// Content tokens per streamed answer.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub output_tokens: u32,
    /// Uniform jitter added to every delay, ± ms.
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    pub jitter_ms: f64,
    /// Factor on both latencies (1.3 = 30% slower).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub slowdown: f64,
    /// Requests served at once; more wait in a queue (0 = unlimited).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_concurrency: usize,
    /// Injected faults per request, e.g. `500=0.02,429=0.01,hang=0.005,disconnect=0.01,malformed=0.01`.
    #[arg(long, value_name = "KIND=RATE,...", default_value = "")]
    pub error_rate: String,
    /// Periodic error bursts, e.g. `503:500ms/5s` (every 5 s, 500 ms of 503s).
    #[arg(long, value_name = "STATUS:LEN/PERIOD")]
    pub burst: Option<String>,
    /// Seconds sent in `Retry-After` with injected 429s.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub retry_after: u64,
    /// Seed of the jitter and fault draws.
    #[arg(long = "mock-seed", default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// End streams without `data: [DONE]`, as some servers do.
    #[arg(long)]
    pub no_done: bool,
    /// Send no usage chunk on the OpenAI API, as servers that report none.
    #[arg(long)]
    pub no_usage: bool,
    /// Batching: each other stream being generated adds this to every
    /// inter-token gap (TPOT grows with load, as on a real accelerator).
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    pub itl_per_stream_ms: f64,
    /// Compute-bound prefill: each other stream being generated adds this
    /// to the time to first token (with `--itl-per-stream-ms`, TTFT and
    /// TPOT grow together with load).
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    pub ttft_per_stream_ms: f64,
    /// Per-token rate limit: above this many requests per second per bearer
    /// token, answer 429 with `Retry-After`.
    #[arg(long, value_name = "R")]
    pub rate_limit: Option<f64>,
    /// A database pool of this many connections behind the JSON steps
    /// (creating a book): each holds one for `--db-ms`, and waits when none
    /// is free — a bottleneck that is not the model.
    #[arg(long, value_name = "N")]
    pub db_pool: Option<usize>,
    /// How long a JSON step holds a pool connection.
    #[arg(long, default_value_t = 10.0, value_name = "MS")]
    pub db_ms: f64,
    /// Prefill: each character of a generation request's body adds this many
    /// microseconds to its TTFT (long prompts answer later).
    #[arg(long, default_value_t = 0.0, value_name = "US")]
    pub prefill_us_per_char: f64,
    /// A prefix cache: the leading 64-character blocks of a prompt seen
    /// before skip their prefill (with no `--prefill-us-per-char`, the
    /// prefill is 50 µs a character); hits and queries in `/metrics` as
    /// vLLM names them.
    #[arg(long)]
    pub prefix_cache: bool,
    /// KV-cache room for this many streams: while more are generated, each
    /// is preempted once mid-stream and stalls `--preempt-ms` (its cache
    /// recomputed); `vllm:gpu_cache_usage_perc` is the share in use.
    #[arg(long, value_name = "N")]
    pub kv_slots: Option<usize>,
    /// How long a preempted stream stalls.
    #[arg(long, default_value_t = 200.0, value_name = "MS")]
    pub preempt_ms: f64,
    /// A fault: keep generating a stream's remaining tokens after its
    /// client disconnected (requests running and generated tokens in
    /// `/metrics` show it).
    #[arg(long)]
    pub ignore_disconnect: bool,
    /// Number content events (`id: 1`, `id: 2`, …); a stream asked again
    /// with `Last-Event-ID: k` goes on from token k + 1.
    #[arg(long)]
    pub event_ids: bool,
    /// A fault (with `--event-ids`): a resumed stream replays from the start.
    #[arg(long, requires = "event_ids")]
    pub resume_replays: bool,
    /// Slow down steadily, e.g. `2%/min` (latencies grow by 2% of their
    /// base per minute since the start).
    #[arg(long, value_name = "PCT/UNIT")]
    pub drift: Option<String>,
}

/// `flora-gate demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to run.
    #[arg(long, short = 'd', default_value = "15s")]
    pub duration: String,
    /// Virtual users.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub concurrency: u32,
    /// Make the mock slower by this factor (1.3 = 30% slower).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub slowdown: f64,
    /// Also write the result JSON here.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the HTML report (one file with charts, opens offline) here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}
