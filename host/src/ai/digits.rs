//! The 8×8 handwritten digits (scikit-learn's `digits`: 1,797 samples, 64
//! pixels of 0..=16 and a label), split once into a training and a
//! held-back test set, and the byte formats `workloads/digits` speaks.
//!
//! The split is fixed (a seeded shuffle, then the last [`TEST_SAMPLES`]
//! held back), so every run, every host and every test sees the same sets.

use std::path::Path;

use super::AiError;

/// Samples held back for testing (20%).
pub const TEST_SAMPLES: usize = 360;
/// Pixels per sample.
pub const PIXELS: usize = 64;
/// Parameters of the workload's 64-64-10 network.
pub const PARAMS: usize = 64 * 64 + 64 + 10 * 64 + 10;
/// Bytes before the parameters in the weights format.
pub const WEIGHTS_HEADER: usize = 28;
/// Seed of the train/test shuffle.
const SPLIT_SEED: u64 = 0x5eed_d161_7500;

/// One labelled digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Pixels, 0..=16.
    pub pixels: [u8; PIXELS],
    /// The digit, 0..=9.
    pub label: u8,
}

/// The data set, split.
#[derive(Debug, Clone)]
pub struct Digits {
    /// Training samples (1,437).
    pub train: Vec<Sample>,
    /// Held-back test samples ([`TEST_SAMPLES`]).
    pub test: Vec<Sample>,
}

impl Digits {
    /// Loads `digits.csv` from the AI data cache ([`super::data_dir`]).
    pub fn load() -> Result<Self, AiError> {
        Self::load_from(&super::data_dir())
    }

    /// Loads `dir/digits.csv` (unpacked by the fetch script).
    pub fn load_from(dir: &Path) -> Result<Self, AiError> {
        let path = super::require(dir, "digits.csv")?;
        let text = std::fs::read_to_string(&path).map_err(|source| AiError::Read {
            path: path.clone(),
            source,
        })?;
        let corrupt = |why: String| AiError::Corrupt {
            path: path.clone(),
            why,
        };
        let mut all = Vec::with_capacity(1797);
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Vec<u8> = line
                .split(',')
                .map(|f| f.trim().parse::<f32>().map(|x| x as u8))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(format!("line {}: {e}", n + 1)))?;
            if v.len() != PIXELS + 1 || v[PIXELS] > 9 || v[..PIXELS].iter().any(|&p| p > 16) {
                return Err(corrupt(format!(
                    "line {}: want 64 pixels of 0..=16 and a label of 0..=9",
                    n + 1
                )));
            }
            let mut pixels = [0; PIXELS];
            pixels.copy_from_slice(&v[..PIXELS]);
            all.push(Sample {
                pixels,
                label: v[PIXELS],
            });
        }
        if all.len() != 1797 {
            return Err(corrupt(format!("{} samples, want 1797", all.len())));
        }
        let mut rng = SPLIT_SEED;
        for i in (1..all.len()).rev() {
            let j = (splitmix(&mut rng) % (i as u64 + 1)) as usize;
            all.swap(i, j);
        }
        let test = all.split_off(all.len() - TEST_SAMPLES);
        Ok(Digits { train: all, test })
    }
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The workload's samples format: `DGD1`, count, then 64 pixels and a
/// label per sample.
pub fn encode_samples(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + samples.len() * (PIXELS + 1));
    out.extend_from_slice(b"DGD1");
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.pixels);
        out.push(s.label);
    }
    out
}

/// Trained weights as the workload returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Mean loss of the last local epoch.
    pub loss: f32,
    /// Accuracy on the shard trained on.
    pub accuracy: f32,
    /// Samples trained on (FedAvg's weight).
    pub samples: u32,
    /// The [`PARAMS`] parameters.
    pub params: Vec<f32>,
}

impl Model {
    /// Decodes the workload's `DGW1` weights (64-64-10, finite values).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != WEIGHTS_HEADER + 4 * PARAMS || &b[..4] != b"DGW1" {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let f = |i: usize| f32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        if (u(4), u(8), u(12)) != (64, 64, 10) {
            return None;
        }
        let params: Vec<f32> = (0..PARAMS).map(|i| f(WEIGHTS_HEADER + 4 * i)).collect();
        if params.iter().any(|p| !p.is_finite()) {
            return None;
        }
        Some(Model {
            loss: f(16),
            accuracy: f(20),
            samples: u(24),
            params,
        })
    }

    /// Encodes as `DGW1`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WEIGHTS_HEADER + 4 * PARAMS);
        out.extend_from_slice(b"DGW1");
        for v in [64u32, 64, 10] {
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
}

/// How much a poisoner scales the sign-flipped parameters.
pub const POISON_SCALE: f32 = -3.0;

/// What a poisoning host returns instead of a trained model: the same
/// shape and header, every parameter multiplied by [`POISON_SCALE`]
/// (sign-flipped and boosted), so it decodes, looks plausible and drags an
/// average the wrong way. `None` when `output` is not a digits model.
pub fn poison(output: &[u8]) -> Option<Vec<u8>> {
    let mut m = Model::decode(output)?;
    for p in &mut m.params {
        *p *= POISON_SCALE;
    }
    Some(m.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_round_trip_and_poison_keeps_the_shape() {
        let m = Model {
            loss: 0.5,
            accuracy: 0.9,
            samples: 287,
            params: (0..PARAMS).map(|i| i as f32 * 1e-3).collect(),
        };
        let b = m.encode();
        assert_eq!(Model::decode(&b), Some(m.clone()));
        let p = Model::decode(&poison(&b).unwrap()).unwrap();
        assert_eq!(p.samples, m.samples);
        assert_eq!(p.params[10], m.params[10] * POISON_SCALE);
        assert_eq!(poison(b"not a model"), None);
        assert_eq!(Model::decode(&b[..b.len() - 4]), None);
    }
}
