//! The Byzantine benchmark matrix: honest hosts vs attackers, biop2p vs a
//! fixed majority of 3.
//!
//! Run the full default matrix (5 fractions x 7 strategies x 2 policies,
//! 1000 hosts, 200,000 tasks each):
//!
//! ```text
//! cargo run --release -p security --example byzantine
//! cargo run --release -p security --example byzantine -- --fraction 0.25 --strategy stealth-colluding --json
//! cargo run --release -p security --example byzantine -- --tasks 20000 --details
//! ```
//!
//! Flags: `--fraction F` and `--strategy S` (repeatable), `--tasks N`,
//! `--seed N`, `--json` (one JSON line per cell, as `biop2p sim byzantine`
//! prints), `--details` (extra figures: replicas once reputations formed,
//! over-billing detection, tasks given up).

use security::byzantine::{self, ByzantineConfig, Strategy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = ByzantineConfig::default();
    let (mut fractions, mut strategies) = (Vec::new(), Vec::new());
    let (mut json, mut details) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--fraction" => fractions.push(value()?.parse::<f64>()?),
            "--strategy" => strategies.push(value()?.parse::<Strategy>()?),
            "--tasks" => cfg.tasks = value()?.parse()?,
            "--hosts" => cfg.hosts = value()?.parse()?,
            "--seed" => cfg.seed = value()?.parse()?,
            "--json" => json = true,
            "--details" => details = true,
            other => return Err(format!("unknown flag {other:?}").into()),
        }
    }
    let started = std::time::Instant::now();
    let cells = byzantine::run_matrix(&cfg, &fractions, &strategies, &[])?;
    if !json {
        println!(
            "{:<10} {:>5} {:<18} {:>9} {:>8} {:>8} {:>6} {:>6} {:>7}",
            "policy", "frac", "strategy", "wrong%", "repl", "repl*", "honQ", "attQ", "t2q"
        );
    }
    for c in &cells {
        if json {
            println!("{}", serde_json::to_string(c)?);
            if details {
                println!("{}", serde_json::to_string(&c.details)?);
            }
        } else {
            println!(
                "{:<10} {:>5.2} {:<18} {:>9.4} {:>8.3} {:>8.3} {:>6} {:>6} {:>7}",
                c.policy.name(),
                c.fraction,
                c.strategy.name(),
                c.wrong_accepted_rate * 100.0,
                c.replicas_per_task,
                c.details.replicas_per_task_formed,
                c.honest_quarantined,
                c.attackers_quarantined,
                c.tasks_to_quarantine_median
                    .map_or("-".to_string(), |m| format!("{m}")),
            );
            if details {
                println!("           {:?}", c.details);
            }
        }
    }
    eprintln!(
        "{} cells in {:.1?} (repl* = replicas per task after warm-up)",
        cells.len(),
        started.elapsed()
    );
    Ok(())
}
