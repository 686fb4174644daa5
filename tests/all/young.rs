//! Young on a real swarm (`/biop2p/role/1.0.0`): a fresh submitter starts
//! from an experienced submitter's trails, carried by hosts, and its first
//! placements avoid the liar a cold submitter falls for; a Sybil's table
//! and a forged one change nothing.

use std::time::Duration;

use biop2p::config::NodeConfig;
use biop2p::identity::Identity;
use biop2p::node::faulty::Faulty;
use biop2p::node::submit::{Progress, Reach, SubmitOptions, SubmitterState, submit};
use biop2p::node::{Client, HostHandle, HostOptions, spawn_host};
use biop2p::proto::{RoleRequest, RoleResponse, SignedTable, TableBody, VERSION};
use libp2p::PeerId;

async fn host(
    dir: &tempfile::TempDir,
    swarm: &str,
    price: u64,
    faulty: Faulty,
    bootstrap: Option<&str>,
) -> HostHandle {
    let mut config = NodeConfig::default();
    config.network.mdns = false;
    config.network.swarm = swarm.to_string();
    config.network.advert_interval_secs = 1;
    config.network.bootstrap = bootstrap.into_iter().map(str::to_string).collect();
    config.market.price_per_mfuel = price;
    config.resources.cpu_allocation = 0.1;
    spawn_host(HostOptions {
        config,
        data_dir: dir.path().to_path_buf(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        faulty,
    })
    .await
    .unwrap()
}

/// One echo job from the submitter in `state`; returns the host that ran
/// the accepted replica, whether its output was right, and the notes.
async fn echo(
    state: &SubmitterState,
    reach: &Reach,
    replicas: usize,
    input: &[u8],
) -> (PeerId, bool, Vec<String>) {
    let module = biop2p::workloads::get("echo").unwrap().bytes.to_vec();
    let opts = SubmitOptions {
        reach: reach.clone(),
        replicas: Some(replicas),
        deadline: Duration::from_secs(60),
        ..SubmitOptions::default()
    };
    let mut notes = Vec::new();
    let out = submit(state, module, input.to_vec(), &opts, &mut |p| {
        if let Progress::Note(n) = p {
            notes.push(n);
        }
    })
    .await
    .unwrap();
    let chosen = out
        .receipts
        .iter()
        .map(|r| r.verify().unwrap())
        .find(|b| Some(b.output_hash) == out.record.response.as_ref().and_then(output_hash))
        .or_else(|| out.receipts.first().map(|r| r.verify().unwrap()))
        .unwrap();
    let right = chosen.output_hash == *blake3::hash(input).as_bytes();
    (chosen.host_peer_id().unwrap(), right, notes)
}

fn output_hash(r: &biop2p::proto::JobResponse) -> Option<[u8; 32]> {
    match r {
        biop2p::proto::JobResponse::Done { receipt, .. } => {
            receipt.verify().ok().map(|b| b.output_hash)
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_submitter_learns_from_an_elder_and_avoids_the_liar_a_cold_one_picks() {
    let _one = crate::trust::ONE_SWARM.lock().await;
    let swarm = format!("young-{:x}", rand::random::<u64>());
    // The liar is the cheapest: an advert alone ranks it first.
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let h0 = host(&dirs[0], &swarm, 5, Faulty::Honest, None).await;
    let boot = h0.addrs[0].to_string();
    let hosts = vec![
        host(&dirs[1], &swarm, 6, Faulty::Honest, Some(&boot)).await,
        host(&dirs[2], &swarm, 7, Faulty::Honest, Some(&boot)).await,
        host(&dirs[3], &swarm, 1, Faulty::Colluding, Some(&boot)).await,
    ];
    let liar = hosts[2].peer_id;
    let reach = |young| Reach {
        bootstrap: vec![h0.addrs[0].clone()],
        mdns: false,
        swarm: swarm.clone(),
        discover: Duration::from_secs(15),
        young,
        ..Reach::default()
    };

    // A cold submitter without Young, before anyone learned anything:
    // the cheap liar gets its job and its wrong answer is not caught.
    let dir = tempfile::tempdir().unwrap();
    let cold = SubmitterState::open(dir.path()).unwrap();
    let (h, right, _) = echo(&cold, &reach(false), 1, b"cold start").await;
    assert_eq!(
        (h, right),
        (liar, false),
        "a cold submitter picks the cheap liar"
    );

    // The elder: three replicas a job, so the liar is outvoted and its
    // trail sinks; the honest majority is paid. Past Young's experience
    // it publishes its table to the hosts.
    let dir = tempfile::tempdir().unwrap();
    let elder = SubmitterState::open(dir.path()).unwrap();
    for i in 0..7 {
        echo(&elder, &reach(true), 3, format!("elder {i}").as_bytes()).await;
    }

    // A Sybil (a fresh key that paid nobody) publishes a table that
    // praises the liar, and someone publishes a forged one.
    let mut sybil = Client::new(
        Identity::from_seed(rand::random()),
        &reach(true).net().unwrap(),
        1 << 20,
    )
    .await
    .unwrap();
    let now = biop2p::store::unix_now() * 1000;
    let mut all: Vec<&HostHandle> = vec![&h0];
    all.extend(hosts.iter());
    let praise = TableBody {
        version: VERSION,
        publisher: sybil.identity().public_key(),
        issued_at_ms: now,
        experience: 1_000_000,
        trails: all
            .iter()
            .map(|h| {
                (
                    h.peer_id.to_bytes(),
                    if h.peer_id == liar { 10.0 } else { 0.05 },
                )
            })
            .collect(),
    };
    let table = SignedTable::sign(&praise, &sybil.identity().signing.clone());
    let mut forged = table.clone();
    forged.signature[7] ^= 1;
    for h in &all {
        sybil.connect(&h.addrs[0]).await.unwrap();
    }
    let answers = sybil
        .ask_roles(
            all.iter()
                .flat_map(|h| {
                    [
                        (
                            h.peer_id,
                            RoleRequest::Publish {
                                table: table.clone(),
                            },
                        ),
                        (
                            h.peer_id,
                            RoleRequest::Publish {
                                table: forged.clone(),
                            },
                        ),
                    ]
                })
                .collect(),
            Duration::from_secs(10),
        )
        .await;
    let kept = answers
        .iter()
        .filter(|(_, r)| matches!(r, Ok(RoleResponse::Kept { .. })))
        .count();
    let refused: Vec<&str> = answers
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(RoleResponse::Refused { reason, .. }) => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(kept, all.len(), "{answers:?}");
    assert_eq!(refused, vec!["bad_signature"; all.len()], "{answers:?}");

    // Every host carries the elder's table (paid at the honest ones) and
    // the Sybil's (paid nowhere).
    let answers = sybil
        .ask_roles(
            all.iter()
                .map(|h| (h.peer_id, RoleRequest::Tables))
                .collect(),
            Duration::from_secs(10),
        )
        .await;
    let elder_key = elder.id.public_key();
    let mut elder_paid = Vec::new();
    for (_, r) in &answers {
        let Ok(RoleResponse::Tables { tables, .. }) = r else {
            panic!("{r:?}");
        };
        assert_eq!(tables.len(), 2, "{tables:?}");
        for t in tables {
            let b = t.table.verify().unwrap();
            if b.publisher == elder_key {
                assert!(b.experience >= 20);
                elder_paid.push(t.settled_entries);
            } else {
                assert_eq!(t.settled_entries, 0);
            }
        }
    }
    assert_eq!(elder_paid.len(), all.len());
    assert!(
        elder_paid.iter().filter(|s| **s >= 5).count() >= 2,
        "{elder_paid:?}"
    );

    // Fresh submitters with Young start from the elder's trails and avoid
    // the liar; fresh ones without it pick it, every time.
    let (mut young_on_liar, mut cold_on_liar) = (0, 0);
    for i in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let fresh = SubmitterState::open(dir.path()).unwrap();
        let input = format!("fresh {i}");
        let (h, right, notes) = echo(&fresh, &reach(true), 1, input.as_bytes()).await;
        assert!(
            notes
                .iter()
                .any(|n| n.contains("Young") && n.contains("1 elder(s)")),
            "{notes:?}"
        );
        assert_eq!(right, h != liar);
        young_on_liar += usize::from(h == liar);

        let dir = tempfile::tempdir().unwrap();
        let cold = SubmitterState::open(dir.path()).unwrap();
        let (h, right, _) = echo(&cold, &reach(false), 1, input.as_bytes()).await;
        assert_eq!(right, h != liar);
        cold_on_liar += usize::from(h == liar);
    }
    println!("first placements on the liar: young {young_on_liar}/3, cold {cold_on_liar}/3");
    assert_eq!((young_on_liar, cold_on_liar), (0, 3));

    drop(sybil);
    for h in hosts {
        h.shutdown().await;
    }
    h0.shutdown().await;
}
