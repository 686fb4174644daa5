//! biop2p workload: multiply two deterministic `n × n` f32 matrices.
//!
//! The kernel is [`matmul_kernel::matmul`], the same code the host runs
//! natively, so wasm and native timings compare like with like.
//!
//! # Input
//!
//! Up to four little-endian `u32`s, each optional from the right:
//!
//! | bytes   | field  | default | meaning                                          |
//! |---------|--------|---------|--------------------------------------------------|
//! | 0..4    | `n`    | 128     | matrix size (1..=4096)                           |
//! | 4..8    | `seed` | 1       | seed for [`matmul_kernel::make_inputs`]          |
//! | 8..12   | `reps` | 1       | how many times to multiply (0 counts as 1)       |
//! | 12..16  | `flags`| 0       | bit 0: return the checksum instead of the matrix |
//!
//! Empty input therefore means `n = 128, seed = 1, reps = 1`. Any other
//! length (not 0, 4, 8, 12 or 16) is an error.
//!
//! # Output
//!
//! * flags bit 0 clear: `c = a × b` as `n·n` little-endian f32, row-major
//!   (`4·n²` bytes);
//! * flags bit 0 set: [`matmul_kernel::checksum`] of `c` as a little-endian
//!   `u64` (8 bytes) — bit-for-bit the same as a native run's.
//!
//! Repetitions recompute the same product (for timing); progress is
//! reported after each.
//!
//! # Build
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+simd128" \
//!   cargo build --release --target wasm32-wasip2 -p wl-matmul
//! ```

/// Largest accepted `n` (three 4096² f32 matrices are 192 MiB).
pub const MAX_N: u32 = 4096;
/// Flag bit: return the 8-byte checksum instead of the matrix.
pub const FLAG_CHECKSUM: u32 = 1;

/// A decoded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Matrix size.
    pub n: u32,
    /// Input seed.
    pub seed: u32,
    /// Repetitions (at least 1).
    pub reps: u32,
    /// Flag bits ([`FLAG_CHECKSUM`]).
    pub flags: u32,
}

impl Request {
    /// Decode the input format described in the crate docs.
    pub fn decode(input: &[u8]) -> Result<Self, String> {
        if input.len() > 16 || !input.len().is_multiple_of(4) {
            return Err(format!(
                "input must be 0, 4, 8, 12 or 16 bytes (u32 LE n, seed, reps, flags), got {}",
                input.len()
            ));
        }
        let word = |i: usize| {
            input
                .get(4 * i..4 * i + 4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        };
        let req = Self {
            n: word(0).unwrap_or(128),
            seed: word(1).unwrap_or(1),
            reps: word(2).unwrap_or(1).max(1),
            flags: word(3).unwrap_or(0),
        };
        if req.n == 0 || req.n > MAX_N {
            return Err(format!("n must be in 1..={MAX_N}, got {}", req.n));
        }
        if req.flags & !FLAG_CHECKSUM != 0 {
            return Err(format!(
                "unknown flag bits {:#x}",
                req.flags & !FLAG_CHECKSUM
            ));
        }
        Ok(req)
    }

    /// Encode (the inverse of [`Request::decode`], always 16 bytes).
    pub fn encode(&self) -> Vec<u8> {
        [self.n, self.seed, self.reps, self.flags]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }
}

/// Run the workload on raw input bytes.
pub fn run(input: Vec<u8>) -> Result<Vec<u8>, String> {
    let req = Request::decode(&input)?;
    let n = req.n as usize;
    let (a, b) = matmul_kernel::make_inputs(n, req.seed);
    let mut c = vec![0.0f32; n * n];
    for rep in 0..req.reps {
        matmul_kernel::matmul(
            core::hint::black_box(&a),
            core::hint::black_box(&b),
            &mut c,
            n,
        );
        biop2p_guest::progress((rep + 1) as f32 / req.reps as f32);
    }
    if req.flags & FLAG_CHECKSUM != 0 {
        Ok(matmul_kernel::checksum(&c).to_le_bytes().to_vec())
    } else {
        Ok(c.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

biop2p_guest::workload!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_defaults_and_errors() {
        let d = Request::decode(&[]).unwrap();
        assert_eq!(
            d,
            Request {
                n: 128,
                seed: 1,
                reps: 1,
                flags: 0
            }
        );
        let r = Request {
            n: 5,
            seed: 9,
            reps: 3,
            flags: FLAG_CHECKSUM,
        };
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        assert_eq!(Request::decode(&7u32.to_le_bytes()).unwrap().n, 7);
        assert!(Request::decode(&[1, 2, 3]).is_err());
        assert!(Request::decode(&0u32.to_le_bytes()).is_err());
        assert!(Request::decode(&(MAX_N + 1).to_le_bytes()).is_err());
        let bad = Request { flags: 2, ..r };
        assert!(Request::decode(&bad.encode()).is_err());
    }

    #[test]
    fn output_matches_kernel() {
        let r = Request {
            n: 9,
            seed: 3,
            reps: 2,
            flags: 0,
        };
        let out = run(r.encode()).unwrap();
        assert_eq!(out.len(), 4 * 81);
        let c: Vec<f32> = out
            .chunks_exact(4)
            .map(|w| f32::from_le_bytes(w.try_into().unwrap()))
            .collect();
        let sum = run(Request {
            flags: FLAG_CHECKSUM,
            ..r
        }
        .encode())
        .unwrap();
        assert_eq!(sum, matmul_kernel::checksum(&c).to_le_bytes());
    }
}
