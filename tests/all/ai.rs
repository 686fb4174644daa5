//! AI work on real data (issue #14): read-only job data, the digits
//! workload on the real scikit-learn digits, and federated training that
//! survives a poisoner.
//!
//! The data comes from `scripts/fetch-ai-data.sh` (CI runs it before the
//! tests). A test that needs it and finds it absent fails, naming the
//! script; it never skips.

use std::sync::Arc;

use biop2p::ai::digits::{Digits, encode_samples};
use biop2p::config::NodeConfig;
use biop2p::node::client::JobParams;
use biop2p::node::{Client, verify_response};
use biop2p::proto::{DataRef, JobRequest, JobResponse, RefuseReason};
use biop2p::sandbox::{DataSource, Sandbox, Task, TaskData, WasmModule};
use biop2p::workloads;
use libp2p::PeerId;

use crate::cli::biop2p;
use crate::network::{client, start_host};

/// A WASI p1 command that tries to open `/data/weights` for writing (with
/// truncation) and to create `/data/new.txt`, then reads `/data/weights`.
/// Its output: the two attempts' errnos and the read's, then up to 4 KiB of
/// the file.
const DATA_PROBE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "weights")
  (data (i32.const 120) "new.txt")
  (func (export "_start") (local $fd i32) (local $n i32)
    ;; open for writing with O_TRUNC (8), rights fd_write (64)
    (i32.store8 (i32.const 1000) (call $path_open (i32.const 3) (i32.const 1)
      (i32.const 100) (i32.const 7) (i32.const 8) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 500)))
    ;; create (O_CREAT = 1)
    (i32.store8 (i32.const 1001) (call $path_open (i32.const 3) (i32.const 1)
      (i32.const 120) (i32.const 7) (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 500)))
    ;; open for reading, rights fd_read (2)
    (i32.store8 (i32.const 1002) (call $path_open (i32.const 3) (i32.const 1)
      (i32.const 100) (i32.const 7) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 504)))
    (local.set $fd (i32.load (i32.const 504)))
    (i32.store (i32.const 0) (i32.const 1003))
    (i32.store (i32.const 4) (i32.const 4096))
    (drop (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
    (local.set $n (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 1000))
    (i32.store (i32.const 4) (i32.add (i32.const 3) (local.get $n)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"#;

fn digits() -> Digits {
    Digits::load().unwrap_or_else(|e| panic!("{e}"))
}

fn sandbox(dir: &std::path::Path) -> Sandbox {
    biop2p::node::open_sandbox(dir).unwrap()
}

/// Asserts the probe's output: both writes refused, the read fine, and the
/// bytes read are the start of `want`.
fn assert_probe(out: &[u8], want: &[u8]) {
    assert!(out.len() >= 3, "probe output {out:?}");
    assert_ne!(out[0], 0, "opening /data/weights for writing succeeded");
    assert_ne!(out[1], 0, "creating /data/new.txt succeeded");
    assert_eq!(out[2], 0, "reading /data/weights failed: errno {}", out[2]);
    assert_eq!(&out[3..], &want[..want.len().min(4096)]);
}

#[test]
fn data_is_mounted_read_only_and_its_hash_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox(&dir.path().join("sb"));
    let file = dir.path().join("weights.bin");
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let hash = *blake3::hash(&bytes).as_bytes();
    for source in [
        DataSource::File(file.clone()),
        DataSource::Bytes(Arc::new(bytes.clone())),
    ] {
        let mut task = Task::new(WasmModule::new(DATA_PROBE.as_bytes()), Vec::new());
        task.data = vec![TaskData {
            name: "weights".into(),
            hash,
            source,
        }];
        let r = sb.run(&task);
        assert_probe(&r.outcome.unwrap(), &bytes);
        assert_eq!(r.data_hashes, vec![hash]);
    }
    // The host file is untouched, and nothing is left mounted.
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    let mounts = dir.path().join("sb").join("data-mounts");
    assert_eq!(std::fs::read_dir(&mounts).unwrap().count(), 0);

    // Bytes that do not match the hash never reach the guest.
    let mut task = Task::new(WasmModule::new(DATA_PROBE.as_bytes()), Vec::new());
    task.data = vec![TaskData {
        name: "weights".into(),
        hash: [7; 32],
        source: DataSource::File(file),
    }];
    let e = sb.run(&task).outcome.unwrap_err();
    assert!(e.to_string().contains("does not hash to"), "{e}");
}

fn data_job(c: &mut Client, data: &[DataRef]) -> (biop2p::proto::SignedJob, JobRequest) {
    let module = DATA_PROBE.as_bytes();
    let p = JobParams {
        data: data.to_vec(),
        ..JobParams::default()
    };
    let job = c.make_job(module, b"", &p);
    c.offer_blob(Arc::new(module.to_vec()));
    let req = JobRequest::Submit {
        job: job.clone(),
        inline: vec![],
        wait: true,
    };
    (job, req)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_data_is_fetched_once_mounted_read_only_and_in_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = client().await;
    let peer = c.connect(&host.addrs[0]).await.unwrap();
    // 3 MiB: fetched in chunks, never inline.
    let bytes: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let r = c.offer_data("weights", Arc::new(bytes.clone()));
    assert_eq!(r.hash, *blake3::hash(&bytes).as_bytes());
    let (job, req) = data_job(&mut c, std::slice::from_ref(&r));
    let resp = c.request(&peer, req).await.unwrap();
    let v = verify_response(&resp, &job.id(), &job.verify().unwrap(), &peer).unwrap();
    assert_probe(&v.output.unwrap(), &bytes);
    assert_eq!(v.receipt.data_hashes, vec![r.hash]);

    // A second job on the same data: the host has it, so it needs nothing
    // from a submitter that now serves no blob at all.
    c.withhold_blobs(true);
    let (job, req) = data_job(&mut c, std::slice::from_ref(&r));
    let resp = c.request(&peer, req).await.unwrap();
    let v = verify_response(&resp, &job.id(), &job.verify().unwrap(), &peer).unwrap();
    assert_probe(&v.output.unwrap(), &bytes);
    c.withhold_blobs(false);

    // A bad name is refused before anything is fetched.
    let bad = DataRef {
        name: "../escape".into(),
        ..r.clone()
    };
    let (_, req) = data_job(&mut c, &[bad]);
    match c.request(&peer, req).await.unwrap() {
        JobResponse::Refused { reason, message } => {
            assert_eq!(reason, RefuseReason::Malformed);
            assert!(message.contains("../escape"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_blob_whose_bytes_do_not_match_is_refused_blob_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = client().await;
    let peer = c.connect(&host.addrs[0]).await.unwrap();
    let bytes = vec![5u8; 1 << 20];
    let mut wrong = bytes.clone();
    wrong[4321] = 6;
    let r = DataRef {
        name: "weights".into(),
        hash: *blake3::hash(&bytes).as_bytes(),
        size: bytes.len() as u64,
    };
    c.offer_blob_as(r.hash, Arc::new(wrong));
    let (_, req) = data_job(&mut c, &[r]);
    match c.request(&peer, req).await.unwrap() {
        JobResponse::Refused { reason, .. } => assert_eq!(reason, RefuseReason::BlobMismatch),
        other => panic!("expected blob_mismatch, got {other:?}"),
    }
    assert_eq!(RefuseReason::BlobMismatch.as_str(), "blob_mismatch");
    host.shutdown().await;
}

async fn train_on(c: &mut Client, peer: &PeerId, data: &DataRef, args: &[&str]) -> Vec<u8> {
    let p = JobParams {
        args: args.iter().map(|s| s.to_string()).collect(),
        data: vec![data.clone()],
        ..JobParams::default()
    };
    let job = c.make_job(workloads::DIGITS, b"", &p);
    c.offer_blob(Arc::new(workloads::DIGITS.to_vec()));
    let resp = c
        .request(
            peer,
            JobRequest::Submit {
                job: job.clone(),
                inline: vec![],
                wait: true,
            },
        )
        .await
        .unwrap();
    let v = verify_response(&resp, &job.id(), &job.verify().unwrap(), peer).unwrap();
    assert_eq!(v.receipt.data_hashes, vec![data.hash]);
    v.output
        .unwrap_or_else(|| panic!("training failed: {:?}", v.failure))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_training_is_bit_identical_on_two_hosts_and_reaches_97_percent() {
    let d = digits();
    let dir = tempfile::tempdir().unwrap();
    let a = start_host(&dir.path().join("a"), NodeConfig::default()).await;
    let b = start_host(&dir.path().join("b"), NodeConfig::default()).await;
    let mut c = client().await;
    let pa = c.connect(&a.addrs[0]).await.unwrap();
    let pb = c.connect(&b.addrs[0]).await.unwrap();
    let train = c.offer_data("train", Arc::new(encode_samples(&d.train)));
    let args = ["train", "--epochs", "30", "--lr", "0.05", "--seed", "1"];
    let wa = train_on(&mut c, &pa, &train, &args).await;
    let wb = train_on(&mut c, &pb, &train, &args).await;
    assert_eq!(
        blake3::hash(&wa),
        blake3::hash(&wb),
        "two hosts trained the same task to different weights"
    );
    a.shutdown().await;
    b.shutdown().await;

    // Centralised test accuracy on the held-back split, in a local sandbox.
    let sb = sandbox(&dir.path().join("sb"));
    let test = encode_samples(&d.test);
    let mut task = Task::new(WasmModule::new(workloads::DIGITS), wa);
    task.args = vec!["infer".into()];
    task.data = vec![TaskData {
        name: "test".into(),
        hash: *blake3::hash(&test).as_bytes(),
        source: DataSource::Bytes(Arc::new(test)),
    }];
    // The sandbox's file system blocks: off the runtime's threads.
    let out = tokio::task::spawn_blocking(move || sb.run(&task).outcome)
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let acc = v["accuracy"].as_f64().unwrap();
    assert_eq!(v["samples"], 360);
    assert!(acc >= 0.97, "centralised test accuracy {acc} < 97%");
}

#[test]
fn federated_demo_resists_a_poisoner_and_reports_its_json() {
    // Fail with the script's name when the data is absent.
    digits();
    let out = biop2p()
        .args(["demo", "--federated", "--poison", "1", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo --federated failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["aggregator"], "FedMedian");
    let rounds = v["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 10);
    for (i, r) in rounds.iter().enumerate() {
        assert_eq!(r["round"], i as u64 + 1);
        assert!(r["accuracy_robust"].as_f64().is_some() && r["accuracy_fedavg"].as_f64().is_some());
    }
    let robust = v["final_accuracy_robust"].as_f64().unwrap();
    let fedavg = v["final_accuracy_fedavg"].as_f64().unwrap();
    assert!(robust >= 0.95, "robust {robust}");
    assert!(
        fedavg < robust - 0.2,
        "FedAvg {fedavg} was not hurt by the poisoner"
    );
    // Honest replicas agree bit for bit; the poisoner's differ and it is
    // caught, and only it.
    assert_eq!(v["replicas_identical_honest"], 1.0);
    let identical = v["replicas_identical"].as_f64().unwrap();
    assert!(identical < 1.0 && identical > 0.0, "{identical}");
    assert_eq!(v["caught"], v["poisoners"]);
    assert_eq!(v["poisoners"].as_array().unwrap().len(), 1);
    let receipts = v["receipts"].as_array().unwrap();
    // 10 rounds × (5 + 5 training tasks + 2 replicas).
    assert_eq!(receipts.len(), 120);
    assert!(
        receipts
            .iter()
            .all(|r| r["data_hashes"].as_array().unwrap().len() == 1)
    );
}
