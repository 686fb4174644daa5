//! biop2p AI workload: all-MiniLM-L6-v2 sentence embeddings. The linear
//! layers' products (nearly all of the arithmetic) go to the host's tensor
//! interface, which runs them natively and meters them by their shapes;
//! the rest runs in wasm on candle's CPU backend (simd128). With the
//! argument `--pure-wasm` everything runs in wasm, as the fallback and the
//! baseline the interface is measured against.
//!
//! The input is UTF-8 text, one sentence per line; the output is the
//! sentences' L2-normalised 384-dimensional embeddings in the `EMB1`
//! format (see the `embed-model` crate). The model comes as two read-only
//! data blobs: `/data/model` (`model.safetensors`) and `/data/vocab`
//! (`vocab.txt`), attached with `--data model=… --data vocab=…`. The whole
//! input is one task: the model is loaded once, then the sentences are
//! embedded in sub-batches, each padded to its longest sentence.

fn read(name: &str) -> Result<Vec<u8>, String> {
    biop2p_guest::data::read(name).map_err(|e| format!("{e} (attach it with --data {name}=FILE)"))
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
    let pure = std::env::args().any(|a| a == "--pure-wasm");
    let host: embed_model::MatmulBt<'_> = &biop2p_guest::tensor::matmul_bt;
    let e = embedder
        .embed_with(&sentences, (!pure).then_some(host), biop2p_guest::progress)
        .map_err(|e| e.to_string())?;
    Ok(embed_model::encode(&e))
}

fn guest_run(input: Vec<u8>) -> Result<Vec<u8>, String> {
    run(&input)
}

biop2p_guest::workload!(guest_run);
