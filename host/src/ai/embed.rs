//! Sentence embeddings with all-MiniLM-L6-v2 (`builtin:embed`): the model
//! files from the AI data cache, the sandboxed task that embeds a batch,
//! and the very same model (the `embed-model` crate) run natively as the
//! reference a sandboxed run is compared with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use embed_model::Embedder;

use super::AiError;
use crate::sandbox::{DataSource, Task, TaskData, WasmModule};

/// 111 varied English sentences, one a line (`tests/data/sentences.txt`):
/// the test set of the embedding tests, the benchmark and the example. The
/// first two are paraphrases of each other.
pub const SENTENCES: &str = include_str!("../../../tests/data/sentences.txt");

/// Fuel of one embedding task: the 111 sentences of [`SENTENCES`] take
/// 4.1e10 (measured, the model's load included), so this is enough for
/// about 500 short sentences, and its most possible cost (2e5 at a price
/// of 1 per million) leaves a newcomer's credit room for several jobs.
pub const TASK_FUEL: u64 = 200_000_000_000;
/// Memory of one embedding task: the 87 MiB of weights twice while they
/// load (file bytes and tensors), and the activations of a sub-batch.
pub const TASK_MEMORY: u64 = 512 << 20;

/// The model's files in the AI data cache (`minilm/`).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `model.safetensors`, mounted as `/data/model`.
    pub model: PathBuf,
    /// `vocab.txt`, mounted as `/data/vocab`.
    pub vocab: PathBuf,
}

impl ModelFiles {
    /// Finds the files under [`super::data_dir`], or [`AiError::Missing`]
    /// naming the fetch script.
    pub fn locate() -> Result<Self, AiError> {
        Self::locate_in(&super::data_dir())
    }

    /// Finds the files under `dir/minilm`.
    pub fn locate_in(dir: &Path) -> Result<Self, AiError> {
        let d = dir.join("minilm");
        Ok(ModelFiles {
            model: super::require(&d, "model.safetensors")?,
            vocab: super::require(&d, "vocab.txt")?,
        })
    }

    /// The bytes of both files, `(model, vocab)`.
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), AiError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| AiError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        Ok((read(&self.model)?, read(&self.vocab)?))
    }

    /// The task's data blobs: `model` and `vocab`, by hash, read from the
    /// files when the task runs.
    pub fn task_data(&self) -> Result<Vec<TaskData>, AiError> {
        let (model, vocab) = self.read()?;
        Ok(vec![
            TaskData {
                name: "model".into(),
                hash: *blake3::hash(&model).as_bytes(),
                source: DataSource::File(self.model.clone()),
            },
            TaskData {
                name: "vocab".into(),
                hash: *blake3::hash(&vocab).as_bytes(),
                source: DataSource::File(self.vocab.clone()),
            },
        ])
    }
}

/// The input of `builtin:embed`: one sentence a line. Refuses sentences
/// with a newline in them, which would split.
pub fn input(sentences: &[&str]) -> Result<Vec<u8>, AiError> {
    if let Some(s) = sentences.iter().find(|s| s.contains('\n')) {
        return Err(AiError::Embed(format!("a sentence holds a newline: {s:?}")));
    }
    let mut out = sentences.join("\n").into_bytes();
    out.push(b'\n');
    Ok(out)
}

/// A sandbox task that embeds `sentences` with the built-in workload, the
/// model attached from `files`.
pub fn task(files: &ModelFiles, sentences: &[&str]) -> Result<Task, AiError> {
    let mut t = Task::new(WasmModule::new(crate::workloads::EMBED), input(sentences)?);
    t.data = files.task_data()?;
    t.limits.fuel = TASK_FUEL;
    t.limits.memory_bytes = TASK_MEMORY;
    Ok(t)
}

/// Decodes the workload's output; checks it has one embedding per sentence.
pub fn decode(output: &[u8], sentences: usize) -> Result<Vec<Vec<f32>>, AiError> {
    let e = embed_model::decode(output).map_err(|e| AiError::Embed(e.to_string()))?;
    if e.len() != sentences || e.iter().any(|v| v.len() != embed_model::HIDDEN) {
        return Err(AiError::Embed(format!(
            "{} embeddings for {sentences} sentences",
            e.len()
        )));
    }
    Ok(e)
}

/// The model loaded natively, to embed on this machine without a sandbox.
#[derive(Debug, Clone)]
pub struct Native(Arc<Embedder>);

impl Native {
    /// Loads the model from `files`.
    pub fn load(files: &ModelFiles) -> Result<Self, AiError> {
        let (model, vocab) = files.read()?;
        Embedder::load(&model, &vocab)
            .map(|e| Native(Arc::new(e)))
            .map_err(|e| AiError::Embed(e.to_string()))
    }

    /// Embeds `sentences` exactly as the workload does (same code, same
    /// sub-batches).
    pub fn embed(&self, sentences: &[&str]) -> Result<Vec<Vec<f32>>, AiError> {
        self.0
            .embed(sentences, |_| {})
            .map_err(|e| AiError::Embed(e.to_string()))
    }
}

/// Cosine similarity of two embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    embed_model::cosine(a, b)
}

/// The `k` rows of `corpus` most similar to `query`, best first, with
/// their cosine similarity.
pub fn top_k(query: &[f32], corpus: &[Vec<f32>], k: usize) -> Vec<(usize, f64)> {
    let mut scored: Vec<(usize, f64)> = corpus
        .iter()
        .enumerate()
        .map(|(i, v)| (i, cosine(query, v)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_one_line_per_sentence_and_top_k_ranks() {
        assert_eq!(input(&["a", "b c"]).unwrap(), b"a\nb c\n");
        assert!(input(&["a\nb"]).is_err());
        let corpus = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.7, 0.7]];
        let top = top_k(&[1.0, 0.1], &corpus, 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 2]);
    }
}
