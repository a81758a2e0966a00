//! The `samrt` command line. The library does the work; this file parses arguments, adds
//! context to errors and writes outputs.

mod cli;

use std::process::ExitCode;

/// Restores the default SIGPIPE action, which Rust's runtime sets to "ignore": then
/// `samrt info FILE | head` ends quietly when `head` closes the pipe, as other Unix tools
/// do, instead of `println!` panicking on EPIPE.
#[cfg(unix)]
fn default_sigpipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: installs the default disposition for one signal; no handler code runs.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    default_sigpipe();
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
