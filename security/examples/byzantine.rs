//! The Byzantine benchmark matrix: honest hosts vs attackers, biop2p beside
//! a fixed majority of 3 and BOINC's adaptive replication, same world, same
//! seed. The same code as `biop2p sim byzantine`, without building the host.
//!
//! ```text
//! cargo run --release -p security --example byzantine                      # the default matrix
//! cargo run --release -p security --example byzantine -- --fraction 0.25 --strategy patient
//! cargo run --release -p security --example byzantine -- --ablation        # one row per defence
//! cargo run --release -p security --example byzantine -- --ablation --attacker-prefixes 250
//!                                  # the same without the prefix signal (every defence shows)
//! cargo run --release -p security --example byzantine -- --json --details
//! ```
//!
//! Flags: `--fraction F`, `--strategy S`, `--policy P` (repeatable),
//! `--tasks N`, `--hosts N`, `--submitters N`, `--attacker-prefixes N`,
//! `--seed N`, `--json` (one JSON line per cell), `--details` (more figures),
//! policy tuning: `--spot-initial`, `--spot-decay`, `--spot-floor`,
//! `--canary-share`, `--min-trusted`, `--admission`, `--probation`,
//! `--alarm-gain`, `--alarm-free`, `--alarm-half-life` (ms), `--alarm-max`;
//! `--ablation` (each defence off beside all on, at 25% or the first `--fraction`).

use security::byzantine::{self, ByzantineConfig, CellReport, Policy, Strategy};

const HELP: &str = "
byzantine [flags]: the Byzantine benchmark matrix (biop2p, majority3, boinc-adaptive)
  --fraction F (repeatable)   attacker fraction; default 0, 0.10, 0.25, 0.33
  --strategy S (repeatable)   always-wrong random-wrong colluding stealth-colluding
                              patient sleeper slanderer over-billing sybil-churn
  --policy P (repeatable)     biop2p majority3 boinc-adaptive
  --tasks N --hosts N --submitters N --attacker-prefixes N --seed N
  --spot-initial --spot-decay --spot-floor --canary-share --min-trusted
  --admission --probation --alarm-gain --alarm-free --alarm-half-life MS
  --alarm-max --reuse-canaries    policy tuning
  --ablation                  each defence off beside all on
  --json --details            output";

fn row(c: &CellReport, details: bool) {
    println!("{}", c.table_row());
    if details {
        println!("    {:?}", c.details);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = ByzantineConfig::default();
    let (mut fractions, mut strategies, mut policies) = (Vec::new(), Vec::new(), Vec::new());
    let (mut json, mut details, mut ablation) = (false, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--fraction" => fractions.push(value()?.parse::<f64>()?),
            "--strategy" => strategies.push(value()?.parse::<Strategy>()?),
            "--policy" => policies.push(value()?.parse::<Policy>()?),
            "--tasks" => cfg.tasks = value()?.parse()?,
            "--hosts" => cfg.hosts = value()?.parse()?,
            "--submitters" => cfg.submitters = value()?.parse()?,
            "--attacker-prefixes" => cfg.attacker_prefixes = value()?.parse()?,
            "--seed" => cfg.seed = value()?.parse()?,
            // Policy tuning, to explore the cost/safety trade-off.
            "--spot-initial" => cfg.security.placement.spot_check_initial = value()?.parse()?,
            "--spot-decay" => cfg.security.placement.spot_check_decay = value()?.parse()?,
            "--spot-floor" => cfg.security.placement.spot_check_floor = value()?.parse()?,
            "--canary-share" => cfg.security.deception.canary_share = value()?.parse()?,
            "--min-trusted" => cfg.security.min_trusted = value()?.parse()?,
            "--admission" => cfg.security.newcomer_admission = value()?.parse()?,
            "--probation" => cfg.security.probation_canaries = value()?.parse()?,
            "--alarm-gain" => cfg.security.alarm_gain = value()?.parse()?,
            "--alarm-free" => cfg.security.alarm_free = value()?.parse()?,
            "--alarm-half-life" => cfg.security.alarm_half_life_ms = value()?.parse()?,
            "--alarm-max" => cfg.security.alarm_max_rate = value()?.parse()?,
            "--reuse-canaries" => cfg.reuse_canaries = true,
            "--json" => json = true,
            "--details" => details = true,
            "--ablation" => ablation = true,
            "--help" | "-h" => {
                println!("{}", HELP.trim());
                return Ok(());
            }
            other => return Err(format!("unknown flag {other:?}").into()),
        }
    }
    let started = std::time::Instant::now();
    let header = || println!("{}", CellReport::table_header());
    if ablation {
        let f = fractions.first().copied().unwrap_or(0.25);
        let rows = byzantine::run_ablation(&cfg, f)?;
        for r in &rows {
            if json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!("defence {} (against {})", r.defence, r.strategy.name());
                header();
                row(&r.on, details);
                row(&r.off, details);
            }
        }
        eprintln!("{} ablation rows in {:.1?}", rows.len(), started.elapsed());
        return Ok(());
    }
    let cells = byzantine::run_matrix(&cfg, &fractions, &strategies, &policies)?;
    if !json {
        header();
    }
    for c in &cells {
        if json {
            println!("{}", serde_json::to_string(c)?);
            if details {
                println!("{}", serde_json::to_string(&c.details)?);
            }
        } else {
            row(c, details);
        }
    }
    eprintln!("{} cells in {:.1?}", cells.len(), started.elapsed());
    Ok(())
}
