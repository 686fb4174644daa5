//! The numeric kernels, with one fixed order of operations.
//!
//! A dot product keeps four partial sums (lane `k` sums the elements at
//! `4i + k`) and adds them as `(s0 + s1) + (s2 + s3)`, then the tail. On
//! wasm with `simd128` the four sums are one `f32x4`; elsewhere they are
//! four scalars, in the same order. Wasm has no fused multiply-add and
//! Rust never fuses on its own, so every host, and a native build, computes
//! bit-identical results: that is what lets replicas of a training task be
//! compared by hash.

/// `sum(a[i] * b[i])` in the fixed order above. `a` and `b` have one length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n4 = a.len() / 4 * 4;
    let [s0, s1, s2, s3] = dot4(&a[..n4], &b[..n4]);
    let mut s = (s0 + s1) + (s2 + s3);
    for (x, y) in a[n4..].iter().zip(&b[n4..]) {
        s += x * y;
    }
    s
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn dot4(a: &[f32], b: &[f32]) -> [f32; 4] {
    use core::arch::wasm32::*;
    let mut acc = f32x4_splat(0.0);
    for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        let x = f32x4(x[0], x[1], x[2], x[3]);
        let y = f32x4(y[0], y[1], y[2], y[3]);
        acc = f32x4_add(acc, f32x4_mul(x, y));
    }
    [
        f32x4_extract_lane::<0>(acc),
        f32x4_extract_lane::<1>(acc),
        f32x4_extract_lane::<2>(acc),
        f32x4_extract_lane::<3>(acc),
    ]
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn dot4(a: &[f32], b: &[f32]) -> [f32; 4] {
    let mut acc = [0.0f32; 4];
    for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for ((s, xk), yk) in acc.iter_mut().zip(x).zip(y) {
            *s += xk * yk;
        }
    }
    acc
}

/// `y[i] += alpha * x[i]` (element-wise, so order does not matter).
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::*;
        let n4 = x.len() / 4 * 4;
        let a = f32x4_splat(alpha);
        for (xs, ys) in x[..n4].chunks_exact(4).zip(y[..n4].chunks_exact_mut(4)) {
            let xv = f32x4(xs[0], xs[1], xs[2], xs[3]);
            let yv = f32x4(ys[0], ys[1], ys[2], ys[3]);
            let r = f32x4_add(yv, f32x4_mul(a, xv));
            ys[0] = f32x4_extract_lane::<0>(r);
            ys[1] = f32x4_extract_lane::<1>(r);
            ys[2] = f32x4_extract_lane::<2>(r);
            ys[3] = f32x4_extract_lane::<3>(r);
        }
        for (xi, yi) in x[n4..].iter().zip(&mut y[n4..]) {
            *yi += alpha * xi;
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    for (xi, yi) in x.iter().zip(y.iter_mut()) {
        *yi += alpha * xi;
    }
}

/// `e^x` by range reduction and a degree-6 polynomial: the same bits on
/// every platform (a system `expf` may differ between libms). Relative
/// error about 1e-7 on the range softmax uses (`x <= 0`).
pub fn exp(x: f32) -> f32 {
    if x < -87.0 {
        return 0.0;
    }
    if x > 88.0 {
        return f32::INFINITY;
    }
    const LN2: f32 = core::f32::consts::LN_2;
    let k = (x / LN2 + if x < 0.0 { -0.5 } else { 0.5 }) as i32;
    let r = x - k as f32 * LN2;
    // Taylor series of e^r on |r| <= ln2/2, Horner form.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k + 127) as u32) << 23)
}

/// Natural logarithm for `x > 0` (reported losses only), platform-independent.
pub fn ln(x: f32) -> f32 {
    if x <= 0.0 {
        return f32::NEG_INFINITY;
    }
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    // ln(m) = 2 atanh((m-1)/(m+1)), series to s^9.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let l = 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 / 9.0))));
    l + e as f32 * core::f32::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_closely_and_exp_ln_are_accurate() {
        let a: Vec<f32> = (0..67).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..67).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum();
        assert!((dot(&a, &b) as f64 - plain).abs() < 1e-4);
        for x in [-20.0f32, -3.3, -1.0, -0.1, 0.0, 0.5, 2.0, 10.0] {
            let rel = (exp(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
            assert!(rel < 1e-6, "exp({x}) off by {rel}");
        }
        for x in [1e-6f32, 0.01, 0.5, 1.0, 3.0, 1000.0] {
            assert!((ln(x) as f64 - (x as f64).ln()).abs() < 1e-5, "ln({x})");
        }
        let mut y = vec![1.0f32; 9];
        axpy(2.0, &[1.0; 9], &mut y);
        assert_eq!(y, vec![3.0; 9]);
    }
}
