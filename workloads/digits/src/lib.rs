//! biop2p AI workload: a 64-64-10 perceptron on the 8×8 handwritten digits
//! (scikit-learn's `digits`, real data), for centralised and federated
//! training and for inference.
//!
//! # Commands (the guest's argv)
//!
//! - `train [--epochs N] [--lr F] [--shard I/N] [--seed S] [--set NAME]`:
//!   the input is the starting weights (empty: fresh weights from `seed`);
//!   the samples are `/data/NAME` (default `train`), of which shard `I` of
//!   `N` (samples `I, I+N, I+2N, ...`) is used. Per-sample SGD on
//!   cross-entropy, shuffled each epoch from `seed`. The output is the new
//!   weights with the last epoch's mean loss and the shard's accuracy.
//! - `infer [--set NAME]`: the input is weights; the samples are
//!   `/data/NAME` (default `test`). The output is JSON:
//!   `{"samples", "accuracy", "loss", "predictions"}`.
//!
//! # Formats (little-endian)
//!
//! - Samples: `b"DGD1"`, `u32` count, then per sample 64 pixel bytes
//!   (0..=16) and a label byte (0..=9).
//! - Weights: `b"DGW1"`, `u32` inputs (64), hidden (64), classes (10),
//!   `f32` loss, `f32` accuracy, `u32` samples trained on, then the
//!   parameters as `f32`: `w1` (hidden × inputs, row-major), `b1`, `w2`
//!   (classes × hidden), `b2`.
//!
//! # Determinism
//!
//! Every random choice comes from `seed`; the kernels ([`kernels`]) fix the
//! order of every sum and use their own `exp`, so the same task gives the
//! same bits on every host, and natively too.

pub mod kernels;

use kernels::{axpy, dot, exp, ln};

/// Pixels per sample.
pub const INPUTS: usize = 64;
/// Hidden units.
pub const HIDDEN: usize = 64;
/// Digit classes.
pub const CLASSES: usize = 10;
/// Parameters of the network.
pub const PARAMS: usize = HIDDEN * INPUTS + HIDDEN + CLASSES * HIDDEN + CLASSES;
/// Bytes before the parameters in the weights format.
pub const WEIGHTS_HEADER: usize = 28;
/// Most samples a data file may hold (bounds the guest's memory).
const MAX_SAMPLES: usize = 1 << 20;
/// Most epochs one task may run.
const MAX_EPOCHS: u32 = 10_000;

/// A trained (or fresh) network with the figures of its last training.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Mean loss of the last epoch (0 for fresh weights).
    pub loss: f32,
    /// Accuracy on the samples trained on, after training.
    pub accuracy: f32,
    /// Samples trained on.
    pub samples: u32,
    /// `w1`, `b1`, `w2`, `b2`, concatenated ([`PARAMS`] values).
    pub params: Vec<f32>,
}

impl Weights {
    /// Fresh weights: uniform He initialisation from `seed`, zero biases.
    pub fn init(seed: u64) -> Self {
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut params = vec![0.0; PARAMS];
        let l1 = (6.0 / INPUTS as f32).sqrt();
        let l2 = (6.0 / HIDDEN as f32).sqrt();
        let (w1, rest) = params.split_at_mut(HIDDEN * INPUTS);
        for w in w1 {
            *w = (rng.unit() * 2.0 - 1.0) * l1;
        }
        for w in &mut rest[HIDDEN..HIDDEN + CLASSES * HIDDEN] {
            *w = (rng.unit() * 2.0 - 1.0) * l2;
        }
        Weights {
            loss: 0.0,
            accuracy: 0.0,
            samples: 0,
            params,
        }
    }

    /// Encodes in the weights format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WEIGHTS_HEADER + 4 * PARAMS);
        out.extend_from_slice(b"DGW1");
        for v in [INPUTS as u32, HIDDEN as u32, CLASSES as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.loss.to_le_bytes());
        out.extend_from_slice(&self.accuracy.to_le_bytes());
        out.extend_from_slice(&self.samples.to_le_bytes());
        for p in &self.params {
            out.extend_from_slice(&p.to_le_bytes());
        }
        out
    }

    /// Decodes the weights format; refuses other shapes and non-finite
    /// parameters.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != WEIGHTS_HEADER + 4 * PARAMS || &b[..4] != b"DGW1" {
            return Err(format!(
                "weights must be DGW1 of {} bytes, got {} bytes",
                WEIGHTS_HEADER + 4 * PARAMS,
                b.len()
            ));
        }
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let f = |i: usize| f32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        if (u(4), u(8), u(12)) != (INPUTS as u32, HIDDEN as u32, CLASSES as u32) {
            return Err(format!(
                "weights are {}-{}-{}, this network is {INPUTS}-{HIDDEN}-{CLASSES}",
                u(4),
                u(8),
                u(12)
            ));
        }
        let params: Vec<f32> = (0..PARAMS).map(|i| f(WEIGHTS_HEADER + 4 * i)).collect();
        if params.iter().any(|p| !p.is_finite()) {
            return Err("weights contain a non-finite value".into());
        }
        Ok(Weights {
            loss: f(16),
            accuracy: f(20),
            samples: u(24),
            params,
        })
    }
}

/// Labelled samples, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone)]
pub struct Samples {
    /// `count × 64` pixels.
    pub x: Vec<f32>,
    /// Labels.
    pub y: Vec<u8>,
}

impl Samples {
    /// Decodes the samples format.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < 8 || &b[..4] != b"DGD1" {
            return Err("samples must start with DGD1 and a count".into());
        }
        let n = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as usize;
        if n > MAX_SAMPLES || b.len() != 8 + n * (INPUTS + 1) {
            return Err(format!(
                "a samples file of {n} samples is {} bytes, this one is {}",
                8 + n.min(MAX_SAMPLES) * (INPUTS + 1),
                b.len()
            ));
        }
        let mut x = Vec::with_capacity(n * INPUTS);
        let mut y = Vec::with_capacity(n);
        for s in b[8..].chunks_exact(INPUTS + 1) {
            if s[INPUTS] as usize >= CLASSES || s[..INPUTS].iter().any(|&p| p > 16) {
                return Err("a sample has a label over 9 or a pixel over 16".into());
            }
            x.extend(s[..INPUTS].iter().map(|&p| p as f32 / 16.0));
            y.push(s[INPUTS]);
        }
        Ok(Samples { x, y })
    }

    /// Samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * INPUTS..(i + 1) * INPUTS]
    }
}

/// splitmix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Forward pass: hidden activations into `h`, class probabilities into `p`.
fn forward(params: &[f32], x: &[f32], h: &mut [f32], p: &mut [f32]) {
    let (w1, rest) = params.split_at(HIDDEN * INPUTS);
    let (b1, rest) = rest.split_at(HIDDEN);
    let (w2, b2) = rest.split_at(CLASSES * HIDDEN);
    for ((hj, row), bj) in h.iter_mut().zip(w1.chunks_exact(INPUTS)).zip(b1) {
        *hj = (dot(row, x) + bj).max(0.0);
    }
    let mut max = f32::NEG_INFINITY;
    for ((pc, row), bc) in p.iter_mut().zip(w2.chunks_exact(HIDDEN)).zip(b2) {
        *pc = dot(row, h) + bc;
        max = max.max(*pc);
    }
    let mut sum = 0.0;
    for v in p.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    for v in p.iter_mut() {
        *v /= sum;
    }
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    /// Passes over the shard.
    pub epochs: u32,
    /// SGD step size.
    pub lr: f32,
    /// Which shard (`shard.0` of `shard.1`).
    pub shard: (u32, u32),
    /// Seed of the shuffles (and of fresh weights).
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            lr: 0.05,
            shard: (0, 1),
            seed: 1,
        }
    }
}

/// Trains `w` on the shard of `data`: per-sample SGD on cross-entropy.
pub fn train(mut w: Weights, data: &Samples, cfg: &TrainConfig) -> Result<Weights, String> {
    let (i, n) = cfg.shard;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: want I/N with I < N"));
    }
    if cfg.epochs > MAX_EPOCHS || !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(format!(
            "epochs {} (at most {MAX_EPOCHS}) or lr {} (positive) out of range",
            cfg.epochs, cfg.lr
        ));
    }
    let mut idx: Vec<usize> = (i as usize..data.len()).step_by(n as usize).collect();
    if idx.is_empty() {
        return Err(format!("shard {i}/{n} of {} samples is empty", data.len()));
    }
    let mut rng = Rng(cfg.seed);
    let (mut h, mut p) = ([0.0f32; HIDDEN], [0.0f32; CLASSES]);
    let mut dh = [0.0f32; HIDDEN];
    let mut loss = 0.0;
    for epoch in 0..cfg.epochs {
        for k in (1..idx.len()).rev() {
            idx.swap(k, rng.below(k + 1));
        }
        let mut total = 0.0f32;
        for &s in &idx {
            let x = data.row(s);
            let y = data.y[s] as usize;
            forward(&w.params, x, &mut h, &mut p);
            total += -ln(p[y].max(1e-12));
            // dL/dz2 = p - onehot(y).
            p[y] -= 1.0;
            let (w1, rest) = w.params.split_at_mut(HIDDEN * INPUTS);
            let (b1, rest) = rest.split_at_mut(HIDDEN);
            let (w2, b2) = rest.split_at_mut(CLASSES * HIDDEN);
            dh.fill(0.0);
            for ((row, bc), pc) in w2.chunks_exact_mut(HIDDEN).zip(b2.iter_mut()).zip(&p) {
                axpy(*pc, row, &mut dh);
                axpy(-cfg.lr * pc, &h, row);
                *bc -= cfg.lr * pc;
            }
            for (((row, bj), hj), dj) in w1
                .chunks_exact_mut(INPUTS)
                .zip(b1.iter_mut())
                .zip(&h)
                .zip(&dh)
            {
                if *hj > 0.0 {
                    axpy(-cfg.lr * dj, x, row);
                    *bj -= cfg.lr * dj;
                }
            }
        }
        loss = total / idx.len() as f32;
        biop2p_guest::progress((epoch + 1) as f32 / cfg.epochs as f32);
    }
    let shard = Samples {
        x: idx.iter().flat_map(|&s| data.row(s).to_vec()).collect(),
        y: idx.iter().map(|&s| data.y[s]).collect(),
    };
    let (acc, _, _) = evaluate(&w, &shard);
    w.loss = loss;
    w.accuracy = acc;
    w.samples = idx.len() as u32;
    Ok(w)
}

/// Accuracy, mean loss and predicted classes of `w` on `data`.
pub fn evaluate(w: &Weights, data: &Samples) -> (f32, f32, Vec<u8>) {
    let (mut h, mut p) = ([0.0f32; HIDDEN], [0.0f32; CLASSES]);
    let mut right = 0usize;
    let mut loss = 0.0f32;
    let mut pred = Vec::with_capacity(data.len());
    for s in 0..data.len() {
        forward(&w.params, data.row(s), &mut h, &mut p);
        let c = argmax(&p);
        right += usize::from(c == data.y[s] as usize);
        loss += -ln(p[data.y[s] as usize].max(1e-12));
        pred.push(c as u8);
    }
    let n = data.len().max(1) as f32;
    (right as f32 / n, loss / n, pred)
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn parse<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: cannot parse {v:?}")),
    }
}

fn read_set(name: &str) -> Result<Samples, String> {
    let path = format!("/data/{name}");
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("cannot read {path} (attach it with --data {name}=FILE): {e}"))?;
    Samples::decode(&bytes)
}

/// The workload: `argv[1]` is the command (see the crate docs).
pub fn run(args: &[String], input: &[u8]) -> Result<Vec<u8>, String> {
    match args.first().map(String::as_str) {
        Some("train") => {
            let d = TrainConfig::default();
            let shard = match flag(args, "--shard") {
                None => d.shard,
                Some(s) => {
                    let (i, n) = s
                        .split_once('/')
                        .ok_or_else(|| format!("--shard wants I/N, got {s:?}"))?;
                    (
                        i.parse().map_err(|_| format!("--shard {s:?}"))?,
                        n.parse().map_err(|_| format!("--shard {s:?}"))?,
                    )
                }
            };
            let cfg = TrainConfig {
                epochs: parse(args, "--epochs", d.epochs)?,
                lr: parse(args, "--lr", d.lr)?,
                shard,
                seed: parse(args, "--seed", d.seed)?,
            };
            let w = if input.is_empty() {
                Weights::init(cfg.seed)
            } else {
                Weights::decode(input)?
            };
            let data = read_set(flag(args, "--set").unwrap_or("train"))?;
            Ok(train(w, &data, &cfg)?.encode())
        }
        Some("infer") => {
            let w = Weights::decode(input)?;
            let data = read_set(flag(args, "--set").unwrap_or("test"))?;
            let (accuracy, loss, pred) = evaluate(&w, &data);
            let out = serde_json::json!({
                "samples": data.len(),
                "accuracy": accuracy,
                "loss": loss,
                "predictions": pred,
            });
            serde_json::to_vec(&out).map_err(|e| e.to_string())
        }
        other => Err(format!(
            "unknown command {other:?}: want `train` or `infer` (see the workload's docs)"
        )),
    }
}

fn guest_run(input: Vec<u8>) -> Result<Vec<u8>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(&args, &input)
}

biop2p_guest::workload!(guest_run);

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Samples {
        // Two separable "digits": bright top half (0) or bright bottom (1).
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let label = (i % 2) as u8;
            for p in 0..INPUTS {
                let top = p < 32;
                let on = (label == 0) == top;
                x.push(if on {
                    1.0
                } else {
                    ((i * 7 + p) % 3) as f32 / 16.0
                });
            }
            y.push(label);
        }
        Samples { x, y }
    }

    #[test]
    fn weights_round_trip_and_bad_weights_are_refused() {
        let w = Weights::init(3);
        assert_eq!(Weights::decode(&w.encode()).unwrap(), w);
        assert!(Weights::decode(b"DGW1").is_err());
        let mut b = w.encode();
        b[WEIGHTS_HEADER..WEIGHTS_HEADER + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Weights::decode(&b).unwrap_err().contains("non-finite"));
    }

    #[test]
    fn training_learns_and_is_bit_identical_for_the_same_task() {
        let data = toy(200);
        let cfg = TrainConfig {
            epochs: 3,
            ..TrainConfig::default()
        };
        let a = train(Weights::init(1), &data, &cfg).unwrap();
        let b = train(Weights::init(1), &data, &cfg).unwrap();
        assert_eq!(a.encode(), b.encode());
        assert!(a.accuracy > 0.95, "accuracy {}", a.accuracy);
        let other = train(Weights::init(1), &data, &TrainConfig { seed: 2, ..cfg }).unwrap();
        assert_ne!(a.encode(), other.encode());
        assert!(
            train(
                Weights::init(1),
                &data,
                &TrainConfig {
                    shard: (5, 5),
                    ..cfg
                }
            )
            .is_err()
        );
    }
}
