use std::process::ExitCode;

use clap::Parser;
use flora_gate::{cli::Cli, Outcome, UserError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
