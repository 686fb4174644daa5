//! Command-line interface: one file per subcommand, each with `execute()`.

mod bench;
mod bench_ai;
mod bench_network;
mod common;
mod control;
mod demo;
mod host;
mod init;
mod ledger;
mod new;
mod peers;
mod roles;
mod run;
mod sim;
mod status;
mod submit;
mod trust;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// biop2p: a peer-to-peer WebAssembly compute marketplace.
#[derive(Parser)]
#[command(name = "biop2p", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local swarm of hosts and real workloads on it, with replicas.
    Demo(demo::Args),
    /// Run one task locally in a fresh sandbox.
    Run(run::Args),
    /// Measure the sandbox (and more) on this machine.
    Bench(bench::Args),
    /// Run a host daemon: lend this machine's CPU.
    Host(host::Args),
    /// Write a commented default config file.
    Init(init::InitArgs),
    /// Print this host's peer id.
    Id(init::IdArgs),
    /// Submit a job to a host and get verified output.
    Submit(submit::Args),
    /// Create a workload crate from the guest SDK.
    New(new::Args),
    /// Whom this submitter trusts, and the evidence why.
    Trust(trust::Args),
    /// Balances per counterparty and the settled entries with evidence.
    Ledger(ledger::Args),
    /// List known hosts with their latest adverts.
    Peers(peers::Args),
    /// Show a submitted job's status (queued, running, done, failed).
    Status(status::Args),
    /// Get a submitted job's verified output, waiting for it if needed.
    Result(status::Args),
    /// Pause the running host: no new work; running tasks finish.
    Pause(control::Target),
    /// Resume a paused host.
    Resume(control::Target),
    /// Print or change the running host's resource policy.
    Policy(control::PolicyArgs),
    /// Simulate a swarm driving the real roles (and security) code.
    Sim(sim::Args),
    /// List the biological roles and node types.
    Roles(roles::Args),
}

/// Parses the command line, runs the subcommand, and turns its error into a
/// message on stderr (the whole chain, `{:#}`) and a non-zero exit code.
pub fn main() -> ExitCode {
    init_tracing();
    // The matches are kept: `submit --spec` asks which flags were given.
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Demo(a) => demo::execute(a),
        Command::Run(a) => run::execute(a),
        Command::Bench(a) => bench::execute(a),
        Command::Host(a) => host::execute(a),
        Command::Init(a) => init::init(a),
        Command::Id(a) => init::id(a),
        Command::Submit(a) => submit::execute(a, matches.subcommand_matches("submit")),
        Command::New(a) => new::execute(a),
        Command::Trust(a) => trust::execute(a),
        Command::Ledger(a) => ledger::execute(a),
        Command::Peers(a) => peers::execute(a),
        Command::Status(a) => status::status(a),
        Command::Result(a) => status::result(a),
        Command::Pause(a) => control::pause(a, true),
        Command::Resume(a) => control::pause(a, false),
        Command::Policy(a) => control::policy(a),
        Command::Sim(a) => sim::execute(a),
        Command::Roles(a) => roles::execute(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BIOP2P_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,libp2p_kad=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
