//! Behaviour tests: each role changes a decision, driven only by messages and `now`.

use super::*;

fn cand(id: u32, capacity: f64) -> Candidate {
    Candidate {
        id: NodeId(id),
        capacity,
        joined_at: 0,
        tier: 1,
    }
}

#[test]
fn thermal_learns_the_fast_host_from_completions() {
    let mut t = ThermalBehavior::new(ThermalConfig::default(), 1);
    let candidates = vec![(NodeId(1), 1.0), (NodeId(2), 1.0)];
    let mut fast = 0;
    for job in 0..400u64 {
        let now = job * 10;
        let out = t.handle_message(
            NodeMessage::PlaceRequest {
                job,
                class: TaskClass::Cpu,
                candidates: candidates.clone(),
            },
            NodeId(0),
            now,
        );
        let NodeMessage::Dispatch { host, .. } = out[0] else {
            panic!("no dispatch")
        };
        // Host 1 is 10x faster than host 2.
        let speed = if host == NodeId(1) { 2.0 } else { 0.2 };
        if job >= 200 && host == NodeId(1) {
            fast += 1;
        }
        t.handle_message(
            NodeMessage::Completed {
                job,
                host,
                class: TaskClass::Cpu,
                speed,
            },
            host,
            now + 5,
        );
    }
    assert!(fast > 150, "late placements on fast host: {fast}/200");
}

#[test]
fn caste_worker_specialises_and_declines_other_work() {
    let mut c = CasteBehavior::new(CasteConfig::default(), 2);
    for job in 0..20 {
        c.handle_message(
            NodeMessage::Completed {
                job,
                host: NodeId(0),
                class: TaskClass::Memory,
                speed: 1.0,
            },
            NodeId(0),
            0,
        );
    }
    let mut accepted = [0; 2];
    for job in 0..200 {
        for (i, class) in [TaskClass::Memory, TaskClass::Small]
            .into_iter()
            .enumerate()
        {
            if matches!(
                c.handle_message(
                    NodeMessage::Offer {
                        job,
                        class,
                        stimulus: 0.3
                    },
                    NodeId(9),
                    0
                )[0],
                NodeMessage::Accept { .. }
            ) {
                accepted[i] += 1;
            }
        }
    }
    assert!(accepted[0] > 180 && accepted[1] < 40, "{accepted:?}");
}

#[test]
fn young_bootstraps_from_trusted_elders_only() {
    let mut y = YoungBehavior::new(YoungConfig::default(), ThermalConfig::default(), 0);
    for (id, trust) in [(1, 0.9), (2, 0.9), (3, 0.1)] {
        y.handle_message(
            NodeMessage::TrustScore {
                node: NodeId(id),
                score: trust,
            },
            NodeId(100),
            0,
        );
        y.handle_message(
            NodeMessage::Join {
                candidate: cand(id, 1.0),
                experience: 500,
            },
            NodeId(id),
            0,
        );
    }
    let asks = y.update(1);
    let asked: Vec<NodeId> = asks
        .iter()
        .filter_map(|a| {
            if let BiologicalAction::Send { to, .. } = a {
                Some(*to)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(asked, vec![NodeId(1), NodeId(2)]);
    let mut elder = ThermalBehavior::new(ThermalConfig::default(), 3);
    for i in 0..30 {
        elder.handle_message(
            NodeMessage::Completed {
                job: i,
                host: NodeId(50),
                class: TaskClass::Cpu,
                speed: 2.0,
            },
            NodeId(50),
            10,
        );
    }
    let snap = elder
        .handle_message(NodeMessage::SnapshotRequest, NodeId(0), 10)
        .remove(0);
    for e in &asked {
        y.handle_message(snap.clone(), *e, 20);
    }
    assert!(y.bootstrapped());
    assert!(y.trails.level(NodeId(50), 20) > y.trails.level(NodeId(51), 20));
    assert!(matches!(
        y.update(21)[0],
        BiologicalAction::Bootstrapped { .. }
    ));
}

#[test]
fn havoc_replaces_lost_work_only_in_crisis() {
    let mut h = HavocBehavior::new(HavocConfig::default(), 100);
    h.handle_message(NodeMessage::HostLost { host: NodeId(1) }, NodeId(0), 1000);
    assert!(h.update(1000).is_empty(), "single loss: normal grace path");
    for i in 2..40 {
        h.handle_message(NodeMessage::HostLost { host: NodeId(i) }, NodeId(0), 1100);
    }
    let a = h.update(1100);
    assert!(matches!(
        a[0],
        BiologicalAction::Havoc(HavocAction::EnterCrisis { .. })
    ));
    assert!(
        a.iter()
            .filter(|x| matches!(x, BiologicalAction::Replace { .. }))
            .count()
            >= 30
    );
    let exit = h.update(10_000);
    assert!(
        exit.is_empty()
            || matches!(
                exit[0],
                BiologicalAction::Havoc(HavocAction::ExitCrisis { .. })
            )
    );
    let exit2 = h.update(20_000);
    assert!(!h.detector.in_crisis(), "{exit:?} {exit2:?}");
}

#[test]
fn memory_persists_on_schedule_and_restores() {
    let mut m = MemoryBehavior::new(1000);
    m.handle_message(
        NodeMessage::Completed {
            job: 1,
            host: NodeId(4),
            class: TaskClass::Cpu,
            speed: 3.0,
        },
        NodeId(4),
        10,
    );
    assert!(m.update(500).is_empty());
    let BiologicalAction::Persist(snap) = m.update(1000).remove(0) else {
        panic!()
    };
    let text = serde_json::to_string(&snap).unwrap();
    let restored = MemoryBehavior::restore(&serde_json::from_str(&text).unwrap(), 1000).unwrap();
    assert_eq!(restored.history.get(NodeId(4)).unwrap().speed, 3.0);
}

#[test]
fn trust_reweights_candidates() {
    let mut t = TrustBehavior::default();
    t.handle_message(
        NodeMessage::TrustScore {
            node: NodeId(1),
            score: 1.0,
        },
        NodeId(0),
        0,
    );
    let out = t.handle_message(
        NodeMessage::PlaceRequest {
            job: 1,
            class: TaskClass::Small,
            candidates: vec![(NodeId(1), 1.0), (NodeId(2), 1.0)],
        },
        NodeId(0),
        0,
    );
    let NodeMessage::PlaceRequest { candidates, .. } = &out[0] else {
        panic!()
    };
    assert!(candidates[0].1 > 5.0 * candidates[1].1);
}

#[test]
fn bravo_reelects_when_leader_leaves_and_reports_summary() {
    let mut b = LeaderBehavior::new(
        Level::Bravo,
        NodeId(2),
        Some(NodeId(99)),
        ElectionConfig::default(),
        1000,
    );
    for (id, c) in [(1, 3.0), (2, 5.0), (3, 9.0)] {
        b.handle_message(
            NodeMessage::Join {
                candidate: cand(id, c),
                experience: 0,
            },
            NodeId(id),
            0,
        );
    }
    assert_eq!(b.election.leader(), Some(NodeId(3)));
    b.handle_message(NodeMessage::HostLost { host: NodeId(3) }, NodeId(3), 500);
    assert_eq!(b.election.leader(), Some(NodeId(2)));
    b.handle_message(
        NodeMessage::Summary {
            group: NodeId(7),
            summary: GroupSummary {
                hosts: 4,
                slots: 8,
                backlog: 1,
                speed: 20.0,
                price: 1.0,
            },
        },
        NodeId(7),
        600,
    );
    let acts = b.update(1000);
    assert!(
        acts.iter()
            .any(|a| matches!(a, BiologicalAction::Elected(e) if e.reason.contains("left")))
    );
    assert!(acts.iter().any(|a| matches!(
        a,
        BiologicalAction::Send {
            to: NodeId(99),
            msg: NodeMessage::Summary { .. }
        }
    )));
}

#[test]
fn role_switching_has_hysteresis_and_reasons() {
    let mut s = RoleSwitcher::new(SwitchConfig::default(), BiologicalRole::Caste, 0);
    let mut st = NetworkState {
        now: 20_000,
        experience: 1000,
        capacity_rank: 0.5,
        ..Default::default()
    };
    assert!(s.update(&st).is_none());
    st.lost_fraction = 0.2;
    let sw = s.update(&st).unwrap();
    assert_eq!(sw.to, BiologicalRole::Havoc);
    assert!(sw.reason.contains("lost 20%"));
    // Oscillating between 0.08 and 0.16 stays in Havoc (exit needs < 5%).
    for i in 0..20 {
        st.now += 100;
        st.lost_fraction = if i % 2 == 0 { 0.08 } else { 0.16 };
        assert!(s.update(&st).is_none());
    }
    st.lost_fraction = 0.0;
    assert_eq!(s.update(&st).unwrap().to, BiologicalRole::Caste);
    // Non-urgent switches wait for the dwell time: no flapping.
    st.capacity_rank = 0.9;
    assert!(s.update(&st).is_none());
    st.now += 10_000;
    let sw = s.update(&st).unwrap();
    assert_eq!(sw.to, BiologicalRole::Thermal);
    assert_eq!(s.log().len(), 3);
}

#[test]
fn every_behaviour_names_its_role_and_inspiration() {
    let bs: Vec<Box<dyn BiologicalBehavior>> = vec![
        Box::new(ThermalBehavior::new(ThermalConfig::default(), 0)),
        Box::new(CasteBehavior::new(CasteConfig::default(), 0)),
        Box::new(YoungBehavior::new(
            YoungConfig::default(),
            ThermalConfig::default(),
            0,
        )),
        Box::new(HavocBehavior::new(HavocConfig::default(), 10)),
        Box::new(MemoryBehavior::new(1000)),
        Box::new(TrustBehavior::default()),
        Box::new(LeaderBehavior::new(
            Level::Alpha,
            NodeId(0),
            None,
            ElectionConfig::default(),
            1000,
        )),
        Box::new(LeaderBehavior::new(
            Level::Bravo,
            NodeId(0),
            None,
            ElectionConfig::default(),
            1000,
        )),
        Box::new(LeaderBehavior::new(
            Level::Super,
            NodeId(0),
            None,
            ElectionConfig::default(),
            1000,
        )),
    ];
    let mut roles: Vec<BiologicalRole> = bs.iter().map(|b| b.role()).collect();
    roles.sort();
    let mut all = BiologicalRole::ALL.to_vec();
    all.sort();
    assert_eq!(roles, all);
    assert!(bs.iter().all(|b| !b.biological_inspiration().is_empty()));
    let st = NetworkState {
        now: 100_000,
        lost_fraction: 0.5,
        ..Default::default()
    };
    assert_eq!(bs[0].should_switch_role(&st), Some(BiologicalRole::Havoc));
}
