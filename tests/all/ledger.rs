//! Settlement, live: real hosts on loopback (real libp2p, wasmtime, sled,
//! signatures). An over-billing host is paid the quorum's count, a liar
//! nothing, the credit limit refuses and then admits after settlement,
//! forged and replayed acceptances change nothing, and `kill -9` of the
//! host between its receipt and the acceptance loses and double-counts
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use biop2p::config::NodeConfig;
use biop2p::identity::Identity;
use biop2p::node::Client;
use biop2p::node::client::JobParams;
use biop2p::node::faulty::Faulty;
use biop2p::node::ledger::{host_view, submitter_view};
use biop2p::node::submitter::{
    Submitter, SubmitterConfig, TaskInput, TaskStatus, settlement_record,
};
use biop2p::proto::{self, JobRequest, JobResponse, RefuseReason, SignedAcceptance, SignedJob};
use biop2p::store::{HostStore, LedgerRecord, SubmitterStore};
use biop2p::workloads;
use libp2p::PeerId;
use security::Digest;

use crate::durability::{Killer, start_host_with};
use crate::network::{client, run_job, start_host};
use crate::trust::{ONE_SWARM, start_hosts};

/// The settled entry the submitter makes for an answer it accepts as is
/// (one host: its own fuel count is the agreed one).
fn accept_as_is(c: &Client, job: &SignedJob, resp: &JobResponse) -> LedgerRecord {
    let JobResponse::Done { receipt, .. } = resp else {
        panic!("not done: {resp:?}")
    };
    let body = receipt.verify().unwrap();
    let d = Digest(body.output_hash);
    settlement_record(&c.identity().signing, job, resp, &d, &d, body.fuel_used)
        .expect("a right answer is paid")
        .0
}

async fn settle(c: &mut Client, peer: &PeerId, rec: &LedgerRecord) -> JobResponse {
    c.request(
        peer,
        JobRequest::Settle {
            entry: rec.evidence.clone(),
        },
    )
    .await
    .unwrap()
}

fn refused(r: &JobResponse) -> Option<RefuseReason> {
    match r {
        JobResponse::Refused { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_limit_refuses_then_admits_after_settlement_and_forgeries_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.market.price_per_mfuel = 1000;
    config.market.credit_newcomer = 2000;
    config.market.credit_growth_percent = 100;
    let host = start_host(dir.path(), config).await;
    let peer = host.peer_id;
    let mut c = client().await;
    c.connect(&host.addr("tcp").unwrap()).await.unwrap();

    // Job 1 costs at most 1000 (10⁶ fuel at 1000 per Mfuel): it fits.
    let p1 = JobParams {
        fuel: 1_000_000,
        ..JobParams::default()
    };
    let (job1, r1) = run_job(&mut c, &peer, workloads::ECHO, b"credit 1\n", &p1).await;
    let rec1 = accept_as_is(&c, &job1, &r1);
    let price1 = rec1.entry.amount;
    assert!(price1 > 0 && price1 < 1000, "job 1 cost {price1}");

    // Job 2's most possible cost plus job 1's unaccepted price is one over
    // the newcomer's limit: refused, and nothing was run.
    let p2 = JobParams {
        fuel: (2000 - price1 + 1) * 1000,
        ..JobParams::default()
    };
    let (_, r2) = run_job(&mut c, &peer, workloads::ECHO, b"credit 2\n", &p2).await;
    assert_eq!(refused(&r2), Some(RefuseReason::CreditLimit), "{r2:?}");
    assert_eq!(RefuseReason::CreditLimit.as_str(), "credit_limit");

    // Forgeries change nothing: a tampered signature, an acceptance signed
    // by a key that is not the job's submitter, a price off the rule.
    let mut bad_sig = rec1.clone();
    bad_sig.evidence.acceptance.signature[0] ^= 1;
    assert_eq!(
        refused(&settle(&mut c, &peer, &bad_sig).await),
        Some(RefuseReason::BadSignature)
    );
    let stranger = Identity::from_seed([77; 32]);
    let mut body = rec1.evidence.acceptance.verify().unwrap();
    body.submitter = stranger.public_key();
    let mut foreign = rec1.clone();
    foreign.evidence.acceptance = SignedAcceptance::sign(&body, &stranger.signing);
    assert_eq!(
        refused(&settle(&mut c, &peer, &foreign).await),
        Some(RefuseReason::NotYours)
    );
    let mut body = rec1.evidence.acceptance.verify().unwrap();
    body.price += 1;
    let mut off_rule = rec1.clone();
    off_rule.evidence.acceptance = SignedAcceptance::sign(&body, &c.identity().signing);
    assert_eq!(
        refused(&settle(&mut c, &peer, &off_rule).await),
        Some(RefuseReason::Malformed)
    );
    // Still over the limit: none of those settled anything.
    let (_, r2) = run_job(&mut c, &peer, workloads::ECHO, b"credit 2\n", &p2).await;
    assert_eq!(refused(&r2), Some(RefuseReason::CreditLimit), "{r2:?}");

    // The real acceptance settles job 1; sent again, it changes nothing.
    let job1_id = job1.id();
    assert!(matches!(
        settle(&mut c, &peer, &rec1).await,
        JobResponse::Settled { job_id, new: true } if job_id == job1_id
    ));
    assert!(matches!(
        settle(&mut c, &peer, &rec1).await,
        JobResponse::Settled { new: false, .. }
    ));

    // Settled: no unaccepted work, and the limit grew. Job 2 runs now.
    let (job2, r2) = run_job(&mut c, &peer, workloads::ECHO, b"credit 2\n", &p2).await;
    assert!(matches!(r2, JobResponse::Done { .. }), "{r2:?}");
    let price2 = accept_as_is(&c, &job2, &r2).entry.amount;

    host.shutdown().await;
    let store = HostStore::open(&dir.path().join("db")).unwrap();
    let v = host_view(&store).unwrap();
    assert_eq!(v.counterparties.len(), 1);
    let me = &v.counterparties[0];
    assert_eq!(me.peer_id, c.identity().peer_id.to_string());
    assert_eq!(me.entries.len(), 1, "one entry, however often it was sent");
    assert_eq!(me.entries[0].job_id, proto::hex(&job1_id));
    assert_eq!(me.balance, price1 as i64, "owed exactly job 1's price");
    assert_eq!(me.unaccepted, price2, "job 2 is unaccepted work");
    assert_eq!(v.trial_balance, 0);
}

#[test]
fn kill_9_of_the_host_between_receipt_and_acceptance_loses_and_double_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sub_dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (child, addr, _out) = start_host_with(dir.path(), "/ip4/127.0.0.1/tcp/0", &[]);
    let mut host = Killer(child);
    let mut c = rt.block_on(client());
    let peer = rt.block_on(c.connect(&addr.parse().unwrap())).unwrap();
    let (job, resp) = rt.block_on(run_job(
        &mut c,
        &peer,
        workloads::ECHO,
        b"survive\n",
        &JobParams::default(),
    ));
    // The submitter stores what it owes (flushed), then the host dies
    // before the acceptance reaches it.
    let rec = accept_as_is(&c, &job, &resp);
    let sub = SubmitterStore::open(&sub_dir.path().join("submitter")).unwrap();
    rt.block_on(sub.put_settlements(std::slice::from_ref(&rec)))
        .unwrap();
    host.0.kill().unwrap(); // SIGKILL
    host.0.wait().unwrap();
    drop(sub);

    let deliver = |expect_new: Option<bool>| {
        let (child, addr, _out) = start_host_with(dir.path(), "/ip4/127.0.0.1/tcp/0", &[]);
        let killer = Killer(child);
        let mut c2 = rt
            .block_on(Client::new(
                Identity::from_seed(rand::random()),
                &biop2p::config::NetworkConfig::direct(),
                16 << 20,
            ))
            .unwrap();
        // The submitter's key sends it: anyone may carry a settled entry
        // (it proves itself), so even another client's connection works.
        let p = rt.block_on(c2.connect(&addr.parse().unwrap())).unwrap();
        assert_eq!(p, peer);
        // Whatever the crash lost, the job is durable and finishes again.
        let fetched = rt
            .block_on(c2.request(
                &p,
                JobRequest::Fetch {
                    job_id: job.id(),
                    wait: true,
                },
            ))
            .unwrap();
        assert_eq!(refused(&fetched), Some(RefuseReason::NotYours));
        let r = rt.block_on(settle(&mut c2, &p, &rec));
        match (expect_new, &r) {
            (Some(n), JobResponse::Settled { new, .. }) => assert_eq!(*new, n, "{r:?}"),
            _ => panic!("{r:?}"),
        }
        killer
    };
    // After the restart the acceptance (kept by the submitter) settles;
    // sent again after another kill -9, it changes nothing.
    let mut h = deliver(Some(true));
    h.0.kill().unwrap();
    h.0.wait().unwrap();
    let mut h = deliver(Some(false));
    h.0.kill().unwrap();
    h.0.wait().unwrap();

    let store = HostStore::open(&dir.path().join("db")).unwrap();
    let v = host_view(&store).unwrap();
    assert_eq!(v.counterparties.len(), 1, "{v:?}");
    let cp = &v.counterparties[0];
    assert_eq!(cp.entries.len(), 1, "settled once");
    assert_eq!(cp.balance, rec.entry.amount as i64);
    assert_eq!(cp.unaccepted, 0, "the job's claim is closed, re-run or not");
    assert_eq!(v.trial_balance, 0);
    let sub = SubmitterStore::open(&sub_dir.path().join("submitter")).unwrap();
    let s = submitter_view(&sub).unwrap();
    assert_eq!(s.net + v.net, 0, "both sides hold the same entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overbilling_host_is_paid_the_quorums_count_and_a_liar_nothing() {
    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = format!("ledger-{:x}", rand::random::<u64>());
    let mut modes = vec![Faulty::Honest; 5];
    modes.extend([Faulty::OverBilling, Faulty::Colluding]);
    let nodes = start_hosts(root.path(), &swarm, &modes).await;
    let overbiller = nodes[5].peer_id();
    let liar = nodes[6].peer_id();

    let mut net = biop2p::config::NetworkConfig::direct();
    net.swarm = swarm.clone();
    net.bootstrap = vec![nodes[0].addrs()[0].to_string()];
    let state = root.path().join("submitter");
    let mut client = Client::new(Identity::load_or_create(&state).unwrap(), &net, 16 << 20)
        .await
        .unwrap();
    let found = client
        .discover(
            nodes.len(),
            |_| true,
            Duration::from_millis(300),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(found.len(), nodes.len());
    let mut hosts = Vec::new();
    for (p, ad) in &found {
        client.connect_host(*p, ad).await.unwrap();
        hosts.push((*p, ad.fuel_per_sec));
    }
    let store = Arc::new(SubmitterStore::open(&state.join("submitter")).unwrap());
    // The over-biller's receipts never match the quorum's counters, so it
    // never earns a record, and the default policy, which prefers hosts
    // with a record (then trusted ones), may never try it again after the
    // first tasks: whether it answered in an accepted quorum was luck.
    // Here trust never forms and every replica is a uniform draw, so each
    // task (four or more replicas among seven hosts) reaches the
    // over-biller with odds of at least 4/7 and 24 tasks all miss it with
    // odds under 2e-9. The payment rule under test is the same either way:
    // the quorum's count, the lowest same-output claim while no trusted
    // host backs it.
    let mut security = SubmitterConfig::default().security;
    security.newcomer_candidates = 1;
    security.reputation.trust_after = 1_000_000;
    let mut s = Submitter::new(
        client,
        store.clone(),
        SubmitterConfig {
            security,
            deadline: Duration::from_secs(60),
            sandbox_dir: Some(state.join("sandbox")),
            ..SubmitterConfig::default()
        },
    )
    .unwrap();
    s.join(hosts).unwrap();

    let module = Arc::new(workloads::get("echo").unwrap().bytes.to_vec());
    let tasks: Vec<TaskInput> = (0..24)
        .map(|i| TaskInput {
            module: module.clone(),
            input: Arc::new(format!("ledger {i}\n").into_bytes()),
            params: JobParams::default(),
        })
        .collect();
    let out = s.run(tasks, |_| {}).await.unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o.status, TaskStatus::Accepted { .. })),
        "{out:?}"
    );
    let over_paid = submitter_view(&store)
        .unwrap()
        .counterparties
        .into_iter()
        .find(|c| c.peer_id == overbiller.to_string());
    let over = over_paid.unwrap_or_else(|| {
        // Say what the submitter made of the over-biller instead.
        let (_, evidence) = s.stored_trust().unwrap();
        let about: Vec<_> = evidence
            .iter()
            .filter(|e| e.peer_id == overbiller.to_string())
            .map(|e| format!("{}: {}", e.kind, e.detail))
            .collect();
        let row = s
            .hosts()
            .into_iter()
            .find(|h| h.peer_id == overbiller.to_string());
        panic!(
            "the over-billing host answered in no accepted quorum of 24 tasks; \
             the submitter's view of it: {row:?}; its evidence: {about:?}"
        )
    });
    for e in &over.entries {
        let extra = e.over_claim.expect("every receipt of it over-claims");
        assert_eq!(e.claimed_fuel, 2 * e.agreed_fuel + 1000, "{e:?}");
        assert_eq!(extra, e.agreed_fuel + 1000);
    }
    let sub = submitter_view(&store).unwrap();
    assert_eq!(
        sub.balance_with(&liar.to_string()),
        0,
        "the liar is owed nothing"
    );
    assert!(
        sub.counterparties
            .iter()
            .all(|c| c.entries.iter().all(|e| e.delivered))
    );
    let (_, evidence) = s.stored_trust().unwrap();
    assert!(
        evidence
            .iter()
            .any(|e| e.kind == "over_claim" && e.peer_id == overbiller.to_string()),
        "the over-claim is evidence"
    );
    drop(s);
    for n in &nodes {
        n.stop().await;
    }

    // Each host's own store: the over-biller was paid the honest count
    // (the same as an honest host for the same job would be), the liar
    // nothing though it did work; every party's balances sum to zero.
    let mut sum = i128::from(sub.net);
    for (i, n) in nodes.iter().enumerate() {
        let hs = HostStore::open(&root.path().join(format!("host{i}")).join("db")).unwrap();
        let v = host_view(&hs).unwrap();
        assert_eq!(v.trial_balance, 0);
        sum += i128::from(v.net);
        if n.peer_id() == liar {
            assert_eq!(v.net, 0, "the liar earned nothing");
            assert!(
                v.counterparties.iter().all(|c| c.entries.is_empty()),
                "no entry for a wrong answer"
            );
        }
        if n.peer_id() == overbiller {
            let e = &v.counterparties[0].entries;
            assert!(!e.is_empty());
            assert!(e.iter().all(|e| e.agreed_fuel < e.claimed_fuel));
        }
        for c in &v.counterparties {
            for e in &c.entries {
                assert_eq!(
                    sub.counterparties
                        .iter()
                        .find(|x| x.peer_id == n.peer_id().to_string())
                        .and_then(|x| x.entries.iter().find(|y| y.job_id == e.job_id))
                        .map(|y| y.amount),
                    Some(e.amount),
                    "the host's entry is the submitter's"
                );
            }
        }
    }
    assert_eq!(sum, 0, "every party's balances sum to zero");
}

/// A detached job is paid when `biop2p result` collects and verifies it:
/// the host's ledger and the submitter's hold the same one entry.
#[test]
fn a_detached_job_is_accepted_by_the_result_that_collects_it() {
    let host_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // With its page, so `biop2p ledger` can ask it while it runs.
    let (host, addr, _events) = crate::durability::start_host_with(
        host_dir.path(),
        "/ip4/127.0.0.1/tcp/0",
        &["--http", "127.0.0.1:0"],
    );
    let host = Killer(host);
    let input = state.path().join("in.txt");
    std::fs::write(&input, b"paid later").unwrap();
    let run = |args: &[&str]| {
        let o = crate::cli::biop2p()
            .args(args)
            .arg("--state-dir")
            .arg(state.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let out = run(&[
        "submit",
        "builtin:echo",
        "--detach",
        "--json",
        "--peer",
        &addr,
        "--input",
        input.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let job = v["job_id"].as_str().unwrap().to_string();
    // Submitted, not yet collected: nothing is accepted.
    assert!(
        crate::batch::ledger(state.path()).is_empty(),
        "accepted before it was collected"
    );
    let out = run(&["result", &job, "--json", "--no-mdns"]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["status"], "done", "{v}");
    // Read while the host runs (through its page), then from its own
    // database once it is stopped: the same.
    let running = crate::batch::ledger(host_dir.path());
    drop(host);
    let peer = addr.rsplit("/p2p/").next().unwrap();
    let spent = crate::batch::ledger(state.path());
    let earned = crate::batch::ledger(host_dir.path());
    assert_eq!(
        running, earned,
        "the running host's ledger is its database's"
    );
    assert_eq!(spent.len(), 1, "{spent:?}");
    assert_eq!(spent[0].0, peer);
    assert_eq!(spent[0].2, 1, "one entry: {spent:?}");
    assert_eq!(earned.len(), 1, "{earned:?}");
    assert_eq!((earned[0].1, earned[0].2), (-spent[0].1, 1), "{earned:?}");
}

/// An acceptance a host never confirmed (the submitter stored it, then the
/// answer was lost) is owed, and the next plain `biop2p submit` to that
/// host delivers it along with its own: the host books both, once each.
#[test]
fn an_unconfirmed_acceptance_is_delivered_by_the_next_single_submit() {
    let host_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (host, addr, _events) =
        crate::durability::start_host(host_dir.path(), "/ip4/127.0.0.1/tcp/0");
    let host = Killer(host);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // An earlier run with this state dir's key: the job ran, and its
    // acceptance was stored but never reached the host.
    let owed = rt.block_on(async {
        let id = Identity::load_or_create(state.path()).unwrap();
        let mut c = Client::new(id, &biop2p::config::NetworkConfig::direct(), 16 << 20)
            .await
            .unwrap();
        let peer = c.connect(&addr.parse().unwrap()).await.unwrap();
        let (job, resp) = run_job(
            &mut c,
            &peer,
            workloads::ECHO,
            b"owed\n",
            &JobParams::default(),
        )
        .await;
        accept_as_is(&c, &job, &resp)
    });
    {
        let sub = SubmitterStore::open(&state.path().join("submitter")).unwrap();
        rt.block_on(sub.put_settlements(std::slice::from_ref(&owed)))
            .unwrap();
    }
    let input = state.path().join("in.txt");
    std::fs::write(&input, b"paid now").unwrap();
    let o = crate::cli::biop2p()
        .args([
            "submit",
            "builtin:echo",
            "--json",
            "--peer",
            &addr,
            "--input",
        ])
        .arg(&input)
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(host);
    let sub = SubmitterStore::open(&state.path().join("submitter")).unwrap();
    let spent = submitter_view(&sub).unwrap();
    assert_eq!(spent.counterparties.len(), 1, "{spent:?}");
    let entries = &spent.counterparties[0].entries;
    assert_eq!(entries.len(), 2, "the owed one and this one: {entries:?}");
    assert!(
        entries.iter().all(|e| e.delivered),
        "both confirmed by the host: {entries:?}"
    );
    let earned = crate::batch::ledger(host_dir.path());
    assert_eq!(earned.len(), 1, "{earned:?}");
    assert_eq!(
        earned[0].2, 2,
        "the host booked both, once each: {earned:?}"
    );
    assert_eq!(earned[0].1, -spent.counterparties[0].balance);
}

/// Netting over the wire: `biop2p ledger --reconcile` exchanges signed
/// statements with a running host. Equal ledgers agree; an entry only the
/// submitter holds makes them disagree (exit 1), the disagreement is kept
/// as evidence, and nothing is merged into the host's ledger.
#[test]
fn statements_agree_then_a_one_sided_entry_is_evidence_not_merged() {
    let host_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (host, addr, _events) =
        crate::durability::start_host(host_dir.path(), "/ip4/127.0.0.1/tcp/0");
    let _host = Killer(host);
    let input = state.path().join("in.txt");
    std::fs::write(&input, b"net me").unwrap();
    let cli = |args: &[&str]| {
        crate::cli::biop2p()
            .args(args)
            .arg("--state-dir")
            .arg(state.path())
            .output()
            .unwrap()
    };
    let o = cli(&[
        "submit",
        "builtin:echo",
        "--json",
        "--peer",
        &addr,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reconcile = || {
        let o = crate::cli::biop2p()
            .args(["ledger", "--json", "--reconcile", &addr, "--data-dir"])
            .arg(state.path())
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        (o.status.success(), v)
    };
    let (ok, v) = reconcile();
    assert!(ok, "{v}");
    assert_eq!(v["agrees"], true, "{v}");
    assert_eq!(
        (v["ours_entries"].as_u64(), v["theirs_entries"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["ours_total"], v["theirs_total"], "{v}");

    // The submitter's ledger gains an entry the host never saw (a lost
    // disk, a bug, a lie), recorded as delivered so nothing re-sends it.
    {
        let store = SubmitterStore::open(&state.path().join("submitter")).unwrap();
        let mut extra = store.ledger().unwrap().remove(0);
        extra.entry.job_id = [0xee; 32];
        extra.entry.amount += 5;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(store.put_settlements(std::slice::from_ref(&extra)))
            .unwrap();
        store.mark_delivered(&[0xee; 32]).unwrap();
        rt.block_on(store.flush()).unwrap();
    }
    let (ok, v) = reconcile();
    assert!(!ok, "a disagreement exits non-zero: {v}");
    assert_eq!(v["agrees"], false, "{v}");
    assert_eq!(v["ours_entries"], 2, "{v}");
    // The host's own signed statement: still its one entry.
    assert_eq!(v["theirs_entries"], 1, "merged into the host: {v}");
    let store = SubmitterStore::open(&state.path().join("submitter")).unwrap();
    let evidence: Vec<serde_json::Value> = store
        .evidence()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_slice(e).unwrap())
        .collect();
    let e = evidence
        .iter()
        .find(|e| e["kind"] == "statement_mismatch")
        .unwrap_or_else(|| panic!("no evidence kept: {evidence:?}"));
    assert_eq!(e["peer_id"], addr.rsplit("/p2p/").next().unwrap());
    assert!(e["report"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
}

/// Repetitions of the debit-note test's matmul jobs (each reports
/// progress to the host, where notes come).
const REPS: u32 = 8;

/// The input of a matmul job returning its checksum: `n`, `seed`, [`REPS`].
fn matmul_input(n: u32, seed: u32) -> Vec<u8> {
    [n, seed, REPS, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// Debit notes over real libp2p: a long job on a host with a small note
/// interval pauses at each note (at the guest's first host call past it)
/// until its submitter signs it, and ends with the same output and count
/// as without notes; the host holds the submitter's signature for the last
/// note, and its events show each one. A submitter that signs nothing gets
/// its job stopped `unpaid` at the first note, having had one note's worth
/// of work (and the rest of one repetition), and the host still serves
/// others. A note acceptance from a peer other than the job's
/// submitter is refused `not_yours`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_is_paid_in_debit_notes_and_a_submitter_that_stops_paying_gets_one_notes_worth()
{
    use biop2p::sandbox::{Sandbox, SandboxConfig, Task, WasmModule};
    // What the job costs, counted by the same meter the host runs.
    let local = Sandbox::new(SandboxConfig {
        fuel_per_sec: Some(1),
        ..SandboxConfig::default()
    })
    .unwrap();
    let count = |seed| {
        let mut t = Task::new(WasmModule::new(workloads::MATMUL), matmul_input(128, seed));
        t.limits.fuel = 1 << 40;
        let r = local.run(&t);
        (r.outcome.expect("matmul runs"), r.counters.fuel_used)
    };
    let (out1, fuel1) = count(1);
    let every = fuel1 / 4 + 1;

    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.market.debit_note_fuel = every;
    config.market.debit_note_timeout_secs = 3;
    let mut host = start_host(dir.path(), config).await;
    let peer = host.peer_id;
    let addr = host.addr("tcp").unwrap();
    let mut c = client().await;
    c.connect(&addr).await.unwrap();

    let (job, r) = run_job(
        &mut c,
        &peer,
        workloads::MATMUL,
        &matmul_input(128, 1),
        &JobParams::default(),
    )
    .await;
    let JobResponse::Done {
        output, receipt, ..
    } = &r
    else {
        panic!("expected the result, got {r:?}")
    };
    assert_eq!(output, &out1, "notes change nothing in the output");
    assert_eq!(
        receipt.verify().unwrap().fuel_used,
        fuel1,
        "nor in the count"
    );
    let latest = c
        .accepted_note(&job.id())
        .expect("the client signed notes")
        .clone();
    let (n, a) = latest.check().unwrap();
    assert!(n.seq >= 2, "notes: {}", n.seq);
    assert!(n.fuel >= u64::from(n.seq) * every && n.fuel < fuel1);
    assert_eq!(a.submitter, c.identity().public_key());
    let mut seqs = Vec::new();
    while let Ok(ev) = host.events.try_recv() {
        if let biop2p::node::host::HostEvent::NoteAccepted { job_id, seq, .. } = ev {
            assert_eq!(job_id, proto::hex(&job.id()));
            seqs.push(seq);
        }
    }
    assert_eq!(
        seqs,
        (1..=n.seq).collect::<Vec<_>>(),
        "each note accepted once, in order"
    );
    // The final acceptance settles the whole job at its full price.
    let rec = accept_as_is(&c, &job, &r);
    assert!(matches!(
        settle(&mut c, &peer, &rec).await,
        JobResponse::Settled { new: true, .. }
    ));

    // Someone else sends the submitter's own acceptance: not theirs.
    let mut other = client().await;
    other.connect(&addr).await.unwrap();
    let forged = other
        .request(
            &peer,
            JobRequest::AcceptNote {
                entry: latest.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(refused(&forged), Some(RefuseReason::NotYours));

    // A submitter that stops paying: stopped at the first note.
    let mut stingy = client().await;
    stingy.connect(&addr).await.unwrap();
    stingy.withhold_notes(true);
    let (job2, r2) = run_job(
        &mut stingy,
        &peer,
        workloads::MATMUL,
        &matmul_input(128, 2),
        &JobParams::default(),
    )
    .await;
    let JobResponse::Failed { kind, receipt, .. } = &r2 else {
        panic!("expected unpaid, got {r2:?}")
    };
    assert_eq!(kind, "unpaid");
    let body = receipt.verify().unwrap();
    assert_eq!(body.job_id, job2.id());
    let rep = fuel1 / u64::from(REPS);
    assert!(
        body.fuel_used >= every && body.fuel_used <= every + rep,
        "one note's worth of work and at most one repetition more: {} (note {every}, rep {rep})",
        body.fuel_used
    );
    assert!(stingy.accepted_note(&job2.id()).is_none());
    // The host is fine, and serves the others.
    crate::network::assert_echo_works(&mut other, &peer).await;
    // A long job that finishes and is not settled yet: its notes are what
    // the submitter acknowledged so far.
    let (job3, r3) = run_job(
        &mut c,
        &peer,
        workloads::MATMUL,
        &matmul_input(128, 3),
        &JobParams::default(),
    )
    .await;
    assert!(matches!(r3, JobResponse::Done { .. }), "{r3:?}");
    let noted3 = c
        .accepted_note(&job3.id())
        .unwrap()
        .check()
        .unwrap()
        .0
        .price;
    host.shutdown().await;

    // The host kept the submitter's signature for the last note.
    let store = HostStore::open(&dir.path().join("db")).unwrap();
    let kept = store.note(&job.id()).unwrap().expect("the note is stored");
    assert_eq!(kept, latest);
    assert!(store.note(&job2.id()).unwrap().is_none());
    let view = host_view(&store).unwrap();
    let me = c.identity().peer_id.to_string();
    let cp = view
        .counterparties
        .iter()
        .find(|p| p.peer_id == me)
        .unwrap();
    assert_eq!(cp.noted, noted3, "only the unsettled job's note counts");
    assert!(cp.unaccepted >= cp.noted);
    store.close().await.unwrap();
}
