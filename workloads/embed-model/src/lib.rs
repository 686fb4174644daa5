//! all-MiniLM-L6-v2 sentence embeddings in pure Rust: the BERT WordPiece
//! tokenizer ([`tokenizer`]), the 6-layer encoder on candle's CPU backend
//! ([`model`]) and the embeddings' byte format.
//!
//! The same crate is compiled into the `wl-embed` guest (wasm32, simd128)
//! and natively into the host, so the host can run the very same model as
//! the reference a sandboxed run is checked against.
//!
//! # Formats
//!
//! - Input: UTF-8 text, one sentence per line (`\n`, a `\r` before it is
//!   dropped; a final newline does not start another sentence; an empty
//!   line is an empty sentence and still gets an embedding).
//! - Output (little-endian): `b"EMB1"`, `u32` sentences, `u32` dimensions
//!   (384), then the L2-normalised embeddings as `f32`, one sentence after
//!   another in input order.

pub mod model;
pub mod tokenizer;

pub use model::{HIDDEN, MatmulBt, Model};
pub use tokenizer::{MAX_TOKENS, Tokenizer};

/// Bytes before the values in the output format.
pub const HEADER: usize = 12;
/// Sentences embedded in one forward pass: the guest's memory bounds the
/// activations (a batch of 32 × 128 tokens needs about 40 MiB).
pub const SUB_BATCH: usize = 32;
/// Most sentences one task may hold.
pub const MAX_SENTENCES: usize = 100_000;

/// Errors of tokenizing, loading and running the model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// `vocab.txt` lacks a special token.
    #[error("vocabulary: {0}")]
    Vocab(String),
    /// The weights are missing a tensor or have the wrong shape.
    #[error("weights: {0}")]
    Weights(String),
    /// The input or an embeddings file is malformed.
    #[error("input: {0}")]
    Input(String),
    /// candle failed (reading the safetensors, a shape, an operation).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The tensor interface refused a product.
    #[error("tensor: {0}")]
    Tensor(String),
}

/// The tokenizer and the model, loaded once and used for many sentences.
#[derive(Debug)]
pub struct Embedder {
    /// The WordPiece tokenizer.
    pub tokenizer: Tokenizer,
    /// The encoder.
    pub model: Model,
}

impl Embedder {
    /// Loads from the bytes of `model.safetensors` and `vocab.txt`.
    pub fn load(safetensors: &[u8], vocab: &[u8]) -> Result<Self, EmbedError> {
        let vocab =
            std::str::from_utf8(vocab).map_err(|e| EmbedError::Vocab(format!("not UTF-8: {e}")))?;
        Ok(Embedder {
            tokenizer: Tokenizer::from_vocab(vocab)?,
            model: Model::from_safetensors(safetensors)?,
        })
    }

    /// Embeds `sentences` in input order, [`SUB_BATCH`] at a time, each
    /// sub-batch padded only to its longest sentence. `progress` is told
    /// the fraction done after each sub-batch.
    pub fn embed(
        &self,
        sentences: &[&str],
        progress: impl FnMut(f32),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_with(sentences, None, progress)
    }

    /// [`embed`](Self::embed) with the linear layers' products computed by
    /// `mm` (see [`MatmulBt`]).
    pub fn embed_with(
        &self,
        sentences: &[&str],
        mm: Option<MatmulBt<'_>>,
        mut progress: impl FnMut(f32),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(sentences.len());
        for chunk in sentences.chunks(SUB_BATCH) {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|s| self.tokenizer.encode(s)).collect();
            out.extend(self.model.embed_with(&ids, mm)?);
            progress(out.len() as f32 / sentences.len() as f32);
        }
        Ok(out)
    }
}

/// The sentences of an input: its lines (see the crate docs).
pub fn split_sentences(input: &str) -> Vec<&str> {
    let body = input.strip_suffix('\n').unwrap_or(input);
    if body.is_empty() && input.is_empty() {
        return Vec::new();
    }
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

/// Encodes embeddings in the output format.
pub fn encode(embeddings: &[Vec<f32>]) -> Vec<u8> {
    let dim = embeddings.first().map_or(HIDDEN, Vec::len);
    let mut out = Vec::with_capacity(HEADER + 4 * dim * embeddings.len());
    out.extend_from_slice(b"EMB1");
    out.extend_from_slice(&(embeddings.len() as u32).to_le_bytes());
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    for v in embeddings.iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes the output format.
pub fn decode(b: &[u8]) -> Result<Vec<Vec<f32>>, EmbedError> {
    let bad = |why: &str| EmbedError::Input(format!("embeddings: {why}"));
    if b.len() < HEADER || &b[..4] != b"EMB1" {
        return Err(bad("want EMB1, a count and a dimension"));
    }
    let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
    let (n, dim) = (u(4), u(8));
    if dim == 0 || n > MAX_SENTENCES || b.len() != HEADER + 4 * n * dim {
        return Err(bad(&format!(
            "{n} × {dim} values do not fill {} bytes",
            b.len()
        )));
    }
    Ok(b[HEADER..]
        .chunks_exact(4 * dim)
        .map(|row| {
            row.chunks_exact(4)
                .map(|x| f32::from_le_bytes(x.try_into().expect("4 bytes")))
                .collect()
        })
        .collect())
}

/// Cosine similarity of two vectors (in `f64`).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_lines_and_the_format_round_trips() {
        assert_eq!(split_sentences("a\r\nb\n\nc\n"), ["a", "b", "", "c"]);
        assert_eq!(split_sentences("a"), ["a"]);
        assert!(split_sentences("").is_empty());
        assert_eq!(split_sentences("\n"), [""]);
        let e = vec![vec![0.5f32; HIDDEN], vec![-1.0; HIDDEN]];
        let b = encode(&e);
        assert_eq!(b.len(), HEADER + 2 * 4 * HIDDEN);
        assert_eq!(decode(&b).unwrap(), e);
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert!((cosine(&e[0], &e[1]) + 1.0).abs() < 1e-12);
    }
}
