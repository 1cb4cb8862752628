//! outpost: the appliance's command line. Parses arguments and runs
//! [`outpost_control::cli::run`]; errors are one line on stderr and exit status 1.

use clap::Parser;
use outpost_control::cli::{run, Cli};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(out) => {
            // A closed stdout (e.g. `| head`) is not worth a panic.
            let _ = std::io::stdout().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::FAILURE
        }
    }
}
