//! HAVOC live: a submitter that loses three of its eight hosts at once,
//! mid-run, enters a crisis, places the lost hosts' work and the tasks
//! after it on the least loaded of the rest, and loses no task.

use std::sync::Arc;
use std::time::Duration;

use biop2p::node::HostEvent;
use biop2p::node::client::JobParams;
use biop2p::node::faulty::Faulty;
use biop2p::node::submitter::{TaskInput, TaskStatus};
use biop2p::proto::JobResponse;
use biop2p::workloads;

use crate::trust::{ONE_SWARM, start_hosts, submitter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_lost_mid_run_bring_a_crisis_and_no_task_is_lost() {
    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = format!("havoc-{:x}", rand::random::<u64>());
    let mut nodes = start_hosts(root.path(), &swarm, &[Faulty::Honest; 8]).await;
    let mut s = submitter(&nodes, &swarm, &root.path().join("submitter")).await;
    let victims: Vec<_> = nodes.drain(5..).collect();

    // Jobs that take a while, so the victims hold work when they go.
    let module = Arc::new(workloads::get("tensor-probe").unwrap().bytes.to_vec());
    let spin = |from: u64, n: u64| -> Vec<TaskInput> {
        (from..from + n)
            .map(|i| TaskInput {
                module: module.clone(),
                input: Arc::new(format!("spin {}", 30_000_000 + i).into_bytes()),
                params: JobParams::default(),
            })
            .collect()
    };
    // An established swarm first: trust forms over all eight. (Losing
    // three of eight newcomers before any is trusted leaves too few for a
    // newcomers' quorum: those tasks give up `no_eligible_peer`.)
    let warm = s.run(spin(0, 60), |_| {}).await.unwrap();
    assert!(
        warm.iter()
            .all(|o| matches!(o.status, TaskStatus::Accepted { .. }))
    );
    assert_eq!(s.summary().crises, 0, "no crisis without losses");
    let tasks = spin(1_000, 120);
    // Stops the three victims together once one of them has accepted a
    // job (bounded: a victim that never gets one fails the test).
    let killer = async {
        let accepted = async {
            loop {
                let evs =
                    futures::future::select_all(victims.iter().map(|v| Box::pin(v.next_event())))
                        .await;
                if matches!(evs.0, Some(HostEvent::Accepted { .. }) | None) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(120), accepted)
            .await
            .expect("a victim got a job");
        futures::future::join_all(victims.iter().map(|v| v.stop())).await;
    };
    let mut notes = Vec::new();
    let (out, ()) = tokio::join!(s.run(tasks.clone(), |n| notes.push(n.to_string())), killer);
    let out = out.unwrap();
    let summary = s.summary();
    eprintln!("havoc: {summary:?}\nnotes: {notes:#?}");

    let gave_up: Vec<_> = out
        .iter()
        .filter_map(|o| match &o.status {
            TaskStatus::GaveUp(r) => Some(format!("{r:?}")),
            _ => None,
        })
        .collect();
    eprintln!("gave up: {gave_up:?}");
    let accepted: Vec<_> = out
        .iter()
        .filter_map(|o| match &o.status {
            TaskStatus::Accepted { response, .. } => Some((o.index, response)),
            TaskStatus::GaveUp(_) => None,
        })
        .collect();
    assert_eq!(accepted.len(), tasks.len(), "every task accepted");
    for (i, r) in accepted {
        let JobResponse::Done { output, .. } = &**r else {
            panic!("task {i}: {r:?}");
        };
        assert!(output == b"0" || output == b"1", "task {i}: {output:?}");
    }
    assert_eq!(summary.crises, 1, "one crisis: {notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("note: HAVOC: crisis") && n.contains("lost")),
        "{notes:?}"
    );
    assert!(summary.crisis_picks > 0, "replicas placed in the crisis");
    assert!(!victims.is_empty());
    for n in &nodes {
        n.stop().await;
    }
}
