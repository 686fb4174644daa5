//! `biop2p ledger`: balances per counterparty and the settled entries with
//! their evidence. On a host (a data dir with a `db`) it shows earnings;
//! on a submitter (a state dir with a `submitter` database), spending.
//!
//! The database is opened directly when no process holds it; a running
//! host's (sled allows one process at a time) is asked for through its page
//! (`GET /api/ledger` with the token in its data dir).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use biop2p::config::NetworkConfig;
use biop2p::node::Client;
use biop2p::node::ledger::{self, LedgerView};
use biop2p::node::submitter;
use biop2p::store::{HostStore, SubmitterStore};

use super::common;

/// Show balances per counterparty and the entries behind them.
#[derive(clap::Args)]
pub struct Args {
    /// One JSON line per counterparty: `peer_id`, `balance` (positive:
    /// owed to us), `entries` (with their evidence), `unaccepted`.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// A header row and one row per counterparty: peer_id, balance,
    /// entries (their count), unaccepted.
    #[arg(long)]
    csv: bool,
    /// A host's data dir, or a submitter's state dir (whichever database
    /// it holds); default: the submitter's state dir if it has one, else
    /// the host's data dir.
    #[arg(long, env = "BIOP2P_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Net with a running host (repeatable; a multiaddr ending in
    /// /p2p/PEER_ID): send the acceptances it has not confirmed, exchange
    /// signed balance statements, and print whether the two ledgers agree
    /// (exit 1 if any does not; a disagreement is kept as evidence in
    /// `biop2p trust`). From a submitter's state dir.
    #[arg(long, value_name = "ADDR", conflicts_with = "csv")]
    reconcile: Vec<libp2p::Multiaddr>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    if !a.reconcile.is_empty() {
        return reconcile(a);
    }
    let view = open(a.data_dir)?;
    if a.json {
        for c in &view.counterparties {
            common::print_line(&serde_json::to_string(c)?)?;
        }
    } else if a.csv {
        common::print_line("peer_id,balance,entries,unaccepted")?;
        for c in &view.counterparties {
            common::print_line(&format!(
                "{},{},{},{}",
                c.peer_id,
                c.balance,
                c.entries.len(),
                c.unaccepted
            ))?;
        }
    } else {
        print_table(&view)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn reconcile(a: Args) -> Result<ExitCode> {
    let state = super::submit::open_state(a.data_dir)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = Client::new(state.id.clone(), &NetworkConfig::direct(), 1 << 20).await?;
        let mut all_agree = true;
        for addr in &a.reconcile {
            let peer = client
                .connect(addr)
                .await
                .with_context(|| format!("cannot reach {addr}"))?;
            let r = submitter::reconcile(&mut client, &state.store, &peer).await?;
            all_agree &= r.agrees;
            if a.json {
                common::print_line(&serde_json::to_string(&r)?)?;
            } else {
                common::print_line(&format!(
                    "{}: {} (ours {} entries worth {}, theirs {} worth {}; {} acceptance(s) re-sent, {} confirmed)",
                    r.peer_id,
                    if r.agrees { "agrees" } else { "DISAGREES: kept as evidence" },
                    r.ours_entries,
                    r.ours_total,
                    r.theirs_entries,
                    r.theirs_total,
                    r.resent,
                    r.confirmed
                ))?;
            }
        }
        Ok(if all_agree {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

fn open(flag: Option<PathBuf>) -> Result<LedgerView> {
    let dirs = match flag {
        Some(d) => vec![d],
        None => vec![common::state_dir(None)?, common::data_dir(None)?],
    };
    for d in &dirs {
        if d.join("submitter").exists() {
            let store = SubmitterStore::open(&d.join("submitter")).with_context(|| {
                format!("cannot open the submitter database in {}", d.display())
            })?;
            return Ok(ledger::submitter_view(&store)?);
        }
        if d.join("db").exists() {
            return match HostStore::open(&d.join("db")) {
                Ok(store) => Ok(ledger::host_view(&store)?),
                // Held by the running host (sled allows one process):
                // ask it, through its page.
                Err(e) => {
                    let v = super::control::host_get(Some(d.clone()), "/api/ledger").with_context(|| {
                        format!(
                            "cannot open the host database in {} ({e}) nor ask a running host for its ledger",
                            d.display()
                        )
                    })?;
                    Ok(serde_json::from_value(v).context("the host's ledger does not decode")?)
                }
            };
        }
    }
    bail!(
        "no ledger in {}: pass --data-dir (a host's data dir or a submitter's state dir)",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

fn print_table(v: &LedgerView) -> Result<()> {
    let what = if v.side == "host" { "earned" } else { "spent" };
    if v.counterparties.is_empty() {
        return common::print_line(&format!("{} ledger: no entries yet", v.side));
    }
    common::print_line(&format!(
        "{:<53} {:>12} {:>8} {:>11} {:>8}",
        "counterparty", "balance", "entries", "unaccepted", "noted"
    ))?;
    for c in &v.counterparties {
        common::print_line(&format!(
            "{:<53} {:>12} {:>8} {:>11} {:>8}",
            c.peer_id,
            c.balance,
            c.entries.len(),
            c.unaccepted,
            c.noted
        ))?;
        for e in &c.entries {
            common::print_line(&format!(
                "    job {}  receipt {}  {} for {} fuel{}",
                &e.job_id[..12],
                &e.receipt_hash[..12],
                e.amount,
                e.agreed_fuel,
                e.over_claim.map_or(String::new(), |x| format!(
                    "  (claimed {x} fuel more: evidence)"
                ))
            ))?;
        }
    }
    common::print_line(&format!(
        "{} {}: {}; every debit has its credit: {}",
        v.side,
        what,
        v.net.abs(),
        if v.trial_balance == 0 { "yes" } else { "NO" }
    ))
}
