//! Sentence embeddings (issue #14): all-MiniLM-L6-v2 run by `builtin:embed`
//! in the real sandbox on real weights, against the same model code run
//! natively, locally and over the network.
//!
//! The model comes from `scripts/fetch-ai-data.sh` (CI runs it before the
//! tests). A test that needs it and finds it absent fails, naming the
//! script; it never skips.

use std::sync::Arc;

use biop2p::ai::embed::{self, ModelFiles, Native};
use biop2p::config::NodeConfig;
use biop2p::node::client::JobParams;
use biop2p::node::verify_response;
use biop2p::proto::JobRequest;
use biop2p::workloads;

use crate::network::{client, start_host};

/// 111 varied English sentences; the first two say the same thing.
const SENTENCES: &str = include_str!("../data/sentences.txt");

fn sentences() -> Vec<&'static str> {
    let s: Vec<&str> = SENTENCES.lines().collect();
    assert!(s.len() >= 100, "the fixture has {} sentences", s.len());
    s
}

fn files() -> ModelFiles {
    ModelFiles::locate().unwrap_or_else(|e| panic!("{e}"))
}

/// Every sandboxed embedding is within cosine 0.9999 of the native one.
fn assert_close(sandboxed: &[Vec<f32>], native: &[Vec<f32>], sentences: &[&str]) {
    assert_eq!(sandboxed.len(), native.len());
    for (i, (a, b)) in sandboxed.iter().zip(native).enumerate() {
        let c = embed::cosine(a, b);
        assert!(
            c >= 0.9999,
            "sentence {i} {:?}: cosine {c} between the sandbox and native",
            sentences[i]
        );
    }
}

#[test]
fn sandboxed_embeddings_match_the_native_model_and_make_sense() {
    let files = files();
    let s = sentences();
    let dir = tempfile::tempdir().unwrap();
    let sb = biop2p::node::open_sandbox(&dir.path().join("sb")).unwrap();
    let task = embed::task(&files, &s).unwrap();
    let hashes: Vec<[u8; 32]> = task.data.iter().map(|d| d.hash).collect();
    let r = sb.run(&task);
    assert_eq!(r.data_hashes, hashes);
    let out = r
        .outcome
        .unwrap_or_else(|e| panic!("the embed task failed: {}: {e}", e.kind()));
    let got = embed::decode(&out, s.len()).unwrap();
    let native = Native::load(&files).unwrap().embed(&s).unwrap();
    assert_close(&got, &native, &s);

    for v in &got {
        let norm: f64 = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    // "A man is playing a guitar." is nearer "Someone plays the guitar."
    // than any unrelated sentence of the set.
    assert_eq!(s[0], "A man is playing a guitar.");
    assert_eq!(s[1], "Someone plays the guitar.");
    let near = embed::cosine(&got[0], &got[1]);
    assert!(near > 0.6, "paraphrases only {near} alike");
    for (j, v) in got.iter().enumerate().skip(2) {
        // The set has another musician at a piano: related, still farther.
        let c = embed::cosine(&got[0], v);
        assert!(
            c < near,
            "{:?} ({c}) nearer than the paraphrase ({near})",
            s[j]
        );
    }
    let top = embed::top_k(&got[0], &got[1..], 1);
    assert_eq!(top[0].0, 0);

    // The same task again gives the same bits: replicas compare by hash.
    let again = sb.run(&task).outcome.unwrap();
    assert_eq!(blake3::hash(&again), blake3::hash(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_job_runs_over_the_network_with_the_model_as_job_data() {
    let files = files();
    let s: Vec<&str> = sentences().into_iter().take(12).collect();
    let (model, vocab) = files.read().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = client().await;
    let peer = c.connect(&host.addrs[0]).await.unwrap();
    let data = vec![
        c.offer_data("model", Arc::new(model)),
        c.offer_data("vocab", Arc::new(vocab)),
    ];
    let input = embed::input(&s).unwrap();
    let p = JobParams {
        data: data.clone(),
        fuel: embed::TASK_FUEL,
        memory_bytes: embed::TASK_MEMORY,
        ..JobParams::default()
    };
    let job = c.make_job(workloads::EMBED, &input, &p);
    c.offer_blob(Arc::new(workloads::EMBED.to_vec()));
    c.offer_blob(Arc::new(input));
    let resp = c
        .request(
            &peer,
            JobRequest::Submit {
                job: job.clone(),
                inline: vec![],
                wait: true,
            },
        )
        .await
        .unwrap();
    let v = verify_response(&resp, &job.id(), &job.verify().unwrap(), &peer).unwrap();
    assert_eq!(
        v.receipt.data_hashes,
        data.iter().map(|d| d.hash).collect::<Vec<_>>()
    );
    let out = v
        .output
        .unwrap_or_else(|| panic!("the embed job failed: {:?}", v.failure));
    host.shutdown().await;
    let got = embed::decode(&out, s.len()).unwrap();
    let native = tokio::task::spawn_blocking(move || Native::load(&files).unwrap().embed(&s))
        .await
        .unwrap()
        .unwrap();
    assert_close(&got, &native, &sentences());
}
