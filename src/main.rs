use std::process::ExitCode;

use clap::Parser;

mod cli;

// Quantization allocates and frees many large buffers; glibc returns them to the kernel each time and pays for
// fresh zeroed pages on the next allocation. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
