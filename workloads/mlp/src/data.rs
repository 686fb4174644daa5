//! Deterministic random numbers and toy data sets.

use serde::{Deserialize, Serialize};

/// SplitMix64: tiny, fast, and the same on every target.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (core::f32::consts::TAU * u2).cos()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Shuffle `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// A built-in data set, generated from the request's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// `classes` interleaved spiral arms in the plane (CS231n style).
    #[default]
    Spirals,
    /// Points in `[-1, 1]²`, labelled by the sign of `x·y`.
    Xor,
    /// Two concentric rings.
    Circles,
    /// Two interleaving half-moons.
    Moons,
}

impl Dataset {
    /// The name used in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Spirals => "spirals",
            Self::Xor => "xor",
            Self::Circles => "circles",
            Self::Moons => "moons",
        }
    }

    /// Number of classes the set has (`spiral_classes` for spirals).
    pub fn classes(self, spiral_classes: usize) -> usize {
        match self {
            Self::Spirals => spiral_classes,
            _ => 2,
        }
    }

    /// Generate `samples` 2-D points with labels.
    pub fn generate(
        self,
        samples: usize,
        spiral_classes: usize,
        noise: f32,
        rng: &mut Rng,
    ) -> (Vec<Vec<f32>>, Vec<u32>) {
        let classes = self.classes(spiral_classes);
        let mut x = Vec::with_capacity(samples);
        let mut y = Vec::with_capacity(samples);
        for i in 0..samples {
            // Balanced classes: sample i belongs to class i % classes.
            let class = i % classes;
            let point = match self {
                Self::Spirals => {
                    let per = samples.div_ceil(classes).max(1);
                    let r = (i / classes) as f32 / per as f32;
                    let t = class as f32 * 4.0 + 4.0 * r + noise * rng.normal();
                    vec![r * t.sin(), r * t.cos()]
                }
                Self::Xor => loop {
                    let p = [rng.range(-1.0, 1.0), rng.range(-1.0, 1.0)];
                    // Keep a margin around the axes, then jitter.
                    if p[0].abs() > 0.05
                        && p[1].abs() > 0.05
                        && ((p[0] * p[1] < 0.0) as usize == class)
                    {
                        break vec![
                            p[0] + noise * 0.5 * rng.normal(),
                            p[1] + noise * 0.5 * rng.normal(),
                        ];
                    }
                },
                Self::Circles => {
                    let radius = if class == 0 { 0.5 } else { 1.0 };
                    let a = rng.range(0.0, core::f32::consts::TAU);
                    vec![
                        radius * a.cos() + noise * 0.5 * rng.normal(),
                        radius * a.sin() + noise * 0.5 * rng.normal(),
                    ]
                }
                Self::Moons => {
                    let a = rng.range(0.0, core::f32::consts::PI);
                    let (px, py) = if class == 0 {
                        (a.cos(), a.sin())
                    } else {
                        (1.0 - a.cos(), 0.5 - a.sin())
                    };
                    // Centre on the origin and scale to about [-1, 1].
                    vec![
                        (px - 0.5) * 0.8 + noise * 0.5 * rng.normal(),
                        (py - 0.25) * 0.8 + noise * 0.5 * rng.normal(),
                    ]
                }
            };
            x.push(point);
            y.push(class as u32);
        }
        (x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let u = a.uniform();
            assert_eq!(u, b.uniform());
            assert!((0.0..1.0).contains(&u));
            assert!(a.below(5) < 5);
            b.below(5);
            assert!(a.normal().is_finite());
            b.normal();
        }
        let mut v: Vec<u32> = (0..50).collect();
        a.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn datasets_are_balanced_and_labelled() {
        for ds in [
            Dataset::Spirals,
            Dataset::Xor,
            Dataset::Circles,
            Dataset::Moons,
        ] {
            let (x, y) = ds.generate(99, 3, 0.1, &mut Rng::new(1));
            let k = ds.classes(3);
            assert_eq!(x.len(), 99);
            assert!(
                x.iter()
                    .all(|p| p.len() == 2 && p.iter().all(|v| v.is_finite()))
            );
            for c in 0..k as u32 {
                let count = y.iter().filter(|&&l| l == c).count();
                assert!(count >= 99 / k, "{ds:?} class {c}: {count}");
            }
            if ds == Dataset::Xor {
                // Without noise, labels follow the quadrant exactly.
                let (x, y) = ds.generate(50, 2, 0.0, &mut Rng::new(2));
                for (p, l) in x.iter().zip(&y) {
                    assert_eq!((p[0] * p[1] < 0.0) as u32, *l);
                }
            }
        }
    }
}
