//! The operations of the `biop2p:workload/tensor` interface as the host runs
//! them: natively, with one summation order fixed by this crate, and at a
//! cost in meter units that depends on the shapes only.
//!
//! Why the order is fixed here and not left to a BLAS: replicas of a task are
//! compared by the hash of their output, so every host must produce the same
//! bits. A BLAS picks its blocking and its vector width from the CPU it runs
//! on (AVX-512 here, AVX2 there), and with them the order of the additions.
//! This crate defines the result exactly:
//!
//! - `c[i][j]` is the dot product of row `i` of `a` and row `j` of `b`
//!   (`b` is given transposed, as a linear layer stores its weights);
//! - the dot product keeps eight partial sums: element `t` goes to sum
//!   `t % 8`, in increasing `t`, each step one fused multiply-add (rounded
//!   once); a length that is not a multiple of 8 is padded with zeros;
//! - the eight sums are added as `((s0+s4) + (s2+s6)) + ((s1+s5) + (s3+s7))`;
//! - a NaN result is written as the canonical quiet NaN.
//!
//! A fused multiply-add is exactly rounded by IEEE 754, so the AVX2+FMA path
//! ([`matmul_bt`] on a CPU that has them) and the portable path
//! ([`matmul_bt_portable`], `f32::mul_add`) give the same bits, and so does
//! any other architecture that implements the same definition. The test
//! suite checks the two paths against each other on odd shapes.

use thiserror::Error;

/// Partial sums per dot product (the width of one AVX register of `f32`).
pub const LANES: usize = 8;

/// Multiply-adds that cost one meter unit. The host's calibrated rate is in
/// the same unit as guest code (about one wasm operator), and a wasm SIMD
/// loop needs more than one operator per multiply-add, so a task pays no
/// less here than it would pay for the same work in wasm, and its
/// `--timeout` still bounds the wall time the host gives it.
pub const MACS_PER_UNIT: u64 = 1;

/// Values copied in or out (by the canonical ABI) that cost one unit: the
/// same as the meter's `memory.copy` (one unit per 64 bytes).
pub const VALUES_PER_UNIT: u64 = 16;

/// Why an operation was refused. The guest sees the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// A dimension is zero or the operands do not have the declared shape.
    #[error("shape: {0}")]
    Shape(String),
    /// The result would be larger than the task may hold.
    #[error("the {m} × {n} result is {values} values, more than the {max} the task's memory holds")]
    TooLarge {
        /// Rows of the result.
        m: u32,
        /// Columns of the result.
        n: u32,
        /// `m × n`.
        values: u64,
        /// The largest result allowed.
        max: u64,
    },
}

/// The dimensions of one `matmul-bt`, checked against its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Rows of `a` and of the result.
    pub m: usize,
    /// Columns of `a` and of `b`: the length of each dot product.
    pub k: usize,
    /// Rows of `b`, columns of the result.
    pub n: usize,
}

impl Shape {
    /// Checks `a` (`m × k`) and `b` (`n × k`) and bounds the result to
    /// `max_values`. Computed in 64 bits, so no product overflows.
    pub fn check(
        a_len: usize,
        b_len: usize,
        m: u32,
        k: u32,
        n: u32,
        max_values: u64,
    ) -> Result<Shape, TensorError> {
        if m == 0 || k == 0 || n == 0 {
            return Err(TensorError::Shape(format!(
                "dimensions must be positive, got m {m}, k {k}, n {n}"
            )));
        }
        let (m64, k64, n64) = (u64::from(m), u64::from(k), u64::from(n));
        if a_len as u64 != m64 * k64 {
            return Err(TensorError::Shape(format!(
                "a has {a_len} values, want m × k = {m} × {k}"
            )));
        }
        if b_len as u64 != n64 * k64 {
            return Err(TensorError::Shape(format!(
                "b has {b_len} values, want n × k = {n} × {k}"
            )));
        }
        let values = m64 * n64;
        if values > max_values {
            return Err(TensorError::TooLarge {
                m,
                n,
                values,
                max: max_values,
            });
        }
        Ok(Shape {
            m: m as usize,
            k: k as usize,
            n: n as usize,
        })
    }

    /// What the operation costs in meter units: its multiply-adds, and the
    /// values copied in and out. Depends on the shape only, so every host
    /// charges the same.
    pub fn cost(&self) -> u64 {
        let (m, k, n) = (self.m as u64, self.k as u64, self.n as u64);
        let macs = m * k * n;
        let copied = m * k + n * k + m * n;
        macs.div_ceil(MACS_PER_UNIT) + copied.div_ceil(VALUES_PER_UNIT)
    }
}

/// `a · bᵀ` for `a` of `shape.m × shape.k` and `b` of `shape.n × shape.k`,
/// both row-major: the `m × n` result, row-major, in this crate's order.
/// On x86-64 with AVX2 and FMA it runs vectorised; elsewhere portably, with
/// the same bits.
pub fn matmul_bt(a: &[f32], b: &[f32], shape: Shape) -> Vec<f32> {
    assert_eq!(a.len(), shape.m * shape.k, "a does not have the shape");
    assert_eq!(b.len(), shape.n * shape.k, "b does not have the shape");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        let mut c = vec![0f32; shape.m * shape.n];
        avx::matmul_bt(a, b, shape, &mut c);
        canonical_nans(&mut c);
        return c;
    }
    matmul_bt_portable(a, b, shape)
}

/// [`matmul_bt`] without vector instructions: the definition itself, and
/// the path of CPUs without AVX2 and FMA.
pub fn matmul_bt_portable(a: &[f32], b: &[f32], shape: Shape) -> Vec<f32> {
    assert_eq!(a.len(), shape.m * shape.k, "a does not have the shape");
    assert_eq!(b.len(), shape.n * shape.k, "b does not have the shape");
    let k = shape.k;
    let mut c = Vec::with_capacity(shape.m * shape.n);
    for row in a.chunks_exact(k) {
        for col in b.chunks_exact(k) {
            c.push(dot(row, col));
        }
    }
    canonical_nans(&mut c);
    c
}

/// One dot product in this crate's order.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut s = [0f32; LANES];
    let mut xs = x.chunks(LANES);
    let mut ys = y.chunks(LANES);
    while let (Some(xc), Some(yc)) = (xs.next(), ys.next()) {
        for (l, sum) in s.iter_mut().enumerate() {
            // Padding with zeros: 0 · 0 + s is s, also for s = -0.
            let (p, q) = (
                xc.get(l).copied().unwrap_or(0.0),
                yc.get(l).copied().unwrap_or(0.0),
            );
            *sum = p.mul_add(q, *sum);
        }
    }
    reduce(s)
}

/// The fixed tree that adds the eight partial sums.
fn reduce(s: [f32; LANES]) -> f32 {
    let h = [s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]];
    (h[0] + h[2]) + (h[1] + h[3])
}

/// NaN payloads depend on the hardware's choice of operand: one NaN for all.
fn canonical_nans(c: &mut [f32]) {
    for v in c {
        if v.is_nan() {
            *v = f32::from_bits(0x7fc0_0000);
        }
    }
}

#[cfg(target_arch = "x86_64")]
// The AVX2 path needs the intrinsics, which are `unsafe` to call; each use
// is bounded by the slice lengths checked at the top of `matmul_bt`.
#[allow(unsafe_code)]
mod avx {
    use super::{LANES, Shape};
    use std::arch::x86_64::*;

    /// Rows of `a` and of `b` in one register block: 4 × 3 accumulators
    /// plus 3 rows of `b` and one of `a` fill the 16 AVX registers.
    const MR: usize = 4;
    const NR: usize = 3;
    /// Rows of `a` per cache tile: 64 rows of a 1,536-wide layer are
    /// 384 KiB, which stay in L2 while every block of `b` passes by.
    const TILE: usize = 64;

    pub(super) fn matmul_bt(a: &[f32], b: &[f32], s: Shape, c: &mut [f32]) {
        // SAFETY: the caller checked AVX2 and FMA at run time.
        unsafe { matmul_bt_inner(a, b, s, c) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn matmul_bt_inner(a: &[f32], b: &[f32], s: Shape, c: &mut [f32]) {
        let Shape { m, k, n } = s;
        let tail = k % LANES;
        let mask = {
            let lanes: [i32; LANES] = std::array::from_fn(|l| if l < tail { -1 } else { 0 });
            // SAFETY: reads 8 i32 from an array of 8.
            unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
        };
        for i0 in (0..m).step_by(TILE) {
            let i1 = (i0 + TILE).min(m);
            let mut j = 0;
            while j + NR <= n {
                let mut i = i0;
                while i + MR <= i1 {
                    block::<MR, NR>(a, b, k, i, j, mask, c, n);
                    i += MR;
                }
                while i < i1 {
                    block::<1, NR>(a, b, k, i, j, mask, c, n);
                    i += 1;
                }
                j += NR;
            }
            while j < n {
                let mut i = i0;
                while i + MR <= i1 {
                    block::<MR, 1>(a, b, k, i, j, mask, c, n);
                    i += MR;
                }
                while i < i1 {
                    block::<1, 1>(a, b, k, i, j, mask, c, n);
                    i += 1;
                }
                j += 1;
            }
        }
    }

    /// `R × C` results: rows `i..i+R` of `a` against rows `j..j+C` of `b`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn block<const R: usize, const C: usize>(
        a: &[f32],
        b: &[f32],
        k: usize,
        i: usize,
        j: usize,
        mask: __m256i,
        c: &mut [f32],
        n: usize,
    ) {
        assert!((i + R) * k <= a.len() && (j + C) * k <= b.len());
        assert!((i + R - 1) * n + j + C <= c.len());
        let full = k - k % LANES;
        let ap = a.as_ptr();
        let bp = b.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut t = 0;
        while t < full {
            let mut bv = [_mm256_setzero_ps(); C];
            for (q, v) in bv.iter_mut().enumerate() {
                // SAFETY: row j+q of b has k values and t+8 <= full <= k.
                *v = unsafe { _mm256_loadu_ps(bp.add((j + q) * k + t)) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: as above, for row i+r of a.
                let av = unsafe { _mm256_loadu_ps(ap.add((i + r) * k + t)) };
                for (q, s) in row.iter_mut().enumerate() {
                    *s = _mm256_fmadd_ps(av, bv[q], *s);
                }
            }
            t += LANES;
        }
        if full < k {
            let mut bv = [_mm256_setzero_ps(); C];
            for (q, v) in bv.iter_mut().enumerate() {
                // SAFETY: the mask reads only the k - full values left in
                // the row; the other lanes are zero and touch no memory.
                *v = unsafe { _mm256_maskload_ps(bp.add((j + q) * k + full), mask) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let av = unsafe { _mm256_maskload_ps(ap.add((i + r) * k + full), mask) };
                for (q, s) in row.iter_mut().enumerate() {
                    *s = _mm256_fmadd_ps(av, bv[q], *s);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (q, s) in row.iter().enumerate() {
                c[(i + r) * n + j + q] = reduce(*s);
            }
        }
    }

    /// The crate's addition tree, on one register.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn reduce(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        // [s0+s4, s1+s5, s2+s6, s3+s7]
        let h = _mm_add_ps(lo, hi);
        // [h0+h2, h1+h3, ..]
        let q = _mm_add_ps(h, _mm_movehl_ps(h, h));
        // q0 + q1
        _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps::<1>(q, q)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values with a spread of magnitudes and signs, so that
    /// a different order of additions would show in the low bits.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let mant = (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let exp = ((x & 0xff) % 12) as i32 - 6;
                mant * 2f32.powi(exp)
            })
            .collect()
    }

    #[test]
    fn the_vector_path_gives_the_portable_bits_on_odd_shapes() {
        for (m, k, n) in [
            (1, 1, 1),
            (3, 7, 2),
            (5, 8, 4),
            (4, 9, 3),
            (7, 17, 5),
            (65, 384, 7),
            (9, 1536, 13),
            (130, 33, 3),
        ] {
            let a = values(m * k, (m * 31 + k) as u32);
            let b = values(n * k, (n * 17 + k) as u32);
            let s = Shape::check(a.len(), b.len(), m as u32, k as u32, n as u32, u64::MAX)
                .expect("shape");
            let fast: Vec<u32> = matmul_bt(&a, &b, s).iter().map(|v| v.to_bits()).collect();
            let slow: Vec<u32> = matmul_bt_portable(&a, &b, s)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(fast, slow, "{m}×{k}×{n}");
            // And the result is the product, up to rounding.
            for i in 0..m {
                for j in 0..n {
                    let p = |t: usize| f64::from(a[i * k + t]) * f64::from(b[j * k + t]);
                    let want: f64 = (0..k).map(p).sum();
                    let scale: f64 = (0..k).map(|t| p(t).abs()).sum();
                    let got = f64::from(f32::from_bits(fast[i * n + j]));
                    // f32 rounding error of a sum: a few ulps of the
                    // magnitudes summed.
                    assert!((got - want).abs() <= 1e-6 * scale, "{got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn the_order_is_the_documented_one() {
        let b = vec![1f32; 16];
        let s = Shape::check(16, 16, 1, 16, 1, 1).expect("shape");
        // Elements 0 and 4 go to sums 0 and 4, which are added first, so
        // the 1 in sum 1 survives; a sum from left to right would lose it
        // in 1e8 + 1.
        let mut a = vec![0f32; 16];
        a[0] = 1e8;
        a[1] = 1.0;
        a[4] = -1e8;
        assert_eq!(matmul_bt(&a, &b, s), [1.0]);
        assert_eq!(matmul_bt_portable(&a, &b, s), [1.0]);
        // Elements 0 and 8 share sum 0, where the 1 is lost; from left to
        // right, 1e8 - 1e8 comes first and the 1 survives.
        let mut a = vec![0f32; 16];
        a[0] = 1e8;
        a[4] = -1e8;
        a[8] = 1.0;
        assert_eq!(matmul_bt(&a, &b, s), [0.0]);
        assert_eq!(matmul_bt_portable(&a, &b, s), [0.0]);
    }

    #[test]
    fn nans_are_canonical_and_zeros_keep_their_sign() {
        let s = Shape::check(2, 2, 1, 2, 1, 1).expect("shape");
        let nan = f32::from_bits(0x7fc0_1234);
        let out = matmul_bt(&[nan, 1.0], &[1.0, 1.0], s);
        assert_eq!(out[0].to_bits(), 0x7fc0_0000);
        let s = Shape::check(1, 1, 1, 1, 1, 1).expect("shape");
        let z = matmul_bt(&[-0.0], &[1.0], s)[0];
        assert_eq!(
            z.to_bits(),
            matmul_bt_portable(&[-0.0], &[1.0], s)[0].to_bits()
        );
    }

    #[test]
    fn bad_shapes_and_huge_results_are_refused_with_the_reason() {
        assert!(matches!(
            Shape::check(6, 6, 2, 3, 2, 100),
            Ok(Shape { m: 2, k: 3, n: 2 })
        ));
        let e = Shape::check(5, 6, 2, 3, 2, 100).unwrap_err();
        assert!(e.to_string().contains("a has 5 values"), "{e}");
        let e = Shape::check(6, 7, 2, 3, 2, 100).unwrap_err();
        assert!(e.to_string().contains("b has 7 values"), "{e}");
        assert!(matches!(
            Shape::check(0, 0, 0, 3, 2, 100),
            Err(TensorError::Shape(_))
        ));
        // 2^32 × 1 results from tiny operands: refused before any work.
        let e = Shape::check(u32::MAX as usize, 1, u32::MAX, 1, 1, 1 << 20).unwrap_err();
        assert!(matches!(e, TensorError::TooLarge { .. }), "{e}");
        // The cost grows with the work.
        let small = Shape { m: 2, k: 3, n: 2 }.cost();
        let big = Shape { m: 200, k: 3, n: 2 }.cost();
        assert!(small > 0 && big > 50 * small, "{small} {big}");
    }
}
