use std::process::ExitCode;

use clap::Parser;
use flora_gate::{cli::Cli, Outcome, UserError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match runtime_builder().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(flora_gate::run(cli)) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Regression) => ExitCode::from(1),
        Err(e) => {
            // Error texts can quote files and servers: printed through the
            // guard, so inside Actions they can never become commands.
            let mut text = format!("error: {e}");
            for cause in e.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            if let Some(hint) = e
                .chain()
                .find_map(|c| c.downcast_ref::<UserError>())
                .and_then(UserError::hint)
            {
                text.push_str(&format!("\nhint: {hint}"));
            }
            flora_gate::output::err_line(&text);
            ExitCode::from(2)
        }
    }
}

/// On one core (a runner pinned or limited to one CPU, a pod with a CPU
/// limit of 1) the single-threaded scheduler: a wake-up then costs no
/// cross-thread queue, atomic hand-off or idle-worker bookkeeping, which on
/// a load of thousands of small events per second is a measurable share of
/// the generator's CPU. With more cores, or when `TOKIO_WORKER_THREADS`
/// asks for workers, the work-stealing scheduler with that many.
fn runtime_builder() -> tokio::runtime::Builder {
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    if one_core && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
}
