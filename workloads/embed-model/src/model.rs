//! The 6-layer BERT encoder of all-MiniLM-L6-v2 on candle's CPU backend,
//! with sentence-transformers' mean pooling and L2 normalisation.
//!
//! Written with `candle-core`/`candle-nn` directly rather than
//! `candle-transformers`: this one model needs about a hundred lines, and
//! the model zoo crate would add minutes to every cold build (natively and
//! for wasm).

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Storage, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear};

use crate::EmbedError;

/// Width of the hidden states and of an embedding.
pub const HIDDEN: usize = 384;
/// Attention heads.
const HEADS: usize = 12;
/// Encoder layers.
const LAYERS: usize = 6;
/// `layer_norm_eps` of the model's config.
const EPS: f64 = 1e-12;

/// Computes `a · bᵀ` for `a` of `m × k` and `b` of `n × k`, both row-major:
/// the linear layers' products, which are nearly all of the model's
/// arithmetic. The sandboxed workload passes the host's tensor interface
/// (`biop2p_guest::tensor::matmul_bt`); without one, candle computes them.
pub type MatmulBt<'a> = &'a dyn Fn(&[f32], &[f32], u32, u32, u32) -> Result<Vec<f32>, String>;

/// A linear layer whose product can be computed elsewhere.
struct Dense(Linear);

impl Dense {
    fn forward(&self, x: &Tensor, mm: Option<MatmulBt<'_>>) -> Result<Tensor, EmbedError> {
        let Some(mm) = mm else {
            return Ok(self.0.forward(x)?);
        };
        let mut dims = x.dims().to_vec();
        let k = dims.last().copied().unwrap_or(0);
        let weight = self.0.weight();
        let (n, _) = weight.dims2()?;
        let m = x.elem_count() / k.max(1);
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let (storage, layout) = weight.storage_and_layout();
        // The weights as stored (loaded contiguous), without a copy.
        let w = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(c), Some((from, to))) => &c.as_slice::<f32>()?[from..to],
            _ => return Err(EmbedError::Weights("weights are not contiguous f32".into())),
        };
        let dim = |v: usize| u32::try_from(v).map_err(|_| EmbedError::Input(format!("{v} rows")));
        let out = mm(&xs, w, dim(m)?, dim(k)?, dim(n)?).map_err(EmbedError::Tensor)?;
        drop(storage);
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        let y = Tensor::from_vec(out, dims, x.device())?;
        Ok(match self.0.bias() {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    inter: Dense,
    out: Dense,
    out_norm: LayerNorm,
}

/// The loaded weights.
pub struct Model {
    word: Embedding,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    device: Device,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("layers", &LAYERS).finish()
    }
}

struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, EmbedError> {
        let t = self
            .0
            .remove(name)
            .ok_or_else(|| EmbedError::Weights(format!("no tensor {name}")))?;
        if t.dims() != shape || t.dtype() != DType::F32 {
            return Err(EmbedError::Weights(format!(
                "{name} is {:?} {:?}, want f32 {shape:?}",
                t.dtype(),
                t.dims()
            )));
        }
        Ok(t)
    }

    fn linear(&mut self, p: &str, out: usize, inp: usize) -> Result<Dense, EmbedError> {
        let weight = self.take(&format!("{p}.weight"), &[out, inp])?;
        let bias = self.take(&format!("{p}.bias"), &[out])?;
        Ok(Dense(Linear::new(weight, Some(bias))))
    }

    fn norm(&mut self, p: &str) -> Result<LayerNorm, EmbedError> {
        let w = self.take(&format!("{p}.weight"), &[HIDDEN])?;
        let b = self.take(&format!("{p}.bias"), &[HIDDEN])?;
        Ok(LayerNorm::new(w, b, EPS))
    }
}

impl Model {
    /// Loads the model from the bytes of its `model.safetensors` (the
    /// tensor names of Hugging Face's `BertModel`; the pooler is unused).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, EmbedError> {
        let device = Device::Cpu;
        let mut w = Weights(candle_core::safetensors::load_buffer(bytes, &device)?);
        let vocab =
            w.0.get("embeddings.word_embeddings.weight")
                .map(|t| t.dims().first().copied().unwrap_or(0))
                .ok_or_else(|| EmbedError::Weights("no word embeddings".into()))?;
        let word = Embedding::new(
            w.take("embeddings.word_embeddings.weight", &[vocab, HIDDEN])?,
            HIDDEN,
        );
        let position = w.take("embeddings.position_embeddings.weight", &[512, HIDDEN])?;
        let token_type = w
            .take("embeddings.token_type_embeddings.weight", &[2, HIDDEN])?
            .get(0)?;
        let emb_norm = w.norm("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(LAYERS);
        for i in 0..LAYERS {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: w.linear(&format!("{p}.attention.self.query"), HIDDEN, HIDDEN)?,
                key: w.linear(&format!("{p}.attention.self.key"), HIDDEN, HIDDEN)?,
                value: w.linear(&format!("{p}.attention.self.value"), HIDDEN, HIDDEN)?,
                attn_out: w.linear(&format!("{p}.attention.output.dense"), HIDDEN, HIDDEN)?,
                attn_norm: w.norm(&format!("{p}.attention.output.LayerNorm"))?,
                inter: w.linear(&format!("{p}.intermediate.dense"), 4 * HIDDEN, HIDDEN)?,
                out: w.linear(&format!("{p}.output.dense"), HIDDEN, 4 * HIDDEN)?,
                out_norm: w.norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Model {
            word,
            position,
            token_type,
            emb_norm,
            layers,
            device,
        })
    }

    /// Normalised sentence embeddings of one batch of token-id sequences
    /// (each `[CLS] … [SEP]`, at most 512 long): the batch is padded to its
    /// longest sequence, padding is masked out of attention and pooling.
    pub fn embed(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_with(batch, None)
    }

    /// [`embed`](Self::embed) with the linear layers' products computed by
    /// `mm` (see [`MatmulBt`]).
    pub fn embed_with(
        &self,
        batch: &[Vec<u32>],
        mm: Option<MatmulBt<'_>>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let b = batch.len();
        let len = batch.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 {
            return Ok(Vec::new());
        }
        if len == 0 || len > 512 {
            return Err(EmbedError::Input(format!(
                "sequences of 1 to 512 tokens, got {len}"
            )));
        }
        let mut ids = Vec::with_capacity(b * len);
        let mut mask = Vec::with_capacity(b * len);
        for s in batch {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(0, len - s.len()));
            mask.extend(std::iter::repeat_n(1f32, s.len()));
            mask.extend(std::iter::repeat_n(0f32, len - s.len()));
        }
        let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;

        let x = self
            .word
            .forward(&ids)?
            .broadcast_add(&self.position.narrow(0, 0, len)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.emb_norm.forward(&x)?;
        // 0 where attended, -10000 on padding: added to the scores.
        let bias = mask.affine(10000.0, -10000.0)?.reshape((b, 1, 1, len))?;
        for l in &self.layers {
            x = l.forward(&x, &bias, mm)?;
        }
        let m = mask.unsqueeze(2)?;
        let sum = x.broadcast_mul(&m)?.sum(1)?;
        let mean = sum.broadcast_div(&mask.sum_keepdim(1)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        mm: Option<MatmulBt<'_>>,
    ) -> Result<Tensor, EmbedError> {
        let (b, len, _) = x.dims3()?;
        let d = HIDDEN / HEADS;
        let heads = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, len, HEADS, d))?.transpose(1, 2)?.contiguous()
        };
        let q = heads(self.query.forward(x, mm)?)?;
        let k = heads(self.key.forward(x, mm)?)?;
        let v = heads(self.value.forward(x, mm)?)?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, len, HIDDEN))?;
        let a = self
            .attn_norm
            .forward(&(self.attn_out.forward(&ctx, mm)? + x)?)?;
        let h = self.inter.forward(&a, mm)?.gelu_erf()?;
        let o = (self.out.forward(&h, mm)? + &a)?;
        Ok(self.out_norm.forward(&o)?)
    }
}
