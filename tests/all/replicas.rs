//! `submit --replicas`: the same job on several real hosts, accepted on a
//! strict majority, with a lying host reported.

use crate::cli::biop2p;
use crate::durability::{Killer, start_host, start_host_with};

#[test]
fn a_faulty_replica_is_outvoted_and_reported() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let state = tempfile::tempdir().unwrap();
    let (h0, a0, _e0) = start_host(dirs[0].path(), "/ip4/127.0.0.1/tcp/0");
    let (h1, a1, _e1) = start_host(dirs[1].path(), "/ip4/127.0.0.1/tcp/0");
    let (h2, a2, _e2) = start_host_with(dirs[2].path(), "/ip4/127.0.0.1/tcp/0", &["--faulty"]);
    let _hosts = [Killer(h0), Killer(h1), Killer(h2)];
    let faulty_peer = a2.split("/p2p/").nth(1).unwrap().to_string();
    let input = state.path().join("in.txt");
    std::fs::write(&input, b"replicate me").unwrap();
    let out = biop2p()
        .args(["submit", "builtin:echo", "--replicas", "3", "--json"])
        .args(["--peer", &a0, "--peer", &a1, "--peer", &a2, "--input"])
        .arg(&input)
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["accepted_replicas"], 2);
    assert_eq!(v["receipts"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["output_hash"],
        blake3::hash(b"replicate me").to_hex().as_str()
    );
    let dis = v["disagreeing"].as_array().unwrap();
    assert_eq!(dis.len(), 1);
    assert_eq!(dis[0]["host"], faulty_peer.as_str());

    // A price ceiling below every host's price: refused everywhere.
    let out = biop2p()
        .args([
            "submit",
            "builtin:echo",
            "--replicas",
            "3",
            "--max-price",
            "0",
        ])
        .args(["--peer", &a0, "--peer", &a1, "--peer", &a2, "--input"])
        .arg(&input)
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("price_too_low"));
}
