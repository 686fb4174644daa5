//! biop2p AI workload: train a small neural network and run inference.
//!
//! A two-layer perceptron (`inputs → hidden (ReLU/tanh) → softmax`) is
//! trained with mini-batch SGD on cross-entropy, on a built-in 2-D data set
//! generated from a seed (spirals, xor, circles, moons) or on data sent in
//! the input. It reports the loss curve and train/test accuracy, can
//! classify extra points, and can return the trained weights (and start
//! from given weights: `"epochs": 0` with a `model` is pure inference).
//!
//! Everything is deterministic: all randomness (data, initial weights,
//! shuffling, train/test split) comes from `seed`, so replicas of a task
//! produce identical output.
//!
//! # Input (JSON; every field optional, empty input means `{}`)
//!
//! ```json
//! {
//!   "seed": 42,
//!   "dataset": "spirals",          // or "xor", "circles", "moons"
//!   "samples": 300,                // generated points
//!   "classes": 3,                  // spirals only (2..=16)
//!   "noise": 0.2,
//!   "data": {"x": [[0.1, 0.2], ...], "y": [0, ...]},  // replaces the generated set
//!   "hidden": 32,
//!   "activation": "relu",          // or "tanh"
//!   "epochs": 400,
//!   "learning_rate": 0.5,
//!   "batch_size": 16,
//!   "l2": 0.0001,
//!   "test_fraction": 0.2,
//!   "loss_points": 20,             // length of the reported loss curve
//!   "predict": [[0.0, 0.5], ...],  // points to classify after training
//!   "model": {...},                // initial weights, as returned below
//!   "return_model": false
//! }
//! ```
//!
//! # Output (JSON)
//!
//! ```json
//! {
//!   "dataset": "spirals", "inputs": 2, "classes": 3, "hidden": 32,
//!   "parameters": 195, "train_samples": 240, "test_samples": 60, "epochs": 400,
//!   "loss_curve": [{"epoch": 20, "loss": 0.71}, ...],
//!   "train_loss": 0.05, "train_accuracy": 0.99, "test_loss": 0.08, "test_accuracy": 0.98,
//!   "predictions": [{"class": 1, "probabilities": [0.01, 0.98, 0.01]}],
//!   "model": null
//! }
//! ```
//!
//! `test_loss`/`test_accuracy` are `null` when there is no test split.
//!
//! # Build
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+simd128" \
//!   cargo build --release --target wasm32-wasip2 -p wl-mlp
//! ```

pub mod data;
pub mod net;

use data::{Dataset, Rng};
use net::{Activation, Model};
use serde::{Deserialize, Serialize};

/// Upper bounds that keep one task's memory use reasonable.
const MAX_SAMPLES: usize = 1_000_000;
const MAX_INPUTS: usize = 4096;
const MAX_HIDDEN: usize = 4096;
const MAX_CLASSES: usize = 1024;

/// Training data sent in the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Data {
    /// Feature vectors, all of the same length.
    pub x: Vec<Vec<f32>>,
    /// Class labels, `0..classes`.
    pub y: Vec<u32>,
}

/// The request; see the crate docs for the defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Request {
    /// Seed for every random choice.
    pub seed: u64,
    /// Built-in data set to generate (ignored when `data` is given).
    pub dataset: Dataset,
    /// Generated points.
    pub samples: usize,
    /// Classes of the spirals data set.
    pub classes: usize,
    /// Noise of the generated data.
    pub noise: f32,
    /// Training data to use instead of a generated set.
    pub data: Option<Data>,
    /// Hidden units.
    pub hidden: usize,
    /// Hidden-layer non-linearity.
    pub activation: Activation,
    /// Passes over the training set.
    pub epochs: u32,
    /// SGD step size.
    pub learning_rate: f32,
    /// Samples per SGD step.
    pub batch_size: usize,
    /// L2 weight decay.
    pub l2: f32,
    /// Share of the data held out for testing, `[0, 1)`.
    pub test_fraction: f32,
    /// How many points the loss curve has (at most).
    pub loss_points: usize,
    /// Points to classify with the trained model.
    pub predict: Vec<Vec<f32>>,
    /// Initial weights (their shape wins over `hidden`/`activation`).
    pub model: Option<Model>,
    /// Include the trained weights in the response.
    pub return_model: bool,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            seed: 42,
            dataset: Dataset::Spirals,
            samples: 300,
            classes: 3,
            noise: 0.2,
            data: None,
            hidden: 32,
            activation: Activation::Relu,
            epochs: 400,
            learning_rate: 0.5,
            batch_size: 16,
            l2: 1e-4,
            test_fraction: 0.2,
            loss_points: 20,
            predict: Vec::new(),
            model: None,
            return_model: false,
        }
    }
}

/// One point of the loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    /// Epochs done (1-based).
    pub epoch: u32,
    /// Mean training loss during that epoch.
    pub loss: f32,
}

/// The classification of one `predict` point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Most likely class.
    pub class: u32,
    /// Probability of each class.
    pub probabilities: Vec<f32>,
}

/// The response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Built-in data set name, or `"custom"`.
    pub dataset: String,
    /// Input features.
    pub inputs: usize,
    /// Output classes.
    pub classes: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Samples trained on.
    pub train_samples: usize,
    /// Samples held out.
    pub test_samples: usize,
    /// Epochs run.
    pub epochs: u32,
    /// Mean training loss, sampled over the epochs.
    pub loss_curve: Vec<LossPoint>,
    /// Final loss on the training set.
    pub train_loss: f32,
    /// Final accuracy on the training set.
    pub train_accuracy: f32,
    /// Final loss on the test set, if any.
    pub test_loss: Option<f32>,
    /// Final accuracy on the test set, if any.
    pub test_accuracy: Option<f32>,
    /// Classifications of the `predict` points.
    pub predictions: Vec<Prediction>,
    /// Trained weights, when asked for.
    pub model: Option<Model>,
}

/// Train (and predict) as the request says.
pub fn train(req: Request) -> Result<Response, String> {
    let mut rng = Rng::new(req.seed);
    if !(0.0..1.0).contains(&req.test_fraction) {
        return Err("test_fraction must be in [0, 1)".into());
    }
    if !req.learning_rate.is_finite()
        || req.learning_rate <= 0.0
        || !req.l2.is_finite()
        || req.l2 < 0.0
    {
        return Err("learning_rate must be > 0 and l2 >= 0 (both finite)".into());
    }
    if req.batch_size == 0 {
        return Err("batch_size must be >= 1".into());
    }

    // The data.
    let (dataset, x, y, classes) = match req.data {
        Some(d) => {
            if d.x.len() != d.y.len() {
                return Err(format!(
                    "data.x has {} rows but data.y {}",
                    d.x.len(),
                    d.y.len()
                ));
            }
            let classes = match &req.model {
                Some(m) => m.classes,
                None => d.y.iter().max().map_or(0, |&m| m as usize + 1).max(2),
            };
            ("custom".to_string(), d.x, d.y, classes)
        }
        None => {
            if !(2..=16).contains(&req.classes) {
                return Err("classes must be in 2..=16".into());
            }
            if req.samples > MAX_SAMPLES {
                return Err(format!("samples must be at most {MAX_SAMPLES}"));
            }
            let classes = req.dataset.classes(req.classes);
            let (x, y) = req
                .dataset
                .generate(req.samples, req.classes, req.noise, &mut rng);
            (req.dataset.name().to_string(), x, y, classes)
        }
    };
    if x.is_empty() && req.epochs > 0 {
        return Err("no training data".into());
    }
    if x.len() > MAX_SAMPLES {
        return Err(format!("at most {MAX_SAMPLES} samples"));
    }

    // The model.
    let mut model = match req.model {
        Some(m) => {
            m.validate()?;
            m
        }
        None => {
            let inputs = x.first().or(req.predict.first()).map_or(0, Vec::len);
            if inputs == 0 || inputs > MAX_INPUTS {
                return Err(format!("inputs must have 1..={MAX_INPUTS} features"));
            }
            if req.hidden == 0 || req.hidden > MAX_HIDDEN || classes > MAX_CLASSES {
                return Err(format!(
                    "hidden must be in 1..={MAX_HIDDEN}, classes at most {MAX_CLASSES}"
                ));
            }
            Model::new(inputs, req.hidden, classes, req.activation, &mut rng)
        }
    };
    for (i, (xi, &yi)) in x.iter().zip(&y).enumerate() {
        if xi.len() != model.inputs {
            return Err(format!(
                "sample {i} has {} features, expected {}",
                xi.len(),
                model.inputs
            ));
        }
        if yi as usize >= model.classes {
            return Err(format!(
                "sample {i} has label {yi}, expected < {}",
                model.classes
            ));
        }
    }
    if let Some(i) = req.predict.iter().position(|p| p.len() != model.inputs) {
        return Err(format!(
            "predict point {i} does not have {} features",
            model.inputs
        ));
    }

    // Deterministic train/test split.
    let mut order: Vec<usize> = (0..x.len()).collect();
    rng.shuffle(&mut order);
    let test_n = (x.len() as f32 * req.test_fraction).round() as usize;
    let (test_idx, train_idx) = order.split_at(test_n.min(x.len().saturating_sub(1)));
    let pick = |idx: &[usize]| -> (Vec<Vec<f32>>, Vec<u32>) {
        (
            idx.iter().map(|&i| x[i].clone()).collect(),
            idx.iter().map(|&i| y[i]).collect(),
        )
    };
    let (train_x, train_y) = pick(train_idx);
    let (test_x, test_y) = pick(test_idx);

    biop2p_guest::log::info(&format!(
        "mlp: {dataset}, {} train / {} test samples, {}-{}-{} {:?}, {} epochs",
        train_x.len(),
        test_x.len(),
        model.inputs,
        model.hidden,
        model.classes,
        model.activation,
        req.epochs
    ));

    // Training.
    let every = req.epochs.div_ceil(req.loss_points.max(1) as u32).max(1);
    let mut loss_curve = Vec::new();
    let mut epoch_order: Vec<usize> = (0..train_x.len()).collect();
    for epoch in 1..=req.epochs {
        rng.shuffle(&mut epoch_order);
        let loss = model.train_epoch(
            &train_x,
            &train_y,
            &epoch_order,
            req.batch_size,
            req.learning_rate,
            req.l2,
        );
        if !loss.is_finite() {
            return Err(format!(
                "training diverged at epoch {epoch} (try a smaller learning_rate)"
            ));
        }
        if epoch % every == 0 || epoch == req.epochs {
            loss_curve.push(LossPoint { epoch, loss });
        }
        biop2p_guest::progress(epoch as f32 / req.epochs as f32);
    }

    let (train_loss, train_accuracy) = model.evaluate(&train_x, &train_y);
    let test = (!test_x.is_empty()).then(|| model.evaluate(&test_x, &test_y));
    let predictions = req
        .predict
        .iter()
        .map(|p| {
            let probabilities = model.predict(p);
            Prediction {
                class: net::argmax(&probabilities) as u32,
                probabilities,
            }
        })
        .collect();
    biop2p_guest::log::info(&format!(
        "mlp: train accuracy {train_accuracy:.3}, test accuracy {}",
        test.map_or("n/a".to_string(), |t| format!("{:.3}", t.1))
    ));
    Ok(Response {
        dataset,
        inputs: model.inputs,
        classes: model.classes,
        hidden: model.hidden,
        parameters: model.parameters(),
        train_samples: train_x.len(),
        test_samples: test_x.len(),
        epochs: req.epochs,
        loss_curve,
        train_loss,
        train_accuracy,
        test_loss: test.map(|t| t.0),
        test_accuracy: test.map(|t| t.1),
        predictions,
        model: req.return_model.then_some(model),
    })
}

biop2p_guest::json_workload!(train);

#[cfg(test)]
mod tests {
    use super::*;

    fn run_json(input: &str) -> Result<Response, String> {
        let out = biop2p_guest::json::call(input.as_bytes(), train)?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn default_run_learns_spirals() {
        let r = run_json("").unwrap();
        assert_eq!(r.dataset, "spirals");
        assert_eq!((r.inputs, r.classes, r.hidden), (2, 3, 32));
        assert_eq!(r.train_samples + r.test_samples, 300);
        assert_eq!(r.test_samples, 60);
        assert_eq!(r.loss_curve.len(), 20);
        assert_eq!(r.loss_curve.last().unwrap().epoch, 400);
        assert!(r.loss_curve[0].loss > r.loss_curve[19].loss);
        assert!(
            r.train_accuracy > 0.95,
            "train accuracy {}",
            r.train_accuracy
        );
        assert!(
            r.test_accuracy.unwrap() > 0.9,
            "test accuracy {:?}",
            r.test_accuracy
        );
        assert!(r.model.is_none());
    }

    #[test]
    fn deterministic_per_seed() {
        let a = run_json(r#"{"epochs": 20}"#).unwrap();
        let b = run_json(r#"{"epochs": 20}"#).unwrap();
        assert_eq!(a, b);
        let c = run_json(r#"{"epochs": 20, "seed": 1}"#).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn every_dataset_and_activation_learns() {
        for ds in ["xor", "circles", "moons"] {
            for act in ["relu", "tanh"] {
                let r = run_json(&format!(
                    r#"{{"dataset": "{ds}", "activation": "{act}", "samples": 200, "epochs": 150, "learning_rate": 0.2}}"#
                ))
                .unwrap();
                assert_eq!(r.classes, 2);
                assert!(
                    r.test_accuracy.unwrap() > 0.85,
                    "{ds} {act}: {:?}",
                    r.test_accuracy
                );
            }
        }
    }

    #[test]
    fn custom_data_model_round_trip_and_inference() {
        // AND of two features, linearly separable.
        let input = r#"{
            "data": {"x": [[0,0],[0,1],[1,0],[1,1],[0,0],[0,1],[1,0],[1,1]],
                     "y": [0,0,0,1,0,0,0,1]},
            "test_fraction": 0, "hidden": 8, "epochs": 300, "learning_rate": 0.5, "batch_size": 4,
            "predict": [[1,1],[0,1]], "return_model": true
        }"#;
        let r = run_json(input).unwrap();
        assert_eq!(r.dataset, "custom");
        assert_eq!(r.train_accuracy, 1.0);
        assert_eq!(r.test_accuracy, None);
        assert_eq!(
            r.predictions.iter().map(|p| p.class).collect::<Vec<_>>(),
            [1, 0]
        );
        let model = r.model.unwrap();

        // Inference only, from the returned model.
        let req = serde_json::json!({"model": model, "epochs": 0, "data": {"x": [], "y": []},
                                     "predict": [[1,1],[0,1]]});
        let r2 = run_json(&req.to_string()).unwrap();
        assert_eq!(r2.predictions, r.predictions);
        assert!(r2.loss_curve.is_empty());
    }

    #[test]
    fn bad_requests_are_errors() {
        let bad = [
            r#"{"epochs": "many"}"#,
            r#"{"unknown_field": 1}"#,
            r#"{"test_fraction": 1.0}"#,
            r#"{"learning_rate": 0}"#,
            r#"{"batch_size": 0}"#,
            r#"{"classes": 1}"#,
            r#"{"data": {"x": [[1]], "y": [0, 1]}}"#,
            r#"{"data": {"x": [[1], [1, 2]], "y": [0, 1]}}"#,
            r#"{"predict": [[1, 2, 3]]}"#,
        ];
        for input in bad {
            assert!(run_json(input).is_err(), "{input} should fail");
        }
    }
}
