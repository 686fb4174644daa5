//! `biop2p sim`: the deterministic simulator over the real `roles` code, and
//! `biop2p sim byzantine` over the real `security` code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use roles::sim::{self, Scenario};
use security::byzantine::{self, ByzantineConfig, CellReport, Policy, Strategy};

/// Simulate a swarm (seeded, virtual time).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    byzantine: Option<Sub>,
    /// Override the scenario's host count.
    #[arg(long)]
    nodes: Option<usize>,
    /// Override the scenario's job count.
    #[arg(long)]
    jobs: Option<u64>,
    /// Seed (the same seed reproduces a run exactly).
    #[arg(long)]
    seed: Option<u64>,
    /// A built-in scenario (repeatable); default: all of them.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(sim::builtin_names()))]
    scenario: Vec<String>,
    /// A scenario file you wrote (TOML, see `biop2p sim --print-scenario steady`).
    #[arg(long)]
    scenario_file: Vec<PathBuf>,
    /// Print a built-in scenario's documented TOML and exit.
    #[arg(long, value_name = "NAME")]
    print_scenario: Option<String>,
    /// One JSON line per scenario.
    #[arg(long)]
    json: bool,
    /// Write an SVG plot of each role's effect against its baseline.
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Honest hosts against attackers: biop2p's security beside a fixed
    /// majority of 3 and BOINC's adaptive replication, same world and seed.
    Byzantine(ByzArgs),
}

#[derive(clap::Args)]
struct ByzArgs {
    /// Attacker fraction (repeatable); default 0, 0.10, 0.25, 0.33.
    #[arg(long)]
    fraction: Vec<f64>,
    /// Attacker strategy (repeatable); default all.
    #[arg(long, value_parser = parse_strategy)]
    strategy: Vec<Strategy>,
    /// Policy (repeatable): biop2p, majority3, boinc-adaptive; default all.
    #[arg(long, value_parser = parse_policy)]
    policy: Vec<Policy>,
    /// Tasks per cell, over all submitters (default 200000).
    #[arg(long)]
    tasks: Option<usize>,
    /// Hosts per cell (default 1000).
    #[arg(long)]
    hosts: Option<usize>,
    /// Submitters, each with its own reputation (default 20).
    #[arg(long)]
    submitters: Option<usize>,
    /// Network prefixes the attackers hold (default 32; set it to the
    /// attacker count to take the prefix signal away).
    #[arg(long)]
    attacker_prefixes: Option<u32>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Each defence switched off beside all on, against the attack it
    /// targets (at the first --fraction, default 0.25).
    #[arg(long)]
    ablation: bool,
    /// One JSON line per cell (per ablation row with --ablation).
    #[arg(long)]
    json: bool,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse::<Strategy>().map_err(|e| e.to_string())
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse::<Policy>().map_err(|e| e.to_string())
}

pub fn execute(a: Args) -> Result<ExitCode> {
    if let Some(Sub::Byzantine(b)) = a.byzantine {
        return byzantine(b);
    }
    if let Some(name) = a.print_scenario {
        let text = Scenario::builtin_toml(&name).with_context(|| {
            format!(
                "no built-in scenario {name:?}; try one of {:?}",
                sim::builtin_names()
            )
        })?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut scenarios = Vec::new();
    for name in &a.scenario {
        scenarios.push(Scenario::builtin(name)?);
    }
    for path in &a.scenario_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario file {}", path.display()))?;
        scenarios.push(
            Scenario::from_toml_str(&text)
                .with_context(|| format!("invalid scenario file {}", path.display()))?,
        );
    }
    if scenarios.is_empty() {
        for name in sim::builtin_names() {
            scenarios.push(Scenario::builtin(name)?);
        }
    }
    let mut reports = Vec::new();
    for mut sc in scenarios {
        if let Some(n) = a.nodes {
            sc = sc.with_nodes(n);
        }
        if let Some(j) = a.jobs {
            sc = sc.with_jobs(j);
        }
        if let Some(s) = a.seed {
            sc = sc.with_seed(s);
        }
        sc.validate()?;
        for r in sim::run(&sc) {
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print_report(&r);
            }
            reports.push(r);
        }
    }
    if let Some(path) = a.plot {
        std::fs::write(&path, sim::plot_svg(&reports))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !a.json {
            println!("plot written to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per run (ours, the fair baselines, ours minus each mechanism),
/// one column per figure.
fn print_report(r: &sim::ScenarioReport) {
    let v = serde_json::to_value(r).unwrap_or_default();
    let f = |o: &serde_json::Value, k: &str| match o.get(k) {
        Some(serde_json::Value::Number(n)) => format!("{:.3}", n.as_f64().unwrap_or(f64::NAN)),
        _ => "-".into(),
    };
    let cols = [
        ("mean_completion_ms", "mean ms"),
        ("p50_completion_ms", "p50 ms"),
        ("p95_completion_ms", "p95 ms"),
        ("p99_completion_ms", "p99 ms"),
        ("deadline_met_fraction", "met"),
        ("utilisation", "util"),
        ("recovery_p95_ms", "recov p95"),
        ("tasks_to_steady_state", "young tasks"),
        ("msgs_per_node_per_sec", "msg/node/s"),
        ("msgs_per_placement", "msg/place"),
    ];
    println!("scenario {} ({} nodes)", r.scenario, r.figures.nodes);
    let mut head = format!("  {:<20}", "row");
    for (_, c) in cols {
        head.push_str(&format!(" {c:>11}"));
    }
    println!("{head}");
    let mut rows = vec![("ours".to_string(), v.clone())];
    for b in ["random", "least_loaded", "power_of_two"] {
        rows.push((b.to_string(), v["baselines"][b].clone()));
    }
    if let Some(a) = v["ablations"].as_object() {
        for (k, x) in a {
            rows.push((format!("ours - {k}"), x.clone()));
        }
    }
    for (name, o) in rows {
        let mut line = format!("  {name:<20}");
        for (k, _) in cols {
            line.push_str(&format!(" {:>11}", f(&o, k)));
        }
        println!("{line}");
    }
}

fn byzantine(b: ByzArgs) -> Result<ExitCode> {
    let mut cfg = ByzantineConfig::default();
    if let Some(t) = b.tasks {
        cfg.tasks = t;
    }
    if let Some(h) = b.hosts {
        cfg.hosts = h;
    }
    if let Some(m) = b.submitters {
        cfg.submitters = m;
    }
    if let Some(p) = b.attacker_prefixes {
        cfg.attacker_prefixes = p;
    }
    if let Some(s) = b.seed {
        cfg.seed = s;
    }
    if b.ablation {
        let f = b.fraction.first().copied().unwrap_or(0.25);
        for r in byzantine::run_ablation(&cfg, f)? {
            if b.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("defence {} (against {})", r.defence, r.strategy.name());
                print_header();
                print_cell(&r.on, "on");
                print_cell(&r.off, "off");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cells = byzantine::run_matrix(&cfg, &b.fraction, &b.strategy, &b.policy)?;
    if !b.json {
        print_header();
    }
    for c in &cells {
        if b.json {
            println!("{}", serde_json::to_string(c)?);
        } else {
            print_cell(c, "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_header() {
    println!("{}", CellReport::table_header());
}

fn print_cell(c: &CellReport, tag: &str) {
    println!("{} {tag}", c.table_row());
}
