//! The fuzz targets of `fuzz/` (bodies in `biop2p::fuzzing`), run on
//! stable for a bounded number of cases: each target's seed corpus, the
//! inputs found by long fuzzing runs (`fuzz/regressions/NAME/`), and
//! seeded mutations of the seeds. A failing case prints its target, seed
//! and input in hex, to add to `fuzz/regressions/`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;

use biop2p::fuzzing::{TARGETS, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Mutated cases per target: enough to reach each decoder's error paths
/// (truncations, flipped length prefixes, wrong variants), a few seconds
/// in all in release.
const CASES: usize = 50_000;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run_one(t: &Target, input: &[u8], origin: &str) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| (t.run)(input))) {
        eprintln!(
            "fuzz target {} panicked on {origin}; input ({} bytes): {}",
            t.name,
            input.len(),
            hex(input)
        );
        resume_unwind(p);
    }
}

fn regressions(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(name);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = rd
        .map(|e| {
            let p = e.expect("dir entry").path();
            let b = std::fs::read(&p).expect("read regression input");
            (p.display().to_string(), b)
        })
        .collect();
    out.sort();
    out
}

/// One mutation in the style of libFuzzer's: flip, set, insert, erase,
/// truncate, splice another seed, or overwrite with a boundary value
/// (varint continuation bytes, 0xFF runs, huge little-endian lengths).
fn mutate(rng: &mut ChaCha8Rng, base: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = rng.random();
            }
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=8);
                for _ in 0..n {
                    v.insert(i, rng.random());
                }
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                v.drain(i..i + n);
            }
            4 => v.truncate(rng.random_range(0..=len)),
            5 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = rng.random_range(a..=other.len());
                    let i = rng.random_range(0..=len);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            6 if len > 0 => {
                let i = rng.random_range(0..len);
                let fill: &[u8] = match rng.random_range(0..4) {
                    0 => &[0xff; 8],
                    1 => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                    2 => &[0xff, 0xff, 0xff, 0x7f],
                    _ => &[0; 8],
                };
                for (j, b) in fill.iter().enumerate() {
                    if i + j < v.len() {
                        v[i + j] = *b;
                    }
                }
            }
            _ => {
                let n = rng.random_range(0..64);
                v = (0..n).map(|_| rng.random()).collect();
                if let Some(first) = base.first() {
                    // Keep the selector byte of targets that have one.
                    if !v.is_empty() && rng.random_bool(0.5) {
                        v[0] = *first;
                    }
                }
            }
        }
    }
    v
}

#[test]
fn every_decoder_survives_its_corpus_and_mutations() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    // The list: job, receipt, advert, job-stream frame, codec,
    // blob chunk, config, and the files read back from disk.
    for want in [
        "job",
        "receipt",
        "advert",
        "job_stream",
        "codec",
        "blob_chunk",
        "config",
        "state_files",
    ] {
        assert!(names.contains(&want), "no fuzz target {want}");
    }
    for t in TARGETS {
        let seeds = (t.seeds)();
        assert!(!seeds.is_empty(), "{} has no seeds", t.name);
        for (i, s) in seeds.iter().enumerate() {
            run_one(t, s, &format!("seed {i}"));
        }
        for (path, input) in regressions(t.name) {
            run_one(t, &input, &path);
        }
        let seed = 0x5eed_0000 + t.name.len() as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for case in 0..CASES {
            let base = &seeds[case % seeds.len()];
            let input = mutate(&mut rng, base, &seeds);
            run_one(t, &input, &format!("mutation {case} of rng seed {seed:#x}"));
        }
    }
}

/// The seeds must be what they claim: valid encodings the decoders accept
/// (otherwise the mutations above would explore only the error paths).
#[test]
fn fuzz_seeds_are_valid_encodings() {
    // `BIOP2P_FUZZ_SEEDS_DIR=DIR`: also write every target's seeds to
    // DIR/TARGET/ (the starting corpus of `cargo fuzz run`).
    if let Ok(dir) = std::env::var("BIOP2P_FUZZ_SEEDS_DIR") {
        for t in TARGETS {
            let d = PathBuf::from(&dir).join(t.name);
            std::fs::create_dir_all(&d).unwrap();
            for (i, s) in (t.seeds)().iter().enumerate() {
                std::fs::write(d.join(format!("seed-{i}")), s).unwrap();
            }
        }
    }
    use biop2p::proto::{SignedAdvert, SignedJob, SignedReceipt};
    let job = &(biop2p::fuzzing::target("job").unwrap().seeds)()[0];
    postcard::from_bytes::<SignedJob>(job)
        .unwrap()
        .verify()
        .unwrap();
    let receipt = &(biop2p::fuzzing::target("receipt").unwrap().seeds)()[0];
    postcard::from_bytes::<SignedReceipt>(receipt)
        .unwrap()
        .verify()
        .unwrap();
    let advert = &(biop2p::fuzzing::target("advert").unwrap().seeds)()[0];
    SignedAdvert::decode_verified(advert).unwrap();
    let config = &(biop2p::fuzzing::target("config").unwrap().seeds)();
    for c in config {
        biop2p::NodeConfig::from_toml(std::str::from_utf8(c).unwrap()).unwrap();
    }
    let files = (biop2p::fuzzing::target("state_files").unwrap().seeds)();
    let hosts = biop2p::node::peers::parse_peers_file(&files[0][1..], 1_700_000_000_000).unwrap();
    assert_eq!(hosts.len(), 1);
    assert!(biop2p::node::trails::Trails::from_json(&files[1][1..]).is_ok());
}
