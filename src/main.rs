use std::process::ExitCode;

use clap::Parser;

mod cli;
mod gui;

/// The error and its causes, each once (an I/O error's text is also its source's), each cut to a readable
/// length so that an echoed input never floods the terminal.
fn one_message(e: &anyhow::Error) -> String {
    const LONGEST: usize = 400;
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let mut text = cause.to_string();
        if let Some((cut, _)) = text.char_indices().nth(LONGEST) {
            text.truncate(cut);
            text.push_str(" [...]");
        }
        if !parts.iter().any(|p| p.contains(text.trim())) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn main() -> ExitCode {
    // Die quietly like other Unix tools when stdout is closed early (`nash-swarm info ... | head`).
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // glibc gives every thread that allocates its own arena and keeps freed memory there, where other threads'
    // allocations cannot reuse it: with a layer's weights decoded and dropped per window group, eval of the demo
    // model peaked at RssAnon 92-97 MB with an arena per thread, 81-88 MiB with two and 62-64 MiB with one, at
    // the same speed (the threads' large buffers are few, so they rarely wait for the one lock).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a malloc tuning call before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let result = cli::run(cli::Cli::parse()).and_then(|window| window.map_or(Ok(()), |w| gui::run(w.model, w.text)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_message(&e));
            ExitCode::FAILURE
        }
    }
}
