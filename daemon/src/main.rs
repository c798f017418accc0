//! The `seesaw` binary: argument parsing and error reporting only; every
//! command is carried out by the library (`seesaw::cli::run`).

use clap::Parser;

fn main() {
    let cli = seesaw::cli::Cli::parse();
    seesaw::events::init_logging();
    if let Err(err) = seesaw::cli::run(cli) {
        // One line: the whole cause chain.
        eprintln!("seesaw: {err:#}");
        std::process::exit(seesaw::cli::exit_status(&err));
    }
}
