//! `biop2p trust`: every host this submitter knows, with its state, score,
//! record and the evidence behind each state change; and the checking of
//! trust reports other submitters published.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use biop2p::config::NetworkConfig;
use biop2p::node::Client;
use biop2p::node::submitter::evidence::LieReport;
use biop2p::node::submitter::{self, ReportVerdict, Submitter, SubmitterConfig};

use super::common;
use super::submit::State;

/// Show whom this submitter trusts, and why.
#[derive(clap::Args)]
pub struct Args {
    /// One JSON line per host.
    #[arg(long)]
    json: bool,
    /// Print the signed reports of the lies this submitter caught, one per
    /// line, for other submitters to check with `--check`.
    #[arg(long, conflicts_with = "check")]
    reports: bool,
    /// Check the reports in this file (one per line, from `--reports` of
    /// another submitter): each is re-run here before it counts.
    #[arg(long)]
    check: Option<PathBuf>,
    /// Most fuel one re-run of a checked report may burn here.
    #[arg(long, default_value_t = 10_000_000_000)]
    fuel_budget: u64,
    /// Submitter state (key, jobs, trust); default $XDG_DATA_HOME/biop2p.
    #[arg(long, env = "BIOP2P_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let dir = common::state_dir(a.state_dir.clone())?;
    let state = super::submit::open_state(a.state_dir.clone())?;
    if let Some(file) = &a.check {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let rt = tokio::runtime::Runtime::new()?;
        return rt.block_on(check(a.json, a.fuel_budget, &dir, state, &text));
    }
    let (hosts, evidence) = submitter::stored_trust(&state.store)?;
    if a.reports {
        for e in evidence.iter().filter_map(|e| e.report.as_ref()) {
            common::print_line(e)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if hosts.is_empty() && !a.json {
        common::print_line("no host known yet: submit a job first")?;
    } else if !a.json {
        common::print_line(&format!(
            "{:<53} {:<12} {:>6} {:>6} {:>9}  prefix",
            "host", "state", "score", "agree", "disagree"
        ))?;
    }
    for h in &hosts {
        let mine: Vec<_> = evidence.iter().filter(|e| e.peer_id == h.peer_id).collect();
        if a.json {
            let mut v = serde_json::to_value(h)?;
            v["evidence"] = serde_json::to_value(
                mine.iter()
                    .map(|e| {
                        serde_json::json!({
                            "at_ms": e.at_ms, "kind": e.kind, "detail": e.detail,
                            "job_id": e.job_id, "report": e.report.is_some(),
                        })
                    })
                    .collect::<Vec<_>>(),
            )?;
            common::print_line(&v.to_string())?;
        } else {
            common::print_line(&format!(
                "{:<53} {:<12} {:>6.3} {:>6} {:>9}  {}",
                h.peer_id, h.state, h.score, h.agreements, h.disagreements, h.prefix
            ))?;
            for e in mine {
                let job = e
                    .job_id
                    .as_deref()
                    .map(|j| format!(" job {}", &j[..12.min(j.len())]))
                    .unwrap_or_default();
                common::print_line(&format!("    {} {}{job}", e.kind, e.detail))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(
    json: bool,
    fuel_budget: u64,
    dir: &std::path::Path,
    state: State,
    text: &str,
) -> Result<ExitCode> {
    let client = Client::new(state.id.clone(), &NetworkConfig::direct(), 1 << 20).await?;
    let config = SubmitterConfig {
        sandbox_dir: Some(dir.join("sandbox")),
        ..SubmitterConfig::default()
    };
    let mut s = Submitter::new(client, state.store.clone(), config)?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let verdict = match LieReport::from_text(line) {
            Ok(r) => s.check_report(&r, fuel_budget).await?,
            Err(e) => ReportVerdict::Ignored(e),
        };
        let (result, why) = match &verdict {
            ReportVerdict::Ignored(e) => ("ignored", e.to_string()),
            ReportVerdict::Checked {
                lied: true,
                applied,
            } => (
                "lie confirmed",
                if *applied {
                    "re-run here disagrees with the receipt; counted as evidence".into()
                } else {
                    "re-run here disagrees with the receipt; the host gets no unchecked work here anyway".into()
                },
            ),
            ReportVerdict::Weighed {
                why,
                score_before,
                score_after,
            } => (
                "weighed",
                format!(
                    "{why}; a bare accusation, weighed by the reporter's record here: the host's score {score_before:.3} -> {score_after:.3}, its state unchanged"
                ),
            ),
            ReportVerdict::Checked { lied: false, .. } => (
                "false accusation",
                "re-run here agrees with the receipt; held against the reporter".into(),
            ),
        };
        if json {
            common::print_line(&serde_json::json!({ "result": result, "why": why }).to_string())?;
        } else {
            common::print_line(&format!("{result}: {why}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
