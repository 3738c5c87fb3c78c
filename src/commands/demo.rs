//! `flora-gate demo`: the whole loop with nothing set up.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::{DemoSettings, Outcome};
use crate::engine::{self, Plan};
use crate::error::UserError;
use crate::gate;
use crate::mock::{self, MockConfig};
use crate::render::report;
use crate::result::baseline::Baseline;
use crate::result::{self, RunResult};
use crate::scenario::Scenario;
use crate::tokens;

/// The committed baseline the demo gates against, made with
/// `flora-gate baseline refresh --mock --runs 5 --out baselines/novel-mock.json`.
pub const BASELINE: &str = include_str!("../../baselines/novel-mock.json");
/// Users in the demo (and in the committed baseline).
pub const CONCURRENCY: u32 = 4;
/// Demo run length.
pub const DURATION: Duration = Duration::from_secs(15);

/// The mock's settings in the demo.
pub fn mock_config(slowdown: f64, users: &[tokens::UserToken]) -> MockConfig {
    MockConfig {
        slowdown,
        jitter: Duration::from_millis(2),
        tokens: Some(users.iter().map(|u| u.token.expose().to_string()).collect()),
        ..MockConfig::default()
    }
}

/// Start the embedded mock and run the bundled novel workflow against it.
pub async fn run_against_mock(
    duration: Duration,
    concurrency: u32,
    slowdown: f64,
    warmup: Option<Duration>,
) -> Result<RunResult, UserError> {
    let users = tokens::generated(concurrency as usize);
    let server = mock::start(
        mock_config(slowdown, &users),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    )
    .await
    .map_err(|e| UserError::Environment {
        message: format!("cannot start the mock server: {e}"),
        hint: None,
    })?;
    let scenario = Scenario::load("novel", &[])?;
    let mut load = scenario.load.clone();
    load.concurrency = concurrency;
    load.duration = Some(duration);
    load.requests = None;
    load.warmup = warmup.unwrap_or_else(|| (duration / 8).min(Duration::from_secs(2)));
    // One-second windows: the HTML report's curves have points to draw.
    load.window = Duration::from_secs(1);
    let plan = Plan {
        scenario: Arc::new(scenario),
        target: server.target(),
        reference: None,
        tokens: Arc::new(users),
        load,
        progress: engine::progress_wanted(),
        drain: Duration::from_secs(10),
        notes: vec!["the mock server runs in this process".into()],
        ca_cert: None,
        metrics_listen: None,
        metrics_linger: Duration::ZERO,
        metrics_push: None,
        client: None,
        start_at: None,
        // The mock's own /metrics, as a real server's would be scraped.
        server_metrics: vec![engine::scrape::ScrapeTarget {
            url: format!("{}/metrics", server.url()),
            interval: Duration::from_secs(1),
            families: engine::scrape::families(&[]),
        }],
    };
    eprintln!(
        "mock server on {}; running the novel workflow with {} users for {}",
        server.url(),
        plan.load.concurrency,
        humantime::format_duration(duration)
    );
    let (signals, kill) = super::signal_tokens();
    let measured = result::measure(&plan, signals, kill).await;
    server.stop().await;
    let res = measured?.current.shown().clone();
    if res.state() == result::RunState::Partial {
        eprintln!(
            "note: the run is partial: {}",
            res.status_reason.as_deref().unwrap_or("stopped")
        );
    }
    Ok(res)
}

/// Start the mock in this process, run the novel workflow, gate it against
/// the committed baseline and print the Markdown report.
pub(super) async fn demo(args: &DemoSettings) -> anyhow::Result<Outcome> {
    let duration = args.duration;
    let res = run_against_mock(duration, args.concurrency, args.slowdown, None).await?;
    if let Some(p) = &args.out {
        res.write(p)?;
        eprintln!("result written to {}", p.display());
    }
    let baseline = Baseline::parse(
        BASELINE,
        std::path::Path::new("<embedded baselines/novel-mock.json>"),
    )?;
    let mut notes = gate::check_comparable(&baseline, &res, true)?;
    if args.concurrency != CONCURRENCY || duration != DURATION {
        notes.push(format!(
            "the baseline was made with {CONCURRENCY} users for {}; this run differs, so the comparison is indicative",
            humantime::format_duration(DURATION)
        ));
    }
    let mut policy = res.gate.clone();
    if args.concurrency != CONCURRENCY || duration != DURATION {
        // Rates depend on the run's length and load; latencies do not.
        policy
            .metrics
            .retain(|m| crate::policy::metrics::metric_def(m).is_some_and(|d| d.higher_is_worse));
        notes.push("throughput is not gated across different run lengths or user counts".into());
    }
    let verdict = gate::compare_baseline(&baseline, &res, &policy, notes);
    let templates = report::Templates::load(None)?;
    let ctx = report::context(&res, Some(&verdict), None);
    crate::output::out(&report::render(report::Format::Markdown, &templates, &ctx)?);
    if let Some(p) = &args.html {
        let against = crate::render::html::charts::Against {
            baseline: Some(&baseline),
            reference: None,
        };
        let page = crate::render::html::run_page(&res, &ctx, &against, false);
        crate::error::write_atomic(p, report::html(&templates, &page)?.as_bytes())?;
        eprintln!("HTML report written to {}", p.display());
    }
    Ok(Outcome::of(&verdict))
}
