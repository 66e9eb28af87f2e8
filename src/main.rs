use std::process::ExitCode;

use clap::Parser;

mod cli;
mod gui;

fn main() -> ExitCode {
    // Die quietly like other Unix tools when stdout is closed early (`nash-swarm info ... | head`).
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
