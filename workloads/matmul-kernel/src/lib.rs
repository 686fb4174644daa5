//! An f32 matrix-multiply kernel, written once and compiled both natively
//! (linked by the host for the native side of the wasm/native benchmark) and
//! for wasm (inside the `wl-matmul` workload, with `+simd128`).
//!
//! The algorithm is cache-blocked; inside a block, a register-blocked
//! micro-kernel computes 4 rows × 8 columns of `c` at once, keeping them in
//! registers over the block's `k` range (one load of `b`'s row and 4 of `a`
//! per 32 multiply-adds, instead of a load and a store of `c` per 8). Rows
//! and columns left over use an `axpy` (`c_row += a_ik * b_row`) and a
//! scalar loop. It is plain, portable Rust with no intrinsics: LLVM
//! auto-vectorises it to 128-bit vectors on both sides (SSE2, the x86-64
//! baseline; wasm `simd128`), so the wasm/native ratio compares the same code
//! on the same vector width. (The earlier axpy-only kernel was load/store
//! bound, and in wasm the loop's fuel check left too few registers, so its
//! splat was spilled and reloaded each iteration: 2.9× native.)
//!
//! Every `c[i][j]` is accumulated as `((0 + a[i][0]·b[0][j]) + a[i][1]·b[1][j]) + …`
//! in increasing `k`, whatever the blocking, and Rust never fuses the
//! multiply-add, so the result is bit-for-bit the same on every target — the
//! [`checksum`] of a wasm run equals the native one.
//!
//! The crate is `no_std` (it needs `alloc` for [`make_inputs`]).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::vec::Vec;

/// Lanes per chunk of the inner loop (two 128-bit vectors).
const LANES: usize = 8;
/// Columns of `b`/`c` per block: 256 f32 = 1 KiB per row slice.
const BLOCK_J: usize = 256;
/// Rows of `b` per block: `BLOCK_K × BLOCK_J` f32 = 64 KiB of `b` stays hot.
const BLOCK_K: usize = 64;

/// Rows of `c` computed together by the micro-kernel.
const MR: usize = 4;

/// `c = a × b` for `n × n` row-major matrices.
///
/// `c`'s previous contents are overwritten.
///
/// # Panics
///
/// If any slice's length is not `n * n`.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], n: usize) {
    let nn = n.checked_mul(n).expect("n * n overflows usize");
    assert_eq!(a.len(), nn, "a must have n*n elements");
    assert_eq!(b.len(), nn, "b must have n*n elements");
    assert_eq!(c.len(), nn, "c must have n*n elements");
    c.fill(0.0);
    let full_rows = n - n % MR;
    for jj in (0..n).step_by(BLOCK_J) {
        let j_end = (jj + BLOCK_J).min(n);
        // Columns the micro-kernel covers, in whole chunks of LANES.
        let j_full = jj + (j_end - jj) / LANES * LANES;
        for kk in (0..n).step_by(BLOCK_K) {
            let k_end = (kk + BLOCK_K).min(n);
            let kn = k_end - kk;
            for i in (0..full_rows).step_by(MR) {
                // `a[i..i+MR][kk..k_end]` packed k-major, so the micro-kernel
                // reads the MR values of one k from one place.
                let mut a_pack = [0.0f32; BLOCK_K * MR];
                for (t, p) in a_pack[..kn * MR].chunks_exact_mut(MR).enumerate() {
                    for (r, x) in p.iter_mut().enumerate() {
                        *x = a[(i + r) * n + kk + t];
                    }
                }
                for j in (jj..j_full).step_by(LANES) {
                    micro_kernel(&a_pack[..kn * MR], &b[kk * n..k_end * n], c, n, i, j);
                }
                for r in i..i + MR {
                    for j in j_full..j_end {
                        let mut s = c[r * n + j];
                        for k in kk..k_end {
                            s += a[r * n + k] * b[k * n + j];
                        }
                        c[r * n + j] = s;
                    }
                }
            }
            for i in full_rows..n {
                let a_row = &a[i * n + kk..i * n + k_end];
                let c_row = &mut c[i * n + jj..i * n + j_end];
                for (k, &a_ik) in (kk..k_end).zip(a_row) {
                    axpy(c_row, a_ik, &b[k * n + jj..k * n + j_end]);
                }
            }
        }
    }
}

/// `c[i..i+MR][j..j+LANES] += a_pack × b_rows[..][j..j+LANES]`, with the
/// `MR × LANES` block of `c` held in registers across the whole `k` range:
/// per `k`, one row chunk of `b` and `MR` packed values of `a` are loaded
/// for `MR × LANES` multiply-adds. Each `c[i][j]` still sums in increasing
/// `k`.
#[inline(always)]
fn micro_kernel(a_pack: &[f32], b_rows: &[f32], c: &mut [f32], n: usize, i: usize, j: usize) {
    let mut acc = [[0.0f32; LANES]; MR];
    for (r, row) in acc.iter_mut().enumerate() {
        row.copy_from_slice(&c[(i + r) * n + j..][..LANES]);
    }
    for (ap, b_row) in a_pack.chunks_exact(MR).zip(b_rows.chunks_exact(n)) {
        kernel_step(&mut acc, ap, &b_row[j..j + LANES]);
    }
    for (r, row) in acc.iter().enumerate() {
        c[(i + r) * n + j..][..LANES].copy_from_slice(row);
    }
}

/// One `k` of the micro-kernel: `acc[r] += ap[r] * bk` for each row `r`.
#[inline(always)]
fn kernel_step(acc: &mut [[f32; LANES]; MR], ap: &[f32], bk: &[f32]) {
    let bk: &[f32; LANES] = bk.try_into().expect("chunk of LANES");
    for r in 0..MR {
        let ar = ap[r];
        for l in 0..LANES {
            acc[r][l] += ar * bk[l];
        }
    }
}

/// `c += a * b`, element-wise; `c` and `b` have the same length.
#[inline(always)]
fn axpy(c: &mut [f32], a: f32, b: &[f32]) {
    debug_assert_eq!(c.len(), b.len());
    let mut c_chunks = c.chunks_exact_mut(LANES);
    let mut b_chunks = b.chunks_exact(LANES);
    for (cx, bx) in (&mut c_chunks).zip(&mut b_chunks) {
        let cx: &mut [f32; LANES] = cx.try_into().expect("chunk of LANES");
        let bx: &[f32; LANES] = bx.try_into().expect("chunk of LANES");
        for l in 0..LANES {
            cx[l] += a * bx[l];
        }
    }
    for (x, &y) in c_chunks
        .into_remainder()
        .iter_mut()
        .zip(b_chunks.remainder())
    {
        *x += a * y;
    }
}

/// Deterministic inputs `(a, b)` of `n × n` values in `[-1, 1)`.
///
/// The same `(n, seed)` gives the same matrices on every target. Values are
/// multiples of 2⁻¹⁰ so products are exact and only the sums round.
pub fn make_inputs(n: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
    let nn = n.checked_mul(n).expect("n * n overflows usize");
    let mut rng = XorShift32::new(seed);
    let a = (0..nn).map(|_| rng.next_f32()).collect();
    let b = (0..nn).map(|_| rng.next_f32()).collect();
    (a, b)
}

/// A 64-bit FNV-1a hash of the bit patterns of `c`.
///
/// Equal checksums mean bit-identical matrices (up to hash collisions).
pub fn checksum(c: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in c {
        for byte in x.to_bits().to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Floating-point operations of one `n × n` multiply (`2n³`).
pub fn flops(n: usize) -> f64 {
    let n = n as f64;
    2.0 * n * n * n
}

/// Marsaglia's xorshift32, seeded through a mixing step so that every seed
/// (including 0) gives a good, non-zero state.
struct XorShift32(u32);

impl XorShift32 {
    fn new(seed: u32) -> Self {
        let mut s = seed.wrapping_add(0x9e37_79b9);
        s = (s ^ (s >> 16)).wrapping_mul(0x85eb_ca6b);
        s = (s ^ (s >> 13)).wrapping_mul(0xc2b2_ae35);
        s ^= s >> 16;
        Self(if s == 0 { 0x1234_5678 } else { s })
    }

    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A multiple of 2⁻¹⁰ in `[-1, 1)`.
    fn next_f32(&mut self) -> f32 {
        let k = (self.next_u32() >> 21) as i32 - 1024; // -1024..=1023
        k as f32 / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook triple loop, summing in increasing `k` like [`matmul`].
    fn naive(a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0f32;
                for k in 0..n {
                    s += a[i * n + k] * b[k * n + j];
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive_bit_for_bit() {
        // Sizes below, at and across the lane and block boundaries.
        for n in [0, 1, 2, 3, 7, 8, 9, 17, 63, 64, 65, 130, 257, 300] {
            let (a, b) = make_inputs(n, n as u32);
            let mut c = vec![f32::NAN; n * n];
            matmul(&a, &b, &mut c, n);
            let want = naive(&a, &b, n);
            assert_eq!(
                c.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "n = {n}"
            );
            assert_eq!(checksum(&c), checksum(&want));
        }
    }

    #[test]
    fn identity_and_small_example() {
        let n = 3;
        let (a, _) = make_inputs(n, 7);
        let mut id = vec![0.0; n * n];
        for i in 0..n {
            id[i * n + i] = 1.0;
        }
        let mut c = vec![0.0; n * n];
        matmul(&a, &id, &mut c, n);
        assert_eq!(c, a);

        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0.0; 4];
        matmul(&a, &b, &mut c, 2);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn inputs_are_deterministic_and_in_range() {
        let (a1, b1) = make_inputs(33, 42);
        let (a2, b2) = make_inputs(33, 42);
        assert_eq!(a1, a2);
        assert_eq!(b1, b2);
        assert_ne!(a1, b1);
        let (a3, _) = make_inputs(33, 43);
        assert_ne!(a1, a3);
        let (a0, _) = make_inputs(33, 0);
        assert!(
            a0.iter().any(|&x| x != a0[0]),
            "seed 0 must not be degenerate"
        );
        for x in a1.iter().chain(&b1) {
            assert!((-1.0..1.0).contains(x));
            assert_eq!((x * 1024.0).fract(), 0.0);
        }
        // Pin the generator: a change would silently change benchmark inputs.
        // (Values computed independently from the xorshift32 definition.)
        let (a, b) = make_inputs(2, 1);
        assert_eq!(a, [449, 670, -771, -365].map(|k: i32| k as f32 / 1024.0));
        assert_eq!(b, [-961, -341, -420, 673].map(|k: i32| k as f32 / 1024.0));
    }

    #[test]
    fn checksum_sees_single_bit_changes() {
        let (a, _) = make_inputs(8, 1);
        let mut b = a.clone();
        b[5] = f32::from_bits(b[5].to_bits() ^ 1);
        assert_ne!(checksum(&a), checksum(&b));
        assert_ne!(checksum(&[0.0]), checksum(&[-0.0]));
    }

    /// The checksum a `wl-matmul` run in wasm (simd128) gave for
    /// `n = 256, seed = 1`: native must agree bit for bit.
    #[test]
    fn native_matches_wasm_checksum() {
        let n = 256;
        let (a, b) = make_inputs(n, 1);
        let mut c = vec![0.0; n * n];
        matmul(&a, &b, &mut c, n);
        assert_eq!(checksum(&c), 0xc2f8_b4e0_f31d_932f);
    }

    #[test]
    #[should_panic(expected = "n*n")]
    fn wrong_length_panics() {
        let mut c = vec![0.0; 4];
        matmul(&[0.0; 3], &[0.0; 4], &mut c, 2);
    }

    #[test]
    fn flops_counts() {
        assert_eq!(flops(10), 2000.0);
    }
}
