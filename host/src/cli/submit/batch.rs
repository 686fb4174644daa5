//! `biop2p submit FILE --inputs PATH... -o OUTDIR`: a batch. Parses,
//! finds the hosts once, hands the batch to
//! `biop2p::node::submitter::batch` and prints what it reports.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use biop2p::node::Client;
use biop2p::node::submitter::batch::{self, BatchEvent, BatchPlan, BatchSummary, Item};
use biop2p::node::submitter::{Submitter, SubmitterConfig};
use biop2p::node::trails::Trails;

use super::{Args, State, show};
use crate::cli::common;
use biop2p::node::submit::{ADAPTIVE_MIN_HOSTS, MAX_OUTPUT, candidates, connect_all};

/// Largest single input.
const MAX_INPUT: u64 = 256 << 20;
/// Inputs open at once by default.
const DEFAULT_PARALLEL: usize = 512;
/// Jobs in flight per host at most (below a host's default per-submitter
/// queue of 256, so a batch alone is not refused `busy`).
const PER_HOST: usize = 192;

/// Reads the inputs: files, every regular file of a directory (sorted), or
/// with `lines` every non-empty line of each file (`STEM.LINE`).
pub fn read_items(paths: &[PathBuf], lines: bool) -> Result<Vec<Item>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    let mut items = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name", f.display()))?;
        let bytes = common::read_input(Some(&f.to_string_lossy()), MAX_INPUT)?;
        if lines {
            let stem = Path::new(&name)
                .file_stem()
                .map_or(name.clone(), |s| s.to_string_lossy().into_owned());
            for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                items.push(Item {
                    name: format!("{stem}.{}", n + 1),
                    input: Arc::new(line.to_vec()),
                });
            }
        } else {
            items.push(Item {
                name,
                input: Arc::new(bytes),
            });
        }
    }
    if items.is_empty() {
        bail!("--inputs gave no input (empty directories or files)");
    }
    batch::check_names(&items)?;
    Ok(items)
}

struct Progress {
    _multi: indicatif::MultiProgress,
    tasks: indicatif::ProgressBar,
    bytes: indicatif::ProgressBar,
}

impl Progress {
    /// Bars on a terminal; nothing when piped or with `--json`.
    fn new(json: bool, total: u64) -> Self {
        let multi = indicatif::MultiProgress::new();
        if json || !std::io::stderr().is_terminal() {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let tasks = multi.add(indicatif::ProgressBar::new(total));
        tasks.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} tasks  {per_sec}  ETA {eta}  {msg}",
            )
            .expect("template"),
        );
        let bytes = multi.add(indicatif::ProgressBar::new_spinner());
        bytes.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {bytes} uploaded  {bytes_per_sec}")
                .expect("template"),
        );
        tasks.enable_steady_tick(Duration::from_millis(200));
        Progress {
            _multi: multi,
            tasks,
            bytes,
        }
    }
}

pub async fn execute(a: Args, state: State, module: Vec<u8>) -> Result<ExitCode> {
    if a.detach {
        bail!(
            "--detach is for one job; a batch waits for its results (and resumes after a restart)"
        );
    }
    let out_dir = a
        .output
        .clone()
        .context("--inputs needs -o OUTDIR for the outputs and receipts")?;
    let items = read_items(&a.inputs, a.lines)?;
    let pb = Progress::new(a.json, items.len() as u64);
    let reach = a.reach();
    let mut client = Client::new(state.id.clone(), &reach.net()?, MAX_OUTPUT).await?;
    let probe = client.make_job(&module, &items[0].input, &a.params());
    let spec = probe.verify().expect("own job verifies");
    let mut trails = Trails::load(&state.trails_path);
    pb.tasks.set_message("finding hosts");
    let cands = candidates(
        &reach,
        &mut client,
        &mut trails,
        &spec,
        1,
        &mut show(&pb.tasks),
    )
    .await?;
    let hosts = connect_all(&mut client, cands, &mut show(&pb.tasks)).await;
    if hosts.is_empty() {
        bail!("no host could be reached; is it running? check --peer");
    }
    let plan = BatchPlan {
        module: Arc::new(module),
        params: a.params(),
        replicas: a.replicas.unwrap_or(1) as usize,
        max_retries: a.max_replacements as u32,
        parallel: a.parallel.unwrap_or(DEFAULT_PARALLEL),
        per_host: PER_HOST,
        out_dir: std::path::absolute(&out_dir).unwrap_or(out_dir),
    };
    let json = a.json;
    let on = |ev: BatchEvent<'_>| match ev {
        BatchEvent::Start { total, resumed } => {
            pb.tasks.set_length(total);
            pb.tasks.set_position(resumed);
            pb.tasks.reset_eta();
            pb.tasks.set_message("");
            if resumed > 0 {
                pb.tasks.suspend(|| {
                    eprintln!(
                        "note: resuming: {resumed} of {total} inputs were decided by an earlier run"
                    )
                });
            }
        }
        BatchEvent::Item(r) => {
            pb.tasks.inc(1);
            if json {
                let _ = common::print_line(&serde_json::to_string(r).expect("encodes"));
            } else if r.status != "done" {
                pb.tasks
                    .suspend(|| eprintln!("error: {}: {}", r.name, r.status));
            }
        }
        BatchEvent::Uploaded(n) => pb.bytes.inc(n),
        BatchEvent::Note(n) => pb.tasks.suspend(|| eprintln!("{n}")),
    };
    let adaptive = a.replicas.is_none() && hosts.len() >= ADAPTIVE_MIN_HOSTS;
    let summary = if adaptive {
        let config = SubmitterConfig {
            deadline: Duration::from_secs(
                a.deadline
                    .unwrap_or_else(|| a.timeout.map_or(600, |t| 2 * t.div_ceil(1000) + 30)),
            ),
            sandbox_dir: Some(state.dir.join("sandbox")),
            max_open: plan.parallel,
            ..SubmitterConfig::default()
        };
        let mut s = Submitter::new(client, state.store.clone(), config)?
            .with_trails(state.trails_path.clone());
        s.join(hosts)?;
        if let Some(n) = s.diversity_note() {
            pb.tasks.suspend(|| eprintln!("{n}"));
        }
        batch::run_adaptive(&mut s, &state.store, &plan, &items, on).await?
    } else {
        if a.replicas.is_none() {
            pb.tasks.suspend(|| {
                eprintln!(
                    "note: {} host(s), fewer than the {ADAPTIVE_MIN_HOSTS} adaptive replication needs: each input runs once and its output is not compared",
                    hosts.len()
                )
            });
        }
        let peers: Vec<_> = hosts.iter().map(|(p, _)| *p).collect();
        batch::run_direct(&mut client, &state.store, &peers, &plan, &items, on).await?
    };
    pb.tasks.finish_and_clear();
    pb.bytes.finish_and_clear();
    print_summary(&summary, &plan.out_dir, json)?;
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(s: &BatchSummary, out: &Path, json: bool) -> Result<()> {
    if json {
        return common::print_line(&serde_json::json!({ "summary": s }).to_string());
    }
    let mut text = format!(
        "batch {} ({}): {} inputs: {} done, {} failed, {} retried ({} retries), {} resumed, {} collected after a restart\nfuel {}, price {}, {:.2} s, {:.1} inputs/s; outputs in {}",
        &s.batch_id[..12],
        s.mode,
        s.total,
        s.done,
        s.failed,
        s.retried,
        s.retries,
        s.resumed,
        s.collected,
        s.fuel,
        s.price,
        s.wall_secs,
        s.jobs_per_sec,
        out.display()
    );
    for (k, n) in &s.failed_by_kind {
        text.push_str(&format!("\nfailed {k}: {n}"));
    }
    common::print_line(&text)
}
