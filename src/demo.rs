//! `flora-gate demo`: the whole loop with nothing set up.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::DemoArgs;
use crate::engine::{self, Plan};
use crate::error::UserError;
use crate::mock::{self, MockConfig};
use crate::scenario::{parse_duration, Scenario};
use crate::{render, result, tokens, Outcome};

/// Start the mock in this process, run the novel workflow, print the summary.
pub async fn demo(args: &DemoArgs) -> anyhow::Result<Outcome> {
    let duration = parse_duration(&args.duration).map_err(|m| UserError::flag("--duration", m))?;
    if duration < Duration::from_secs(2) {
        return Err(UserError::flag("--duration", "the demo needs at least 2s").into());
    }
    if args.concurrency == 0 || args.concurrency > 256 {
        return Err(UserError::flag("--concurrency", "the demo takes 1 to 256 users").into());
    }
    if !(args.slowdown.is_finite() && args.slowdown > 0.0) {
        return Err(UserError::flag("--slowdown", "must be a positive factor, like 1.3").into());
    }
    let users = tokens::generated(args.concurrency as usize);
    let cfg = MockConfig {
        slowdown: args.slowdown,
        jitter: Duration::from_millis(2),
        tokens: Some(users.iter().map(|u| u.token.expose().to_string()).collect()),
        ..MockConfig::default()
    };
    let server = mock::start(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(|e| UserError::Environment {
            message: format!("cannot start the mock server: {e}"),
            hint: None,
        })?;
    let scenario = Scenario::load("novel", &[])?;
    let mut load = scenario.load.clone();
    load.concurrency = args.concurrency;
    load.duration = Some(duration);
    load.warmup = (duration / 8).min(Duration::from_secs(2));
    let plan = Plan {
        scenario: Arc::new(scenario),
        target: server.url(),
        tokens: Arc::new(users),
        load,
        progress: engine::progress_wanted(),
        drain: Duration::from_secs(10),
        notes: vec!["the mock server runs in this process".into()],
    };
    eprintln!(
        "demo: mock server on {}; running the novel workflow with {} users for {}",
        server.url(),
        plan.load.concurrency,
        humantime::format_duration(duration)
    );
    let (signals, kill) = crate::signal_tokens();
    let out = engine::run(plan.clone(), signals, kill).await;
    server.stop().await;
    let out = out?;
    let meta = result::RunMeta {
        scenario: &plan.scenario,
        target: &plan.target,
        load: &plan.load,
    };
    let res = result::build(&meta, &out);
    if let Some(p) = &args.out {
        res.write(p)?;
        eprintln!("result written to {}", p.display());
    }
    print!("{}", render::text::summary(&res));
    Ok(Outcome::Success)
}
