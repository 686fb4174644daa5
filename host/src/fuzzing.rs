//! Fuzz target bodies: one function per decoder that takes bytes from a
//! peer or from a file. Not an API.
//!
//! Each body feeds arbitrary bytes through the real decoder, exactly as the
//! host or the submitter would receive them, and checks what must hold for
//! any input: nothing panics, nothing allocates beyond the decoder's limit,
//! every loop ends, and whatever decodes re-encodes to the same value. The
//! same bodies run in two places:
//!
//! - `fuzz/` (`cargo +nightly fuzz run NAME`): libFuzzer, for long runs;
//! - `tests/all/fuzz.rs` (`cargo test --release`): a seed corpus of valid
//!   encodings, their mutations and random inputs, a bounded number of
//!   cases, on stable.
//!
//! A panic found here is a bug in the decoder: fix it there and add the
//! input to `fuzz/regressions/NAME/`, which the stable test replays.

use std::time::{Duration, UNIX_EPOCH};

use futures::executor::block_on;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec as _;

use crate::config::NodeConfig;
use crate::net::Inbound;
use crate::net::behaviour::{BLOB_LIMITS, job_limits};
use crate::net::codec::{Codec, Limits};
use crate::net::job_stream::{Frame, encode_frame, read_frame};
use crate::node::peers::{PeerEntry, PeersFile, parse_peers_file};
use crate::node::trails::Trails;
use crate::proto::{
    Advert, BlobRequest, BlobResponse, InlineBlob, JobRequest, JobResponse, JobSpec, JobState,
    ReceiptBody, ReceiptOutcome, RefuseReason, SignedAdvert, SignedJob, SignedReceipt, VERSION,
};
use crate::store::{JobRecord, SubmitRecord};

/// A fuzz target: its name (the `fuzz/` binary and corpus folder) and body.
pub struct Target {
    /// Name of the `cargo fuzz` target.
    pub name: &'static str,
    /// The body: must not panic on any input.
    pub run: fn(&[u8]),
    /// Valid encodings to start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "job",
        run: job,
        seeds: job_seeds,
    },
    Target {
        name: "receipt",
        run: receipt,
        seeds: receipt_seeds,
    },
    Target {
        name: "advert",
        run: advert,
        seeds: advert_seeds,
    },
    Target {
        name: "job_stream",
        run: job_stream,
        seeds: job_stream_seeds,
    },
    Target {
        name: "codec",
        run: codec,
        seeds: codec_seeds,
    },
    Target {
        name: "blob_chunk",
        run: blob_chunk,
        seeds: blob_chunk_seeds,
    },
    Target {
        name: "config",
        run: config,
        seeds: config_seeds,
    },
    Target {
        name: "state_files",
        run: state_files,
        seeds: state_files_seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The limits a host with the default configuration uses on the job stream
/// and the job protocol.
fn default_job_limits() -> Limits {
    let c = NodeConfig::default();
    job_limits(c.security.max_inline_bytes, c.resources.max_output_bytes)
}

fn key(n: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
}

fn roundtrip<T>(v: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // Whatever decoded must encode, and decode again to an equal value
    // (compared through its encoding: some types hold f64 or no PartialEq).
    let a = postcard::to_stdvec(v).expect("a decoded value encodes");
    let back: T = postcard::from_bytes(&a).expect("an encoded value decodes");
    assert_eq!(postcard::to_stdvec(&back).expect("encodes"), a, "{v:?}");
}

// ---- job -----------------------------------------------------------------

/// Signed jobs as a host receives them: the signed envelope, then the spec
/// bytes inside it (signature checks come after decoding, so the spec
/// decoder sees any bytes a peer cares to sign).
pub fn job(data: &[u8]) {
    if let Ok(j) = postcard::from_bytes::<SignedJob>(data) {
        roundtrip(&j);
        let _ = j.id();
        if let Ok(spec) = j.verify() {
            assert_eq!(spec.version, VERSION);
        }
    }
    if let Ok(spec) = postcard::from_bytes::<JobSpec>(data) {
        roundtrip(&spec);
    }
    let unsigned = SignedJob {
        spec: data.to_vec(),
        signature: [0; 64],
    };
    assert!(unsigned.verify().is_err(), "an all-zero signature verified");
}

fn spec() -> JobSpec {
    JobSpec {
        version: VERSION,
        submitter: key(1).verifying_key().to_bytes(),
        module_hash: [1; 32],
        module_size: 100,
        input_hash: [2; 32],
        input_size: 6,
        args: vec!["--n".into(), "3".into()],
        fuel: 1_000_000,
        memory_bytes: 1 << 20,
        timeout_ms: Some(500),
        scratch: true,
        portable: false,
        max_price_per_mfuel: 5,
        nonce: [7; 16],
        expires_at: 1_800_000_000,
        data: Vec::new(),
    }
}

fn job_seeds() -> Vec<Vec<u8>> {
    let j = SignedJob::sign(&spec(), &key(1));
    vec![postcard::to_stdvec(&j).unwrap(), j.spec.clone()]
}

// ---- receipt -------------------------------------------------------------

/// Receipts as a submitter receives them, and the whole check of a `Done`
/// response against the job it answers.
pub fn receipt(data: &[u8]) {
    if let Ok(r) = postcard::from_bytes::<SignedReceipt>(data) {
        roundtrip(&r);
        if let Ok(body) = r.verify() {
            let _ = body.host_peer_id();
        }
        let spec = spec();
        let job = SignedJob::sign(&spec, &key(1));
        let host = seed_peer();
        let resp = JobResponse::Done {
            job_id: job.id(),
            output: b"output".to_vec(),
            receipt: r,
        };
        let _ = crate::node::verify_response(&resp, &job.id(), &spec, &host);
    }
    if let Ok(body) = postcard::from_bytes::<ReceiptBody>(data) {
        roundtrip(&body);
        let _ = body.host_peer_id();
    }
}

fn receipt_body() -> ReceiptBody {
    let host = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    ReceiptBody {
        version: VERSION,
        job_id: SignedJob::sign(&spec(), &key(1)).id(),
        host_key: host.verifying_key().to_bytes(),
        module_hash: [1; 32],
        input_hash: [2; 32],
        output_hash: *blake3::hash(b"output").as_bytes(),
        fuel_used: 1234,
        peak_memory_bytes: 65536,
        wall_us: 99,
        price: 1,
        timestamp: 1_700_000_000,
        arch: "x86_64".into(),
        outcome: ReceiptOutcome::Ok,
        data_hashes: Vec::new(),
    }
}

fn receipt_seeds() -> Vec<Vec<u8>> {
    let mut failed = receipt_body();
    failed.outcome = ReceiptOutcome::Error("trap".into());
    let signed = SignedReceipt::sign(&receipt_body(), &key(3));
    vec![
        postcard::to_stdvec(&signed).unwrap(),
        signed.body.clone(),
        postcard::to_stdvec(&SignedReceipt::sign(&failed, &key(3))).unwrap(),
    ]
}

// ---- advert --------------------------------------------------------------

/// Adverts as they arrive by gossip: size, envelope, body, signature,
/// bounds. The bounds are also checked on any body directly, since a
/// hostile host signs whatever it likes.
pub fn advert(data: &[u8]) {
    if let Ok(a) = SignedAdvert::decode_verified(data) {
        assert!(a.check().is_ok());
        let _ = a.peer_id();
    }
    if let Ok(a) = postcard::from_bytes::<Advert>(data) {
        roundtrip(&a);
        let _ = a.ttl_ms();
        let _ = a.peer_id();
        if a.check().is_ok() {
            assert!(a.ttl_ms() > 0 && a.workers > 0 && a.free_slots <= a.workers);
            // What `peers.json` shows of it, whatever the clocks say.
            let _ = PeerEntry::new(&libp2p::PeerId::random(), &a, false);
        }
    }
}

fn advert_body() -> Advert {
    Advert {
        version: VERSION,
        host_key: key(3).verifying_key().to_bytes(),
        addrs: vec!["/ip4/10.0.0.2/tcp/7450".into()],
        free_slots: 1,
        workers: 2,
        queue_room: 64,
        fuel_per_sec: 500_000_000,
        price_per_mfuel: 2,
        max_fuel: 1 << 40,
        max_memory_bytes: 1 << 30,
        roles: vec!["Caste".into(), "Young".into()],
        region: "001".into(),
        thresholds: [0.5, 0.25, 1.0],
        relay: None,
        issued_at_ms: 1_700_000_000_000,
        expires_at_ms: 1_700_000_015_000,
    }
}

fn advert_seeds() -> Vec<Vec<u8>> {
    let signed = SignedAdvert::sign(&advert_body(), &key(3));
    vec![signed.to_bytes(), signed.body]
}

// ---- job stream ----------------------------------------------------------

/// The bytes of a whole `/biop2p/jobs/1.0.0` stream, read frame by frame
/// as the host (requests) and the submitter (responses) read it. The first
/// byte picks a small limit or the default one, so that both the
/// skip-oversized and the body paths are reached by small inputs.
pub fn job_stream(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let limit = if sel & 1 == 0 {
        64
    } else {
        default_job_limits().request
    };
    block_on(async {
        let mut io = futures::io::Cursor::new(rest);
        // Every frame consumes at least 12 bytes, so this ends; the bound
        // makes sure of it.
        for _ in 0..=rest.len() / 12 {
            match read_frame(&mut io, limit).await {
                Ok(Some(Frame::Body { id, body })) => {
                    assert!(body.len() <= limit);
                    if let Ok(r) = postcard::from_bytes::<JobRequest>(&body) {
                        roundtrip(&r);
                        let mut buf = Vec::new();
                        if encode_frame(&mut buf, id, &r, usize::MAX).is_ok() {
                            let mut again = futures::io::Cursor::new(&buf);
                            match read_frame(&mut again, usize::MAX).await {
                                Ok(Some(Frame::Body { id: id2, .. })) => assert_eq!(id, id2),
                                other => panic!("re-encoded frame reads as {other:?}"),
                            }
                        }
                    }
                    if let Ok(r) = postcard::from_bytes::<JobResponse>(&body) {
                        roundtrip(&r);
                    }
                }
                Ok(Some(Frame::TooLarge { len, .. })) => assert!(len > limit as u64),
                Ok(None) | Err(_) => return,
            }
        }
        panic!("read more frames than the bytes allow");
    });
}

fn submit() -> JobRequest {
    JobRequest::Submit {
        job: SignedJob::sign(&spec(), &key(1)),
        inline: vec![InlineBlob {
            hash: [2; 32],
            data: b"hello\n".to_vec(),
        }],
        wait: true,
    }
}

fn responses() -> Vec<JobResponse> {
    let signed = SignedReceipt::sign(&receipt_body(), &key(3));
    vec![
        JobResponse::Accepted { job_id: [4; 32] },
        JobResponse::Pending {
            job_id: [4; 32],
            state: JobState::Running,
        },
        JobResponse::Done {
            job_id: [4; 32],
            output: b"output".to_vec(),
            receipt: signed.clone(),
        },
        JobResponse::Failed {
            job_id: [4; 32],
            kind: "trap".into(),
            message: "unreachable".into(),
            receipt: signed,
        },
        JobResponse::Refused {
            reason: RefuseReason::Busy,
            message: "64 jobs queued".into(),
        },
        JobResponse::Unknown { job_id: [4; 32] },
    ]
}

fn job_stream_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sel in [0u8, 1] {
        let mut buf = vec![sel];
        encode_frame(&mut buf, 1, &submit(), usize::MAX).unwrap();
        encode_frame(
            &mut buf,
            2,
            &JobRequest::Fetch {
                job_id: [4; 32],
                wait: false,
            },
            usize::MAX,
        )
        .unwrap();
        out.push(buf);
        let mut buf = vec![sel];
        for (i, r) in responses().iter().enumerate() {
            encode_frame(&mut buf, i as u64, r, usize::MAX).unwrap();
        }
        out.push(buf);
    }
    out
}

// ---- request-response codec ----------------------------------------------

/// One request or response of `/biop2p/job/1.0.0` or `/biop2p/blob/1.0.0`
/// through the codec as libp2p drives it. The first byte picks the
/// protocol, the direction and small or real limits.
pub fn codec(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let small = Limits {
        request: 64,
        response: 64,
    };
    let proto = StreamProtocol::new("/biop2p/fuzz");
    block_on(async {
        let mut io = futures::io::Cursor::new(rest);
        match sel % 4 {
            0 | 1 => {
                let limits = if sel & 4 == 0 {
                    default_job_limits()
                } else {
                    small
                };
                let mut c = Codec::<JobRequest, JobResponse>::new(limits);
                if sel % 4 == 0 {
                    if let Ok(r) = c.read_request(&proto, &mut io).await {
                        check_inbound(&r, limits.request);
                    }
                } else if let Ok(r) = c.read_response(&proto, &mut io).await {
                    roundtrip(&r);
                }
            }
            _ => {
                let limits = if sel & 4 == 0 { BLOB_LIMITS } else { small };
                let mut c = Codec::<BlobRequest, BlobResponse>::new(limits);
                if sel % 4 == 2 {
                    if let Ok(r) = c.read_request(&proto, &mut io).await {
                        check_inbound(&r, limits.request);
                    }
                } else if let Ok(r) = c.read_response(&proto, &mut io).await {
                    roundtrip(&r);
                }
            }
        }
    });
}

fn check_inbound<T>(r: &Inbound<T>, limit: usize)
where
    T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match r {
        Inbound::Ok(v) => roundtrip(v),
        Inbound::TooLarge { len, limit: l } => assert!(*len > *l && *l == limit as u64),
        Inbound::Malformed(m) => assert!(!m.is_empty()),
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn codec_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut with = |sel: u8, body: Vec<u8>| {
        let mut v = vec![sel];
        v.extend(frame(&body));
        out.push(v);
    };
    with(0, postcard::to_stdvec(&submit()).unwrap());
    for r in responses() {
        with(1, postcard::to_stdvec(&r).unwrap());
    }
    with(2, postcard::to_stdvec(&blob_request()).unwrap());
    with(3, postcard::to_stdvec(&chunk()).unwrap());
    out
}

// ---- blob chunk ----------------------------------------------------------

/// A blob exchange. The submitter serves a range of one of its blobs to a
/// peer's [`BlobRequest`] (the peer picks the offset and length); the host
/// receives a [`BlobResponse`] for a chunk it asked for and checks it as
/// it would before copying it into place.
pub fn blob_chunk(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        let Ok(req) = postcard::from_bytes::<BlobRequest>(rest) else {
            return;
        };
        roundtrip(&req);
        // A blob whose size the input also picks (bounded), so offsets
        // land before, inside and after it.
        let size = usize::from(sel >> 1) * 97;
        let blob = vec![0xAB; size];
        let range = crate::node::client::chunk_range(&req, blob.len());
        assert!(range.start <= range.end && range.end <= blob.len());
        assert!(range.len() <= crate::net::BLOB_CHUNK as usize);
        let _ = &blob[range];
    } else {
        let Ok(resp) = postcard::from_bytes::<BlobResponse>(rest) else {
            return;
        };
        roundtrip(&resp);
        // The host's own handling of the answer, for the chunk it asked: at
        // `offset` of a blob of the size the job named. What it copies must
        // be the chunk's bytes, at that offset.
        let want_total = 3 * u64::from(crate::net::BLOB_CHUNK) / 2;
        let offset = u64::from(sel >> 1) * 8192;
        let hash = [2; 32];
        let mut buf = vec![0u8; want_total as usize];
        match crate::node::host::place_chunk(&mut buf, &hash, offset, Ok(resp.clone())) {
            Ok(n) => {
                let BlobResponse::Chunk { data, .. } = &resp else {
                    panic!("{resp:?} was copied into a blob");
                };
                assert_eq!(n, data.len());
                assert_eq!(&buf[offset as usize..offset as usize + n], &data[..]);
            }
            Err((reason, message)) => {
                assert!(matches!(
                    reason,
                    RefuseReason::BlobMismatch | RefuseReason::BlobUnavailable
                ));
                assert!(!message.is_empty());
            }
        }
        // And an offset past the end is refused, never a panic.
        assert!(crate::node::host::place_chunk(&mut buf, &hash, want_total + 1, Ok(resp)).is_err());
    }
}

fn blob_request() -> BlobRequest {
    BlobRequest {
        hash: [2; 32],
        offset: 1 << 20,
        len: 1 << 20,
    }
}

fn chunk() -> BlobResponse {
    BlobResponse::Chunk {
        total: 3 << 19,
        data: vec![1; 300],
    }
}

fn blob_chunk_seeds() -> Vec<Vec<u8>> {
    let mut a = vec![20u8];
    a.extend(postcard::to_stdvec(&blob_request()).unwrap());
    let mut b = vec![1u8];
    b.extend(postcard::to_stdvec(&chunk()).unwrap());
    let mut c = vec![1u8];
    c.extend(postcard::to_stdvec(&BlobResponse::NotFound).unwrap());
    vec![a, b, c]
}

// ---- config --------------------------------------------------------------

/// `biop2p.toml`: parse and validate. What validates must round-trip.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = NodeConfig::from_toml(text) {
        let again = toml::to_string(&c).expect("a valid config serialises");
        let back = NodeConfig::from_toml(&again).expect("a serialised config parses");
        // Compare serialised forms: NaN-free by validation, but float
        // formatting may differ in the last digit.
        assert_eq!(toml::to_string(&back).unwrap(), again);
    }
}

fn config_seeds() -> Vec<Vec<u8>> {
    vec![
        crate::config::DEFAULT_TOML.as_bytes().to_vec(),
        b"version = 1\n[network]\nmdns = false\nbootstrap = [\"/ip4/10.0.0.1/tcp/7450\"]\n[resources]\ncpu_allocation = 0.5\n".to_vec(),
        b"[market]\nprice_per_mfuel = 3\n".to_vec(),
    ]
}

// ---- state files ---------------------------------------------------------

/// The files a node reads back from its data or state directory, which
/// anything with access to the disk may have changed: `peers.json`,
/// `trails.json`, `calibration.json`, and the records in the sled stores.
/// The first byte picks the file.
pub fn state_files(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => {
            let now = 1_700_000_000_000;
            if let Ok(hosts) = parse_peers_file(rest, now) {
                assert!(hosts.iter().all(|h| h.expires_in_ms > 0));
            }
        }
        1 => {
            if let Ok(mut t) = Trails::from_json(rest) {
                let now = 1_700_000_000_000;
                let level = t.level(&seed_peer(), now);
                assert!(level.is_finite() && level >= 0.0, "trail level {level}");
                let hosts = vec![(seed_peer(), advert_body())];
                assert_eq!(t.rank(hosts, &spec(), now).len(), 1);
            }
        }
        2 => {
            let _ = crate::node::calibration::stored_rate(rest);
        }
        3 => {
            if let Ok(r) = postcard::from_bytes::<JobRecord>(rest) {
                roundtrip(&r);
            }
        }
        _ => {
            if let Ok(r) = postcard::from_bytes::<SubmitRecord>(rest) {
                roundtrip(&r);
            }
        }
    }
}

fn seed_peer() -> libp2p::PeerId {
    libp2p::identity::Keypair::ed25519_from_bytes([3; 32])
        .expect("32 bytes")
        .public()
        .to_peer_id()
}

fn state_files_seeds() -> Vec<Vec<u8>> {
    let peer = seed_peer();
    let written = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 - 1000);
    let written_ms = written.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let peers = PeersFile {
        written_at_ms: written_ms,
        hosts: vec![PeerEntry {
            // Alive 15 s after the file was written, whatever today's date.
            expires_in_ms: 15_000,
            ..PeerEntry::new(&peer, &advert_body(), true)
        }],
    };
    let mut p = vec![0u8];
    p.extend(serde_json::to_vec(&peers).unwrap());
    let mut t = vec![1u8];
    t.extend(
        format!("{{\"saved_at_ms\":1700000000000,\"trails\":[[\"{peer}\",2.5],[\"x\",1e308]]}}")
            .into_bytes(),
    );
    let mut c = vec![2u8];
    c.extend(
        format!(
            "{{\"fuel_per_sec\":500000000,\"arch\":\"{}\",\"version\":\"{}\"}}",
            std::env::consts::ARCH,
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes(),
    );
    vec![p, t, c]
}
