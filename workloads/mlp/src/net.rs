//! A two-layer perceptron: `inputs → hidden (ReLU or tanh) → classes
//! (softmax)`, trained with mini-batch SGD on cross-entropy.

use crate::data::Rng;
use serde::{Deserialize, Serialize};

/// Hidden-layer non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    fn apply(self, x: f32) -> f32 {
        match self {
            Self::Relu => x.max(0.0),
            Self::Tanh => x.tanh(),
        }
    }

    /// Derivative expressed through the activation's output `h`.
    fn derivative_at_output(self, h: f32) -> f32 {
        match self {
            Self::Relu => {
                if h > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Tanh => 1.0 - h * h,
        }
    }
}

/// The network's weights; serialisable so a trained model can be returned
/// and later sent back for inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Input features.
    pub inputs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Output classes.
    pub classes: usize,
    /// Hidden-layer non-linearity.
    #[serde(default)]
    pub activation: Activation,
    /// First layer, `hidden × inputs`, row-major.
    pub w1: Vec<f32>,
    /// First-layer biases, `hidden`.
    pub b1: Vec<f32>,
    /// Second layer, `classes × hidden`, row-major.
    pub w2: Vec<f32>,
    /// Second-layer biases, `classes`.
    pub b2: Vec<f32>,
}

/// Gradients (or any buffers) shaped like a [`Model`]'s parameters.
struct Grads {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

/// Per-sample scratch space, so training allocates nothing per sample.
pub struct Scratch {
    h: Vec<f32>,
    p: Vec<f32>,
    dh: Vec<f32>,
}

impl Model {
    /// A freshly initialised model: uniform He (ReLU) or Glorot (tanh)
    /// weights drawn from `rng`, zero biases.
    pub fn new(
        inputs: usize,
        hidden: usize,
        classes: usize,
        activation: Activation,
        rng: &mut Rng,
    ) -> Self {
        let limit = |fan_in: usize, fan_out: usize| match activation {
            Activation::Relu => (6.0 / fan_in as f32).sqrt(),
            Activation::Tanh => (6.0 / (fan_in + fan_out) as f32).sqrt(),
        };
        let l1 = limit(inputs, hidden);
        let l2 = limit(hidden, classes);
        Self {
            inputs,
            hidden,
            classes,
            activation,
            w1: (0..hidden * inputs).map(|_| rng.range(-l1, l1)).collect(),
            b1: vec![0.0; hidden],
            w2: (0..classes * hidden).map(|_| rng.range(-l2, l2)).collect(),
            b2: vec![0.0; classes],
        }
    }

    /// Check that the weight vectors match the declared shape.
    pub fn validate(&self) -> Result<(), String> {
        let want = [
            ("w1", self.w1.len(), self.hidden * self.inputs),
            ("b1", self.b1.len(), self.hidden),
            ("w2", self.w2.len(), self.classes * self.hidden),
            ("b2", self.b2.len(), self.classes),
        ];
        for (name, got, want) in want {
            if got != want {
                return Err(format!("model.{name} has {got} values, expected {want}"));
            }
        }
        if self.inputs == 0 || self.hidden == 0 || self.classes < 2 {
            return Err("model needs inputs >= 1, hidden >= 1 and classes >= 2".into());
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn parameters(&self) -> usize {
        self.w1.len() + self.b1.len() + self.w2.len() + self.b2.len()
    }

    /// Scratch buffers sized for this model.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            h: vec![0.0; self.hidden],
            p: vec![0.0; self.classes],
            dh: vec![0.0; self.hidden],
        }
    }

    /// Class probabilities for `x`, left in `s.p` (hidden activations in
    /// `s.h`).
    pub fn forward(&self, x: &[f32], s: &mut Scratch) {
        debug_assert_eq!(x.len(), self.inputs);
        for (j, h) in s.h.iter_mut().enumerate() {
            let row = &self.w1[j * self.inputs..(j + 1) * self.inputs];
            let z: f32 = self.b1[j] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>();
            *h = self.activation.apply(z);
        }
        for (c, p) in s.p.iter_mut().enumerate() {
            let row = &self.w2[c * self.hidden..(c + 1) * self.hidden];
            *p = self.b2[c] + row.iter().zip(&s.h).map(|(w, v)| w * v).sum::<f32>();
        }
        softmax(&mut s.p);
    }

    /// Class probabilities for one input.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let mut s = self.scratch();
        self.forward(x, &mut s);
        s.p
    }

    /// Mean cross-entropy and accuracy over a data set.
    pub fn evaluate(&self, x: &[Vec<f32>], y: &[u32]) -> (f32, f32) {
        if x.is_empty() {
            return (0.0, 0.0);
        }
        let mut s = self.scratch();
        let mut loss = 0.0f64;
        let mut correct = 0usize;
        for (xi, &yi) in x.iter().zip(y) {
            self.forward(xi, &mut s);
            loss += f64::from(cross_entropy(&s.p, yi));
            correct += (argmax(&s.p) == yi as usize) as usize;
        }
        (
            (loss / x.len() as f64) as f32,
            correct as f32 / x.len() as f32,
        )
    }

    /// One epoch of mini-batch SGD over `order` (indices into `x`/`y`);
    /// returns the mean training loss seen during the epoch.
    pub fn train_epoch(
        &mut self,
        x: &[Vec<f32>],
        y: &[u32],
        order: &[usize],
        batch_size: usize,
        learning_rate: f32,
        l2: f32,
    ) -> f32 {
        let mut s = self.scratch();
        let mut g = Grads {
            w1: vec![0.0; self.w1.len()],
            b1: vec![0.0; self.b1.len()],
            w2: vec![0.0; self.w2.len()],
            b2: vec![0.0; self.b2.len()],
        };
        let mut total = 0.0f64;
        for batch in order.chunks(batch_size.max(1)) {
            for buf in [&mut g.w1, &mut g.b1, &mut g.w2, &mut g.b2] {
                buf.fill(0.0);
            }
            for &i in batch {
                total += f64::from(self.backward(&x[i], y[i], &mut s, &mut g));
            }
            let step = learning_rate / batch.len() as f32;
            let decay = 1.0 - learning_rate * l2;
            for (w, gw) in self.w1.iter_mut().zip(&g.w1) {
                *w = *w * decay - step * gw;
            }
            for (w, gw) in self.w2.iter_mut().zip(&g.w2) {
                *w = *w * decay - step * gw;
            }
            for (b, gb) in self.b1.iter_mut().zip(&g.b1) {
                *b -= step * gb;
            }
            for (b, gb) in self.b2.iter_mut().zip(&g.b2) {
                *b -= step * gb;
            }
        }
        (total / order.len().max(1) as f64) as f32
    }

    /// Forward and backward pass for one sample; adds its gradients into
    /// `g` and returns its loss.
    fn backward(&self, x: &[f32], y: u32, s: &mut Scratch, g: &mut Grads) -> f32 {
        self.forward(x, s);
        let loss = cross_entropy(&s.p, y);
        // dL/dz2 = p - onehot(y), kept in s.p.
        s.p[y as usize] -= 1.0;
        s.dh.fill(0.0);
        for c in 0..self.classes {
            let dz = s.p[c];
            g.b2[c] += dz;
            let w_row = &self.w2[c * self.hidden..(c + 1) * self.hidden];
            let g_row = &mut g.w2[c * self.hidden..(c + 1) * self.hidden];
            for ((gw, &h), (dh, &w)) in g_row.iter_mut().zip(&s.h).zip(s.dh.iter_mut().zip(w_row)) {
                *gw += dz * h;
                *dh += dz * w;
            }
        }
        for j in 0..self.hidden {
            let dz = s.dh[j] * self.activation.derivative_at_output(s.h[j]);
            g.b1[j] += dz;
            let g_row = &mut g.w1[j * self.inputs..(j + 1) * self.inputs];
            for (gw, &v) in g_row.iter_mut().zip(x) {
                *gw += dz * v;
            }
        }
        loss
    }
}

/// In-place numerically stable softmax.
fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// `-ln p[y]`, clamped away from infinity.
fn cross_entropy(p: &[f32], y: u32) -> f32 {
    -p[y as usize].max(1e-12).ln()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let mut z = [1.0, 2.0, 3.0, 1000.0];
        softmax(&mut z);
        assert!((z.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&z), 3);
    }

    /// Back-propagation agrees with finite differences.
    #[test]
    fn gradients_match_finite_differences() {
        for act in [Activation::Relu, Activation::Tanh] {
            let mut rng = Rng::new(3);
            let m = Model::new(3, 5, 4, act, &mut rng);
            let x = [0.3, -0.7, 0.9];
            let y = 2;
            let mut s = m.scratch();
            let mut g = Grads {
                w1: vec![0.0; m.w1.len()],
                b1: vec![0.0; m.b1.len()],
                w2: vec![0.0; m.w2.len()],
                b2: vec![0.0; m.b2.len()],
            };
            m.backward(&x, y, &mut s, &mut g);
            let loss = |m: &Model| f64::from(cross_entropy(&m.predict(&x), y));
            let eps = 1e-3;
            for idx in 0..m.w1.len() {
                let mut plus = m.clone();
                plus.w1[idx] += eps;
                let mut minus = m.clone();
                minus.w1[idx] -= eps;
                let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(eps));
                assert!(
                    (numeric - f64::from(g.w1[idx])).abs() < 2e-3,
                    "{act:?} w1[{idx}]: {numeric} vs {}",
                    g.w1[idx]
                );
            }
            for idx in 0..m.w2.len() {
                let mut plus = m.clone();
                plus.w2[idx] += eps;
                let mut minus = m.clone();
                minus.w2[idx] -= eps;
                let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(eps));
                assert!(
                    (numeric - f64::from(g.w2[idx])).abs() < 2e-3,
                    "{act:?} w2[{idx}]"
                );
            }
        }
    }

    #[test]
    fn validate_catches_bad_shapes() {
        let mut m = Model::new(2, 3, 2, Activation::Relu, &mut Rng::new(1));
        assert!(m.validate().is_ok());
        assert_eq!(m.parameters(), 2 * 3 + 3 + 3 * 2 + 2);
        m.b2.pop();
        assert!(m.validate().unwrap_err().contains("b2"));
    }
}
