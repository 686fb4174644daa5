//! biop2p AI workload: all-MiniLM-L6-v2 sentence embeddings, run in pure
//! wasm (candle's CPU backend, simd128).
//!
//! The input is UTF-8 text, one sentence per line; the output is the
//! sentences' L2-normalised 384-dimensional embeddings in the `EMB1`
//! format (see the `embed-model` crate). The model comes as two read-only
//! data blobs: `/data/model` (`model.safetensors`) and `/data/vocab`
//! (`vocab.txt`), attached with `--data model=… --data vocab=…`. The whole
//! input is one task: the model is loaded once, then the sentences are
//! embedded in sub-batches, each padded to its longest sentence.

fn read(name: &str) -> Result<Vec<u8>, String> {
    let path = format!("/data/{name}");
    std::fs::read(&path)
        .map_err(|e| format!("cannot read {path} (attach it with --data {name}=FILE): {e}"))
}

/// The workload: embeds the lines of `input`.
pub fn run(input: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(input).map_err(|e| format!("input is not UTF-8: {e}"))?;
    let sentences = embed_model::split_sentences(text);
    if sentences.len() > embed_model::MAX_SENTENCES {
        return Err(format!(
            "{} sentences: at most {} per task",
            sentences.len(),
            embed_model::MAX_SENTENCES
        ));
    }
    let vocab = read("vocab")?;
    let embedder = {
        // The file's bytes are dropped once the tensors are made from them.
        let model = read("model")?;
        embed_model::Embedder::load(&model, &vocab).map_err(|e| e.to_string())?
    };
    let e = embedder
        .embed(&sentences, biop2p_guest::progress)
        .map_err(|e| e.to_string())?;
    Ok(embed_model::encode(&e))
}

fn guest_run(input: Vec<u8>) -> Result<Vec<u8>, String> {
    run(&input)
}

biop2p_guest::workload!(guest_run);
