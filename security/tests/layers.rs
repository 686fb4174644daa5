//! One test per attack: the layer that stops it, and the same seeded scenario
//! with that layer switched off letting it through. Small cells (behaviour,
//! not wall-clock); the full matrix is `examples/byzantine.rs`.

use security::byzantine::{self, ByzantineConfig, CellReport, Policy, Strategy};
use security::{
    Action, Coordinator, Digest, Event, Layer, LayerSet, PeerId, PeerState, ReceiptFacts, Region,
    SecurityConfig, TaskId, TaskSpec,
};

fn small() -> ByzantineConfig {
    ByzantineConfig {
        hosts: 300,
        tasks: 30_000,
        submitters: 5,
        window: 3_000,
        ..Default::default()
    }
}

/// The hard case: one prefix per attacker, so the prefix signal is gone.
fn spread() -> ByzantineConfig {
    ByzantineConfig {
        attacker_prefixes: 75,
        ..small()
    }
}

fn cell(cfg: &ByzantineConfig, f: f64, s: Strategy, p: Policy) -> CellReport {
    let r = byzantine::run_cell(cfg, f, s, p).unwrap();
    eprintln!(
        "seed={} {} {:?}",
        cfg.seed,
        serde_json::to_string(&r).unwrap(),
        r.details
    );
    r
}

fn off(cfg: &ByzantineConfig, name: &str) -> ByzantineConfig {
    let mut c = cfg.clone();
    let (_, _, switch) = byzantine::defences()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .unwrap();
    switch(&mut c);
    c
}

#[test]
fn majority3_baseline_matches_the_analytic_figure() {
    let r = cell(&small(), 0.25, Strategy::Colluding, Policy::Majority3);
    // 3q^2 - 2q^3 = 15.6% for q = 0.25; re-issued honest failures (attackers
    // never fail) push it up a little (16.6% in an independent model).
    assert!((0.14..0.19).contains(&r.wrong_accepted_rate), "{r:?}");
    assert!(r.replicas_per_task >= 3.0);
}

#[test]
fn boinc_adaptive_is_beaten_by_colluders_that_wait_for_trust() {
    let boinc = cell(&spread(), 0.25, Strategy::Colluding, Policy::BoincAdaptive);
    let ours = cell(&spread(), 0.25, Strategy::Colluding, Policy::Biop2p);
    assert!(boinc.wrong_accepted_rate > 0.02, "{boinc:?}");
    assert_eq!(boinc.attackers_quarantined, 0, "no blacklisting");
    assert!(
        ours.wrong_accepted_rate * 10.0 < boinc.wrong_accepted_rate,
        "{ours:?}"
    );
}

#[test]
fn layer1_randomized_execution_stops_colluders() {
    let cfg = spread();
    let on = cell(&cfg, 0.25, Strategy::Colluding, Policy::Biop2p);
    assert!(on.wrong_accepted_rate < 0.005, "{on:?}");
    assert_eq!(on.honest_quarantined, 0);
    let off = cell(
        &off(&cfg, "randomized-execution"),
        0.25,
        Strategy::Colluding,
        Policy::Biop2p,
    );
    assert!(off.wrong_accepted_rate > 0.15, "{off:?}");
}

#[test]
fn probation_canaries_catch_colluders_before_their_first_solo_task() {
    let cfg = spread();
    let on = cell(&cfg, 0.25, Strategy::StealthColluding, Policy::Biop2p);
    let off = cell(
        &off(&cfg, "probation-canaries"),
        0.25,
        Strategy::StealthColluding,
        Policy::Biop2p,
    );
    assert!(
        off.wrong_accepted_rate > on.wrong_accepted_rate,
        "{off:?} vs {on:?}"
    );
    assert_eq!(on.honest_quarantined, 0);
}

#[test]
fn layer5_thermal_catches_over_billing() {
    let cfg = spread();
    let on = cell(&cfg, 0.25, Strategy::OverBilling, Policy::Biop2p);
    assert!(on.wrong_accepted_rate < 0.005, "{on:?}");
    assert!(on.attackers_quarantined > 0, "{on:?}");
    let off = cell(
        &off(&cfg, "thermal"),
        0.25,
        Strategy::OverBilling,
        Policy::Biop2p,
    );
    assert!(off.wrong_accepted_rate > 0.05, "{off:?}");
}

#[test]
fn slander_is_checked_not_believed() {
    let cfg = spread();
    let on = cell(&cfg, 0.25, Strategy::Slanderer, Policy::Biop2p);
    assert_eq!(on.honest_quarantined, 0, "{on:?}");
    assert!(on.details.verify_cpu > 0);
    let off = cell(
        &off(&cfg, "accusation-check"),
        0.25,
        Strategy::Slanderer,
        Policy::Biop2p,
    );
    // Believed at face value, slander costs honest trusted hosts their trust:
    // their work is replicated again.
    assert!(
        off.replicas_per_task > on.replicas_per_task + 0.1,
        "{off:?} vs {on:?}"
    );
}

#[test]
fn sybil_churn_buys_nothing() {
    let r = cell(&small(), 0.25, Strategy::SybilChurn, Policy::Biop2p);
    assert!(r.wrong_accepted_rate < 0.005, "{r:?}");
    assert_eq!(r.honest_quarantined, 0);
}

#[test]
fn no_attackers_no_false_quarantine_despite_honest_faults() {
    let r = cell(&small(), 0.0, Strategy::Colluding, Policy::Biop2p);
    assert!(r.details.honest_faults > 0, "faults are modelled");
    assert_eq!(r.honest_quarantined, 0);
    assert!(r.replicas_per_task < 1.5, "{r:?}");
}

#[test]
fn cells_are_deterministic_and_json_has_exactly_the_promised_fields() {
    let cfg = ByzantineConfig {
        hosts: 100,
        tasks: 3000,
        submitters: 3,
        ..Default::default()
    };
    let a = byzantine::run_cell(&cfg, 0.1, Strategy::Sleeper, Policy::Biop2p).unwrap();
    let b = byzantine::run_cell(&cfg, 0.1, Strategy::Sleeper, Policy::Biop2p).unwrap();
    assert_eq!(a, b);
    let v = serde_json::to_value(&a).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attackers_quarantined",
            "fraction",
            "honest_quarantined",
            "policy",
            "replicas_per_task",
            "strategy",
            "tasks",
            "worst_window_wrong_rate",
            "wrong_accepted_rate"
        ]
    );
    assert_eq!(v["policy"], "biop2p");
    assert_eq!(v["strategy"], "sleeper");
    let m = byzantine::run_matrix(&cfg, &[0.1], &[Strategy::Colluding], &[]).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[1].policy, Policy::Majority3);
    assert_eq!(m[2].policy, Policy::BoincAdaptive);
    assert!(byzantine::run_cell(&cfg, 1.5, Strategy::Sleeper, Policy::Biop2p).is_err());
}

// ---- Coordinator-level scenarios for layers 2 and 4 ----

fn peer(n: u64) -> PeerId {
    PeerId::from_u64(n)
}

fn truth(input: &Digest) -> Digest {
    let mut d = *input;
    d.0[31] ^= 0xFF;
    d
}

/// Drives a coordinator with `n` honest peers through `tasks` tasks so they
/// become trusted; `liar` (if any) returns receipts for the wrong input.
fn drive(layers: LayerSet, tasks: u64, liar: Option<PeerId>) -> (Coordinator, u64) {
    let cfg = SecurityConfig {
        layers,
        ..Default::default()
    };
    let mut c = Coordinator::new(cfg).unwrap();
    for n in 0..20 {
        c.handle(
            0,
            Event::PeerJoined {
                peer: peer(n),
                region: Region(n as u32),
                advertised_fuel_per_ms: 1000,
            },
        )
        .unwrap();
    }
    let mut wrong = 0;
    for t in 0..tasks {
        let now = t * 10 + 10;
        let input = Digest::from_u64(1_000_000 + t);
        let spec = TaskSpec {
            id: TaskId(t),
            module_hash: Digest::from_u64(1),
            input_hash: input,
            fuel_limit: 1 << 30,
        };
        c.handle(now, Event::TaskSubmitted(spec)).unwrap();
        let mut canary_n = 0u64;
        loop {
            let mut events = Vec::new();
            while let Some(a) = c.poll() {
                match a {
                    Action::Dispatch { peer: p, job, .. } => {
                        let bad = Some(p) == liar;
                        let claimed_input = if bad {
                            Digest::from_u64(7)
                        } else {
                            job.input_hash
                        };
                        let output = truth(&job.input_hash);
                        let output = if bad { truth(&claimed_input) } else { output };
                        events.push(Event::ResultReturned {
                            job_id: job.job_id,
                            receipt: ReceiptFacts {
                                job_id: job.job_id,
                                host: p,
                                module_hash: job.module_hash,
                                input_hash: claimed_input,
                                output_hash: output,
                                fuel_used: 5000,
                                peak_memory_bytes: 64,
                                wall_ms: 10,
                            },
                        });
                    }
                    Action::NeedCanaries { count } => {
                        for _ in 0..count {
                            canary_n += 1;
                            let input = Digest::from_u64(9_000_000 + t * 1000 + canary_n);
                            events.push(Event::CanaryAvailable(security::Canary {
                                module_hash: Digest::from_u64(1),
                                input_hash: input,
                                fuel_limit: 1 << 30,
                                output_hash: truth(&input),
                                fuel: 5000,
                                peak_memory_bytes: 64,
                            }));
                        }
                    }
                    Action::Accept { output, .. } if output != truth(&input) => {
                        wrong += 1;
                    }
                    _ => {}
                }
            }
            if events.is_empty() {
                break;
            }
            for e in events {
                let _ = c.handle(now, e);
            }
        }
    }
    (c, wrong)
}

#[test]
fn layer2_receipt_binding_stops_replayed_results() {
    // Peer 3 answers with a result for a different input (a replay).
    let (on, wrong_on) = drive(LayerSet::ALL, 400, Some(peer(3)));
    assert_eq!(wrong_on, 0);
    let rec = on.reputation().peer(&peer(3)).unwrap();
    assert!(rec.violations > 0);
    assert!(
        matches!(rec.state, PeerState::Quarantined | PeerState::Suspect),
        "{:?}",
        rec.state
    );
    // Without binding checks or replication the replay is simply believed.
    let off_layers = LayerSet::NONE;
    let (_, wrong_off) = drive(off_layers, 400, Some(peer(3)));
    assert!(wrong_off > 0);
}

#[test]
fn honest_peers_become_trusted_and_state_serialises() {
    let (c, wrong) = drive(LayerSet::ALL, 300, None);
    assert_eq!(wrong, 0);
    let trusted = c
        .reputation()
        .peers()
        .filter(|(_, r)| r.state == PeerState::Trusted)
        .count();
    // The working set grows to `min_trusted`, then newcomers are admitted
    // only now and then.
    assert!(
        trusted >= SecurityConfig::default().min_trusted,
        "{trusted}"
    );
    let json = serde_json::to_string(c.reputation()).unwrap();
    let back: security::Reputation = serde_json::from_str(&json).unwrap();
    assert_eq!(back.peer(&peer(1)), c.reputation().peer(&peer(1)));
}

#[test]
fn layer4_monitor_flags_a_flooding_peer() {
    for layers in [LayerSet::ALL, LayerSet::ALL.without(Layer::Monitoring)] {
        let (mut c, _) = drive(layers, 10, None);
        let mut now = 1000;
        for round in 0..60 {
            for n in 0..20 {
                let rate = if n == 5 && round >= 40 {
                    500.0
                } else {
                    10.0 + (n % 3) as f64
                };
                c.handle(
                    now,
                    Event::MessageRate {
                        peer: peer(n),
                        per_sec: rate,
                    },
                )
                .unwrap();
            }
            now += 1000;
            c.handle_timeout(now);
        }
        let state = c.reputation().peer(&peer(5)).unwrap().state;
        let others_ok = (0..20).filter(|&n| n != 5).all(|n| {
            !matches!(
                c.reputation().peer(&peer(n)).unwrap().state,
                PeerState::Suspect | PeerState::Quarantined
            )
        });
        assert!(others_ok);
        if layers == LayerSet::ALL {
            assert!(
                matches!(state, PeerState::Suspect | PeerState::Quarantined),
                "{state:?}"
            );
        } else {
            assert!(
                !matches!(state, PeerState::Suspect | PeerState::Quarantined),
                "{state:?}"
            );
        }
    }
}
