//! The `seesaw` binary: argument parsing, signal disposition and error
//! reporting only; every command is carried out by the library
//! (`seesaw::cli::run`).

use clap::Parser;

fn main() {
    let cli = seesaw::cli::Cli::parse();
    let daemon = matches!(cli.command, seesaw::cli::Command::Daemon);
    if !daemon {
        restore_sigpipe();
    }
    // Other commands print their own result; the daemon's events are its output.
    seesaw::events::init_logging(daemon);
    if let Err(err) = seesaw::cli::run(cli) {
        // One line: each cause of the chain once.
        eprintln!("seesaw: {}", seesaw::cli::error_line(&err));
        std::process::exit(seesaw::cli::exit_status(&err));
    }
}

/// Lets a command line tool die quietly of SIGPIPE when its reader goes
/// away (`seesaw status | head -1`), as other Unix tools do. The Rust
/// runtime ignores SIGPIPE, which turns every later print into a panic.
/// Not for `seesaw daemon`: a closed stdout must never kill the service.
fn restore_sigpipe() {
    // SAFETY: called before any thread is started; SIG_DFL is a valid
    // disposition for SIGPIPE and no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
