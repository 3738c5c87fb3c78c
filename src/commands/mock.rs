//! `flora-gate mock`: the mock server until a signal.

use super::{signal_tokens, MockSettings, Outcome};
use crate::error::UserError;
use crate::{mock, output};

pub(super) async fn serve(args: &MockSettings) -> anyhow::Result<Outcome> {
    let handle = mock::start(args.config.clone(), args.addr)
        .await
        .map_err(|e| UserError::Environment {
            message: format!("cannot listen on {}: {e}", args.addr),
            hint: Some("choose another `--port`, or 0 for a free one".into()),
        })?;
    eprintln!(
        "mock Dreaminkflora/OpenAI server listening on {} (Ctrl-C to stop)",
        handle.url()
    );
    // The address on stdout, for scripts that start the mock on port 0.
    output::out(&format!("{}\n", handle.url()));
    let (signals, _) = signal_tokens();
    signals.cancelled().await;
    handle.stop().await;
    Ok(Outcome::Success)
}
