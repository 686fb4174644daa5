//! The `biop2p` command: host daemon, submitter and tools.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
