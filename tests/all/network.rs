//! Real hosts and submitters over loopback libp2p connections.

use std::sync::Arc;
use std::time::Duration;

use biop2p::config::NodeConfig;
use biop2p::identity::Identity;
use biop2p::node::client::JobParams;
use biop2p::node::{Client, HostHandle, HostOptions, VerifyError, spawn_host, verify_response};
use biop2p::proto::{
    InlineBlob, JobRequest, JobResponse, JobSpec, RefuseReason, SignedJob, SignedReceipt,
};
use biop2p::workloads;
use libp2p::{Multiaddr, PeerId};

use crate::guests;

fn loopback_all() -> Vec<Multiaddr> {
    [
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "/ip4/127.0.0.1/tcp/0/ws",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect()
}

/// Starts a host on loopback. mDNS is off: tests send nothing beyond
/// loopback (the LAN test runs in its own network namespace).
pub async fn start_host(dir: &std::path::Path, mut config: NodeConfig) -> HostHandle {
    config.network.mdns = false;
    spawn_host(HostOptions {
        config,
        data_dir: dir.to_path_buf(),
        listen: loopback_all(),
        faulty: Default::default(),
    })
    .await
    .expect("host starts")
}

pub(crate) async fn client() -> Client {
    let seed: [u8; 32] = rand::random();
    Client::with_limits(
        Identity::from_seed(seed),
        &biop2p::config::NetworkConfig::direct(),
        8 << 20,
        16 << 20,
    )
    .await
    .unwrap()
}

/// Submits with everything inline and waits for the result.
pub(crate) async fn run_job(
    c: &mut Client,
    peer: &PeerId,
    module: &[u8],
    input: &[u8],
    p: &JobParams,
) -> (SignedJob, JobResponse) {
    let job = c.make_job(module, input, p);
    let inline = vec![
        InlineBlob {
            hash: *blake3::hash(module).as_bytes(),
            data: module.to_vec(),
        },
        InlineBlob {
            hash: *blake3::hash(input).as_bytes(),
            data: input.to_vec(),
        },
    ];
    let r = c
        .request(
            peer,
            JobRequest::Submit {
                job: job.clone(),
                inline,
                wait: true,
            },
        )
        .await
        .unwrap();
    (job, r)
}

pub(crate) async fn assert_echo_works(c: &mut Client, peer: &PeerId) {
    let (job, r) = run_job(
        c,
        peer,
        workloads::ECHO,
        b"still serving",
        &JobParams::default(),
    )
    .await;
    let v = verify_response(&r, &job.id(), &job.verify().unwrap(), peer).expect("verified");
    assert_eq!(v.output.unwrap(), b"still serving");
}

fn refused(r: &JobResponse) -> RefuseReason {
    match r {
        JobResponse::Refused { reason, .. } => *reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_over_tcp_quic_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    for proto in ["tcp", "quic-v1", "ws"] {
        let addr = host
            .addr(proto)
            .unwrap_or_else(|| panic!("{proto} address"));
        let mut c = client().await;
        let peer = c.connect(&addr).await.unwrap();
        assert_eq!(peer, host.peer_id);
        let input = format!("over {proto}");
        let (job, r) = run_job(
            &mut c,
            &peer,
            workloads::ECHO,
            input.as_bytes(),
            &JobParams::default(),
        )
        .await;
        let v = verify_response(&r, &job.id(), &job.verify().unwrap(), &peer).unwrap();
        assert_eq!(v.output.unwrap(), input.as_bytes());
        assert_eq!(v.receipt.host_peer_id(), Some(host.peer_id));
        assert!(v.receipt.fuel_used > 0);
        assert_eq!(v.receipt.price, 1, "1 per Mfuel, rounded up");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_are_refused_with_their_reason_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = client().await;
    let peer = c.connect(&host.addr("tcp").unwrap()).await.unwrap();
    let p = JobParams::default();

    // Forged signature.
    let mut job = c.make_job(workloads::ECHO, b"x", &p);
    job.signature[5] ^= 0x40;
    let r = c
        .request(
            &peer,
            JobRequest::Submit {
                job,
                inline: vec![],
                wait: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused(&r), RefuseReason::BadSignature);
    assert_echo_works(&mut c, &peer).await;

    // Expired, and an expiry at the end of time (no overflow in the check).
    let good = c.make_job(workloads::ECHO, b"x", &p);
    for expires_at in [biop2p::store::unix_now() - 3600, u64::MAX] {
        let mut spec: JobSpec = good.verify().unwrap();
        spec.expires_at = expires_at;
        let job = SignedJob::sign(&spec, &c.identity().signing);
        let r = c
            .request(
                &peer,
                JobRequest::Submit {
                    job,
                    inline: vec![],
                    wait: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            refused(&r),
            RefuseReason::Expired,
            "expires_at {expires_at}"
        );
        assert_echo_works(&mut c, &peer).await;
    }

    // Replayed: the same job twice, and another job reusing a nonce.
    let (job, r) = run_job(&mut c, &peer, workloads::ECHO, b"once", &p).await;
    assert!(matches!(r, JobResponse::Done { .. }));
    let r = c
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
    assert_eq!(refused(&r), RefuseReason::Replayed);
    let mut spec = job.verify().unwrap();
    spec.fuel += 1;
    let other = SignedJob::sign(&spec, &c.identity().signing);
    let r = c
        .request(
            &peer,
            JobRequest::Submit {
                job: other,
                inline: vec![],
                wait: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused(&r), RefuseReason::Replayed);

    // Price ceiling below the host's price.
    let cheap = JobParams {
        max_price_per_mfuel: 0,
        ..p.clone()
    };
    let (_, r) = run_job(&mut c, &peer, workloads::ECHO, b"x", &cheap).await;
    assert_eq!(refused(&r), RefuseReason::PriceTooLow);

    // Over the host's limits.
    let greedy = JobParams {
        memory_bytes: 64 << 30,
        ..p.clone()
    };
    let (_, r) = run_job(&mut c, &peer, workloads::ECHO, b"x", &greedy).await;
    assert_eq!(refused(&r), RefuseReason::TooLarge);

    // An oversized message: 3 MiB inline, over the host's request limit.
    let big = vec![7u8; 3 << 20];
    let (_, r) = run_job(&mut c, &peer, workloads::ECHO, &big, &p).await;
    assert_eq!(refused(&r), RefuseReason::TooLarge);
    assert_echo_works(&mut c, &peer).await;

    // An inline blob whose bytes do not match its hash.
    let job = c.make_job(workloads::ECHO, b"abc", &p);
    let inline = vec![InlineBlob {
        hash: *blake3::hash(b"abc").as_bytes(),
        data: b"abd".to_vec(),
    }];
    let r = c
        .request(
            &peer,
            JobRequest::Submit {
                job,
                inline,
                wait: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused(&r), RefuseReason::BlobMismatch);

    // A fetched blob whose bytes do not match its hash.
    let input = vec![1u8; 3 << 20];
    let job = c.make_job(workloads::ECHO, &input, &p);
    let mut wrong = input.clone();
    wrong[12345] = 2;
    c.offer_blob_as(*blake3::hash(&input).as_bytes(), Arc::new(wrong));
    c.offer_blob(Arc::new(workloads::ECHO.to_vec()));
    let r = c
        .request(
            &peer,
            JobRequest::Submit {
                job,
                inline: vec![],
                wait: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused(&r), RefuseReason::BlobMismatch);
    assert_echo_works(&mut c, &peer).await;

    // A module without the export a task needs: runs, fails, says why.
    let (job, r) = run_job(&mut c, &peer, guests::NO_START.as_bytes(), b"", &p).await;
    let v = verify_response(&r, &job.id(), &job.verify().unwrap(), &peer).unwrap();
    assert_eq!(v.failure.unwrap().0, "invalid_module");

    // A large input fetched in chunks (not inline) arrives intact.
    let input: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
    let job = c.make_job(workloads::ECHO, &input, &p);
    c.offer_blob(Arc::new(input.clone()));
    let r = c
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
    let v = verify_response(&r, &job.id(), &job.verify().unwrap(), &peer).unwrap();
    assert_eq!(v.output.unwrap(), input);

    assert_echo_works(&mut c, &peer).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_mismatched_receipts_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = client().await;
    let peer = c.connect(&host.addr("tcp").unwrap()).await.unwrap();
    let (job, r) = run_job(
        &mut c,
        &peer,
        workloads::ECHO,
        b"receipt",
        &JobParams::default(),
    )
    .await;
    let spec = job.verify().unwrap();
    assert!(verify_response(&r, &job.id(), &spec, &peer).is_ok());
    let JobResponse::Done {
        job_id,
        output,
        receipt,
    } = r
    else {
        panic!()
    };

    // Tampered output.
    let bad = JobResponse::Done {
        job_id,
        output: b"receipt!".to_vec(),
        receipt: receipt.clone(),
    };
    assert!(matches!(
        verify_response(&bad, &job.id(), &spec, &peer),
        Err(VerifyError::OutputMismatch)
    ));
    // Tampered receipt body (fuel) under the original signature.
    let mut body = receipt.verify().unwrap();
    body.fuel_used /= 2;
    let forged = SignedReceipt {
        body: postcard::to_stdvec(&body).unwrap(),
        signature: receipt.signature,
    };
    let bad = JobResponse::Done {
        job_id,
        output: output.clone(),
        receipt: forged,
    };
    assert!(matches!(
        verify_response(&bad, &job.id(), &spec, &peer),
        Err(VerifyError::Receipt(_))
    ));
    // Re-signed by another key: not the host we asked.
    let mallory = Identity::from_seed([42; 32]);
    let mut body = receipt.verify().unwrap();
    body.host_key = mallory.public_key();
    let resigned = SignedReceipt::sign(&body, &mallory.signing);
    let bad = JobResponse::Done {
        job_id,
        output: output.clone(),
        receipt: resigned,
    };
    assert!(matches!(
        verify_response(&bad, &job.id(), &spec, &peer),
        Err(VerifyError::WrongHost { .. })
    ));
    // A genuine receipt, but for another job.
    let other = c.make_job(workloads::ECHO, b"receipt", &JobParams::default());
    let good = JobResponse::Done {
        job_id,
        output,
        receipt,
    };
    assert!(matches!(
        verify_response(&good, &other.id(), &other.verify().unwrap(), &peer),
        Err(VerifyError::WrongJob { .. })
    ));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_job_stream_and_the_raw_port_is_survived() {
    use futures::StreamExt;
    use libp2p::request_response;
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let addr = host.addr("tcp").unwrap();

    // Raw bytes on the TCP port (no multistream-select, no Noise).
    let port = addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
        _ => None,
    });
    for junk in [
        vec![0u8; 10],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        (0..=255u8).cycle().take(100_000).collect(),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port.unwrap()))
            .await
            .unwrap();
        let _ = s.write_all(&junk).await;
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    }

    // A well-formed libp2p stream on /biop2p/job/1.0.0 carrying bytes that
    // are not a job request.
    type Garbage = biop2p::net::codec::Codec<Vec<u8>, JobResponse>;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::<Garbage>::with_codec(
                Garbage::new(biop2p::net::codec::Limits {
                    request: 1 << 20,
                    response: 1 << 20,
                }),
                [(
                    biop2p::net::JOB_PROTOCOL,
                    request_response::ProtocolSupport::Outbound,
                )],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .build();
    swarm.dial(addr.clone()).unwrap();
    let mut sent = false;
    let reason = loop {
        match swarm.select_next_some().await {
            libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. } if !sent => {
                sent = true;
                swarm
                    .behaviour_mut()
                    .send_request(&peer_id, biop2p::net::Inbound::Ok(vec![0xC8; 300]));
            }
            libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => break refused(&response),
            libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                error,
                ..
            }) => {
                panic!("garbage request failed instead of being refused: {error}")
            }
            _ => {}
        }
    };
    assert_eq!(reason, RefuseReason::Malformed);

    let mut c = client().await;
    let peer = c.connect(&addr).await.unwrap();
    assert_echo_works(&mut c, &peer).await;
    host.shutdown().await;
}

/// The input of a matmul job returning its checksum: `n`, `seed`, `reps`.
fn matmul_input(n: u32, seed: u32, reps: u32) -> Vec<u8> {
    [n, seed, reps, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// The checksum a correct run of [`matmul_input`] returns, computed natively.
fn matmul_checksum(n: u32, seed: u32) -> Vec<u8> {
    let n = n as usize;
    let (a, b) = matmul_kernel::make_inputs(n, seed);
    let mut c = vec![0.0; n * n];
    matmul_kernel::matmul(&a, &b, &mut c, n);
    matmul_kernel::checksum(&c).to_le_bytes().to_vec()
}

/// `shutdown` ends everything the host started and closes its database, so
/// the same data dir opens again at once in the same process: twenty
/// restarts, each stopping the host while detached jobs it durably accepted
/// are still queued or running (and while the rest of the suite runs beside
/// it). Afterwards every accepted job's result is collected and checked:
/// none was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restarts_twenty_times_on_one_data_dir_with_jobs_in_flight() {
    const ROUNDS: u32 = 20;
    const JOBS: u32 = 6;
    const N: u32 = 64;
    let dir = tempfile::tempdir().unwrap();
    // One submitter identity throughout, a fresh client per host run (the
    // old client's connection to the stopped host would take its requests).
    let seed: [u8; 32] = rand::random();
    let submitter = || async move {
        Client::with_limits(
            Identity::from_seed(seed),
            &biop2p::config::NetworkConfig::direct(),
            8 << 20,
            16 << 20,
        )
        .await
        .unwrap()
    };
    let mut accepted = Vec::new();
    for round in 0..ROUNDS {
        let host = start_host(dir.path(), NodeConfig::default()).await;
        let mut c = submitter().await;
        let peer = c.connect(&host.addr("tcp").unwrap()).await.unwrap();
        let mut sent = std::collections::HashMap::new();
        for k in 0..JOBS {
            let seed = round * JOBS + k;
            let input = matmul_input(N, seed, 40);
            let job = c.make_job(workloads::MATMUL, &input, &JobParams::default());
            let inline = [workloads::MATMUL, input.as_slice()]
                .iter()
                .map(|d| InlineBlob {
                    hash: *blake3::hash(d).as_bytes(),
                    data: d.to_vec(),
                })
                .collect();
            let rid = c.send(
                &peer,
                JobRequest::Submit {
                    job: job.clone(),
                    inline,
                    wait: false,
                },
            );
            sent.insert(rid, (seed, job));
        }
        // Stop as soon as half of them are acknowledged (durable): the rest
        // of the pipeline, and the accepted jobs themselves, are in flight.
        let mut answered = 0;
        while answered < JOBS / 2 {
            let (rid, r) = c.next_response().await;
            let sj = sent
                .remove(&rid)
                .expect("a response to this round's request");
            match r {
                Ok(JobResponse::Accepted { .. }) => accepted.push(sj),
                other => panic!("round {round}: expected Accepted, got {other:?}"),
            }
            answered += 1;
        }
        host.shutdown().await;
    }

    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = submitter().await;
    let peer = c.connect(&host.addr("tcp").unwrap()).await.unwrap();
    assert!(accepted.len() >= (ROUNDS * JOBS / 2) as usize);
    for (seed, job) in &accepted {
        let r = c
            .request(
                &peer,
                JobRequest::Fetch {
                    job_id: job.id(),
                    wait: true,
                },
            )
            .await
            .unwrap();
        let v = verify_response(&r, &job.id(), &job.verify().unwrap(), &peer)
            .unwrap_or_else(|e| panic!("job of seed {seed}: {e:?} ({r:?})"));
        assert_eq!(v.output.unwrap(), matmul_checksum(N, *seed), "seed {seed}");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_refused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = client().await;
    let peer = c.connect(&host.addr("tcp").unwrap()).await.unwrap();
    let (job, r) = run_job(
        &mut c,
        &peer,
        workloads::ECHO,
        b"once only",
        &JobParams::default(),
    )
    .await;
    assert!(matches!(r, JobResponse::Done { .. }));
    host.shutdown().await;

    let host = start_host(dir.path(), NodeConfig::default()).await;
    assert_eq!(host.peer_id, peer, "the identity survives a restart");
    let mut c2 = client().await;
    let peer = c2.connect(&host.addr("tcp").unwrap()).await.unwrap();
    let inline = vec![InlineBlob {
        hash: *blake3::hash(b"once only").as_bytes(),
        data: b"once only".to_vec(),
    }];
    let r = c2
        .request(
            &peer,
            JobRequest::Submit {
                job: job.clone(),
                inline,
                wait: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused(&r), RefuseReason::Replayed);
    // Its result is still there, for its submitter only.
    let fetch = JobRequest::Fetch {
        job_id: job.id(),
        wait: false,
    };
    let r = c2.request(&peer, fetch.clone()).await.unwrap();
    assert_eq!(refused(&r), RefuseReason::NotYours);
    // The submitter, with the same client as before the restart: its
    // connection to the first run of the host is dead, and `connect` must
    // see that rather than trust it (the request would fail on it).
    let peer = c.connect(&host.addr("tcp").unwrap()).await.unwrap();
    let r = c.request(&peer, fetch).await.unwrap();
    let v = verify_response(&r, &job.id(), &job.verify().unwrap(), &peer).unwrap();
    assert_eq!(v.output.unwrap(), b"once only");
    host.shutdown().await;
}
