//! Runs simulator scenarios and prints one JSON line per report, plus timing
//! and memory on stderr. This is how the figures in the roles README were measured.
//!
//! ```text
//! cargo run -p roles --release --example sim -- [SCENARIO|all|FILE.toml]... [--nodes N] [--jobs N] [--seed S] [--plot FILE.svg] [--roles-only]
//! ```
//!
//! `--roles-only` skips the baseline run (used to time the 100k-node run alone).

use std::time::Instant;

use roles::sim::{self, Scenario};

fn main() {
    let mut names = Vec::new();
    let (mut nodes, mut jobs, mut seed, mut plot, mut roles_only) = (None, None, None, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nodes" => nodes = args.next().and_then(|v| v.parse().ok()),
            "--jobs" => jobs = args.next().and_then(|v| v.parse().ok()),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()),
            "--plot" => plot = args.next(),
            "--roles-only" => roles_only = true,
            _ => names.push(a),
        }
    }
    if names.is_empty() || names.iter().any(|n| n == "all") {
        names = sim::builtin_names().into_iter().map(String::from).collect();
    }
    let mut all = Vec::new();
    for n in names {
        let mut sc = if n.ends_with(".toml") {
            Scenario::from_toml_str(&std::fs::read_to_string(&n).expect("read scenario file"))
                .expect("scenario")
        } else {
            Scenario::builtin(&n).expect("scenario")
        };
        if let Some(v) = nodes {
            sc = sc.with_nodes(v);
        }
        if let Some(v) = jobs {
            sc = sc.with_jobs(v);
        }
        if let Some(v) = seed {
            sc = sc.with_seed(v);
        }
        let t = Instant::now();
        if roles_only {
            let sizes = if sc.sizes.is_empty() {
                vec![sc.nodes]
            } else {
                sc.sizes.clone()
            };
            for size in sizes {
                let jobs = (sc.jobs as f64 * size as f64 / sc.nodes as f64).round() as u64;
                let one = Scenario {
                    nodes: size,
                    jobs,
                    sizes: vec![],
                    ..sc.clone()
                };
                let t1 = Instant::now();
                let (f, d) = sim::run_roles_only(&one);
                eprintln!(
                    "{} nodes={} jobs={} completed={} events={} wall={:.1}s",
                    sc.name,
                    size,
                    jobs,
                    d.completed,
                    d.events,
                    t1.elapsed().as_secs_f64()
                );
                println!("{}", serde_json::to_string(&f).unwrap());
            }
        } else {
            for r in sim::run(&sc) {
                println!("{}", serde_json::to_string(&r).unwrap());
                let d = &r.details;
                eprintln!(
                    "  {}: sim {} ms, completed {} failed {} of {}, steals {}, shed {}, class switches/job {:.3}, crisis switches {}, queue growth {:.2}",
                    r.scenario,
                    d.sim_ms,
                    d.completed,
                    d.failed,
                    d.jobs,
                    d.steals,
                    d.shed,
                    d.class_switch_rate,
                    d.switches.iter().filter(|s| s.contains("havoc")).count(),
                    d.queue_growth().unwrap_or(f64::NAN),
                );
                eprintln!("  messages: {:?}", d.messages);
                all.push(r);
            }
        }
        eprintln!("  {} wall time {:.1}s", sc.name, t.elapsed().as_secs_f64());
    }
    if let Some(p) = plot {
        std::fs::write(&p, sim::plot_svg(&all)).expect("write plot");
    }
    if let Ok(s) = std::fs::read_to_string("/proc/self/status")
        && let Some(l) = s.lines().find(|l| l.starts_with("VmHWM"))
    {
        eprintln!("peak memory: {}", l.trim_start_matches("VmHWM:").trim());
    }
}
