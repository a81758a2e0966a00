//! The `samrt` command line. The library does the work; this file parses arguments, adds
//! context to errors and writes outputs.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic is a bug, but the user still gets one clear line and a non-101 exit code.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("samrt: internal error: {info} (please report this)");
    }));
    match std::panic::catch_unwind(cli::run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("samrt: error: {e}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(70),
    }
}
