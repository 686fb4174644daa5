//! Every bound a host keeps per peer, pushed past by a real hostile peer
//! over loopback: the host refuses with a stable reason and still serves an
//! honest submitter on another connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use biop2p::config::NodeConfig;
use biop2p::node::Client;
use biop2p::node::client::JobParams;
use biop2p::node::client::RequestId;
use biop2p::proto::{JobRequest, JobResponse, JobSpec, RefuseReason, SignedJob};
use biop2p::workloads;
use libp2p::PeerId;

use crate::network::{assert_echo_works, client, start_host};

/// Sends a job whose module and input the client only offers (nothing
/// inline), so the host must fetch them.
fn send_fetched(c: &mut Client, peer: &PeerId, input: Vec<u8>) -> RequestId {
    let input = Arc::new(input);
    c.offer_blob(Arc::new(workloads::ECHO.to_vec()));
    c.offer_blob(input.clone());
    let job = c.make_job(workloads::ECHO, &input, &JobParams::default());
    c.send(
        peer,
        JobRequest::Submit {
            job,
            inline: vec![],
            wait: true,
        },
    )
}

/// Collects the answers to `ids`, at most `within` from now.
async fn answers(
    c: &mut Client,
    ids: &[RequestId],
    within: Duration,
) -> HashMap<RequestId, JobResponse> {
    let mut got = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < ids.len() {
        let (id, r) = tokio::time::timeout_at(deadline, c.next_response())
            .await
            .expect("every request is answered in time");
        if ids.contains(&id) {
            got.insert(id, r.expect("an answer, not a transport error"));
        }
    }
    got
}

fn refusal(r: &JobResponse) -> (RefuseReason, &str) {
    match r {
        JobResponse::Refused { reason, message } => (*reason, message.as_str()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_submitter_is_bounded_in_jobs_and_bytes_and_its_fetches_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::default();
    cfg.resources.max_queue_per_peer = 2;
    cfg.resources.max_held_bytes_per_peer = 1 << 20;
    cfg.security.fetch_deadline_secs = 2;
    let host = start_host(dir.path(), cfg).await;
    let addr = host.addr("tcp").unwrap();

    let mut bad = client().await;
    let peer = bad.connect(&addr).await.unwrap();
    bad.withhold_blobs(true);

    // A job that alone holds more than a submitter may is too large.
    let big = send_fetched(&mut bad, &peer, vec![7; (1 << 20) + 1]);
    let r = answers(&mut bad, &[big], Duration::from_secs(10)).await;
    let (reason, msg) = refusal(&r[&big]);
    assert_eq!(reason, RefuseReason::TooLarge, "{msg}");

    // Two stalled jobs of 600 KiB: the second passes the byte quota.
    let a = send_fetched(&mut bad, &peer, vec![1; 600 << 10]);
    let b = send_fetched(&mut bad, &peer, vec![2; 600 << 10]);
    let r = answers(&mut bad, &[b], Duration::from_secs(10)).await;
    let (reason, msg) = refusal(&r[&b]);
    assert_eq!(reason, RefuseReason::Busy, "{msg}");
    assert!(msg.contains("bytes here"), "{msg}");

    // Small stalled jobs: the third passes the job quota.
    let c1 = send_fetched(&mut bad, &peer, b"one".to_vec());
    let c2 = send_fetched(&mut bad, &peer, b"two".to_vec());
    let r = answers(&mut bad, &[c2], Duration::from_secs(10)).await;
    let (reason, msg) = refusal(&r[&c2]);
    assert_eq!(reason, RefuseReason::Busy, "{msg}");
    assert!(msg.contains("jobs queued here"), "{msg}");

    // Meanwhile an honest submitter on its own connection is served.
    let mut good = client().await;
    let gpeer = good.connect(&addr).await.unwrap();
    assert_echo_works(&mut good, &gpeer).await;

    // The stalled fetches hit their deadline: blob_unavailable, and their
    // room is given back.
    let r = answers(&mut bad, &[a, c1], Duration::from_secs(20)).await;
    for id in [a, c1] {
        let (reason, msg) = refusal(&r[&id]);
        assert_eq!(reason, RefuseReason::BlobUnavailable, "{msg}");
        assert!(msg.contains("did not arrive in time"), "{msg}");
    }
    bad.withhold_blobs(false);
    let again = send_fetched(&mut bad, &peer, b"after the deadline".to_vec());
    let r = answers(&mut bad, &[again], Duration::from_secs(20)).await;
    assert!(
        matches!(&r[&again], JobResponse::Done { output, .. } if output == b"after the deadline"),
        "{:?}",
        r[&again]
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_sized_blobs_are_checked_not_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), NodeConfig::default()).await;
    let mut c = client().await;
    let peer = c.connect(&host.addr("tcp").unwrap()).await.unwrap();
    let good = c.make_job(workloads::ECHO, b"x", &JobParams::default());
    let submit = |job| JobRequest::Submit {
        job,
        inline: vec![],
        wait: true,
    };

    // A module of 0 bytes, and an input of 0 bytes under another hash.
    let mut spec: JobSpec = good.verify().unwrap();
    spec.module_size = 0;
    let r = c
        .request(&peer, submit(SignedJob::sign(&spec, &c.identity().signing)))
        .await
        .unwrap();
    assert_eq!(refusal(&r).0, RefuseReason::Malformed);
    let mut spec: JobSpec = good.verify().unwrap();
    spec.input_size = 0;
    let r = c
        .request(&peer, submit(SignedJob::sign(&spec, &c.identity().signing)))
        .await
        .unwrap();
    assert_eq!(refusal(&r).0, RefuseReason::BlobMismatch);

    // The empty input, fetched rather than inline, runs (it used to wait
    // for chunks that never come).
    c.offer_blob(Arc::new(workloads::ECHO.to_vec()));
    let job = c.make_job(workloads::ECHO, b"", &JobParams::default());
    let r = tokio::time::timeout(Duration::from_secs(30), c.request(&peer, submit(job)))
        .await
        .expect("answered")
        .unwrap();
    assert!(
        matches!(&r, JobResponse::Done { output, .. } if output.is_empty()),
        "{r:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_polling_too_fast_is_refused_busy_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::default();
    cfg.security.max_fetches_per_sec = 5;
    let host = start_host(dir.path(), cfg).await;
    let addr = host.addr("tcp").unwrap();
    let mut bad = client().await;
    let peer = bad.connect(&addr).await.unwrap();
    let ids: Vec<RequestId> = (0..40u8)
        .map(|i| {
            bad.send(
                &peer,
                JobRequest::Fetch {
                    job_id: [i; 32],
                    wait: false,
                },
            )
        })
        .collect();
    let r = answers(&mut bad, &ids, Duration::from_secs(20)).await;
    let busy = r
        .values()
        .filter(|r| {
            matches!(
                r,
                JobResponse::Refused {
                    reason: RefuseReason::Busy,
                    ..
                }
            )
        })
        .count();
    let unknown = r
        .values()
        .filter(|r| matches!(r, JobResponse::Unknown { .. }))
        .count();
    assert_eq!(busy + unknown, ids.len(), "{r:?}");
    // A burst of one second's worth, plus what refilled while they came.
    assert!((5..=10).contains(&unknown), "{unknown} answered");

    let mut good = client().await;
    let gpeer = good.connect(&addr).await.unwrap();
    let r = good
        .request(
            &gpeer,
            JobRequest::Fetch {
                job_id: [9; 32],
                wait: false,
            },
        )
        .await
        .unwrap();
    assert!(matches!(r, JobResponse::Unknown { .. }), "{r:?}");
    assert_echo_works(&mut good, &gpeer).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_are_bounded_per_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NodeConfig::default();
    cfg.network.max_connections_per_prefix = 2;
    let host = start_host(dir.path(), cfg).await;
    let addr = host.addr("tcp").unwrap();
    // Each of the first two is served once before the next dials: with
    // lazy protocol negotiation a dialer's `connect` can return before the
    // host has finished (and counted) its side, and the host counts
    // connections in the order their handshakes end there, not the order
    // they were dialed.
    let unknown = JobRequest::Fetch {
        job_id: [9; 32],
        wait: false,
    };
    let mut first = client().await;
    let peer = first.connect(&addr).await.unwrap();
    first.request(&peer, unknown.clone()).await.unwrap();
    let mut second = client().await;
    second.connect(&addr).await.unwrap();
    second.request(&peer, unknown.clone()).await.unwrap();
    // A third identity from the same /24 (127.0.0.0/24) is turned away:
    // before its handshake once the host has counted the others, or at the
    // end of it when the host was still finishing theirs. With lazy
    // protocol negotiation the dialer may think itself connected a moment
    // before the host's check closes the connection; either way, nothing is
    // served to it.
    let mut third = client().await;
    let served = match third.connect(&addr).await {
        Err(_) => false,
        Ok(p) => third.request(&p, unknown).await.is_ok(),
    };
    assert!(!served, "a third connection from one prefix was served");
    // Those already connected are served.
    assert_echo_works(&mut first, &peer).await;
    host.shutdown().await;
}

/// A bare libp2p peer over TCP with only the stream behaviour, to speak
/// the job stream's framing by hand.
fn stream_peer() -> libp2p::Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .build()
}

/// Asks for an unknown job on a raw job stream, as request `id`, and
/// returns the host's answer to that id.
async fn fetch_unknown(stream: &mut libp2p::Stream, id: u64) -> JobResponse {
    let fetch = JobRequest::Fetch {
        job_id: [3; 32],
        wait: false,
    };
    ask(stream, id, &fetch).await
}

/// Sends `request` on a raw job stream as request `id` and returns the
/// answer to that id.
async fn ask(stream: &mut libp2p::Stream, id: u64, request: &JobRequest) -> JobResponse {
    use futures::AsyncWriteExt;
    let mut frame = Vec::new();
    biop2p::net::job_stream::encode_frame(&mut frame, id, request, 1 << 20).unwrap();
    stream.write_all(&frame).await.unwrap();
    stream.flush().await.unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        biop2p::net::job_stream::read_frame(stream, 1 << 20),
    )
    .await
    .expect("answered")
    .unwrap()
    .expect("a frame");
    match answer {
        biop2p::net::job_stream::Frame::Body { id: got, body } => {
            assert_eq!(got, id);
            postcard::from_bytes(&body).unwrap()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_job_streams_are_bounded_and_closed_alone() {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::swarm::SwarmEvent;

    let dir = tempfile::tempdir().unwrap();
    let cfg = NodeConfig::default();
    let per_peer = cfg.network.max_connections_per_peer as usize;
    let host = start_host(dir.path(), cfg).await;
    let addr = host.addr("tcp").unwrap();

    // A raw peer that speaks the job stream's framing by hand.
    let mut swarm = stream_peer();
    let mut control = swarm.behaviour().new_control();
    swarm.dial(addr.clone()).unwrap();
    let peer = loop {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = swarm.select_next_some().await {
            break peer_id;
        }
    };
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let proto = biop2p::net::JOB_STREAM_PROTOCOL;
    // One request answered on each stream before the next is opened: the
    // host's stream acceptor holds one stream waiting at a time
    // (libp2p-stream drops a stream that arrives while one is still
    // waiting), so streams opened in a burst could be dropped before the
    // per-peer bound is what refuses them.
    let mut streams = Vec::new();
    for i in 0..per_peer {
        let mut s = control.open_stream(peer, proto.clone()).await.unwrap();
        let answer = fetch_unknown(&mut s, i as u64).await;
        assert!(matches!(answer, JobResponse::Unknown { .. }), "{answer:?}");
        streams.push(s);
    }
    // One stream more than a peer may have is closed at once.
    let mut extra = control.open_stream(peer, proto.clone()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf))
        .await
        .expect("the extra stream is closed, not left hanging");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // A frame too short to hold its id closes that stream only.
    // In one write: the host refuses the frame on reading its length and
    // closes the stream, so a second write could find it closed.
    let bad = &mut streams[0];
    let mut garbled = 5u32.to_le_bytes().to_vec();
    garbled.extend([0; 5]);
    bad.write_all(&garbled).await.unwrap();
    bad.flush().await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), bad.read(&mut buf))
        .await
        .expect("the garbled stream is closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // Another stream of the same peer still answers, by request id; a
    // hello is answered by the stream itself.
    let answer = fetch_unknown(&mut streams[1], 77).await;
    assert!(matches!(answer, JobResponse::Unknown { .. }), "{answer:?}");
    let answer = ask(&mut streams[1], 78, &JobRequest::Hello).await;
    assert!(matches!(answer, JobResponse::Hello), "{answer:?}");

    // And an honest submitter on its own connection is served.
    let mut c = client().await;
    let p = c.connect(&addr).await.unwrap();
    assert_echo_works(&mut c, &p).await;
    driver.abort();
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stream_dropped_before_its_hello_is_opened_again() {
    use biop2p::net::job_stream::{Frame, encode_frame, read_frame, write_frames};
    use futures::StreamExt;
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;

    // A peer speaking the job stream by hand, which drops the first stream
    // it is given, as libp2p-stream does with one that arrives while
    // another still waits to be taken, and serves the next.
    let mut swarm = stream_peer();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address.with(Protocol::P2p(*swarm.local_peer_id()));
        }
    };
    let mut incoming = swarm
        .behaviour()
        .new_control()
        .accept(biop2p::net::JOB_STREAM_PROTOCOL)
        .unwrap();
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let server = tokio::spawn(async move {
        let (_, first) = incoming.next().await.unwrap();
        drop(first);
        let (_, mut stream) = incoming.next().await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let Some(Frame::Body { id, body }) = read_frame(&mut stream, 1 << 20).await.unwrap()
            else {
                panic!("no request frame");
            };
            let request: JobRequest = postcard::from_bytes(&body).unwrap();
            let answer = match &request {
                JobRequest::Hello => JobResponse::Hello,
                JobRequest::Fetch { job_id, .. } => JobResponse::Unknown { job_id: *job_id },
                other => panic!("unexpected {other:?}"),
            };
            seen.push(request);
            let mut buf = Vec::new();
            encode_frame(&mut buf, id, &answer, 1 << 20).unwrap();
            write_frames(&mut stream, &buf).await.unwrap();
        }
        seen
    });

    let mut c = client().await;
    let peer = c.connect(&addr).await.unwrap();
    let answer = c
        .request(
            &peer,
            JobRequest::Fetch {
                job_id: [5; 32],
                wait: false,
            },
        )
        .await
        .expect("the request went on the stream opened again");
    assert!(
        matches!(answer, JobResponse::Unknown { job_id } if job_id == [5; 32]),
        "{answer:?}"
    );
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the peer saw both requests")
        .unwrap();
    assert!(
        matches!(
            seen.as_slice(),
            [JobRequest::Hello, JobRequest::Fetch { .. }]
        ),
        "{seen:?}"
    );
    driver.abort();
}
