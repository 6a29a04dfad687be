//! Masked cross-entropy with an ignore index and an outside normalizer, as a candle op
//! whose forward also computes the gradient (candle's `cross_entropy` has no ignore
//! index).

pub mod cpu;

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

pub use cpu::IGNORE;

use crate::storage::f32s;

/// Σ over rows of -log softmax(logits)[label] / normalizer, rows labelled -100 skipped.
/// `logits` is `[rows, vocab]`; the result is a scalar.
pub fn cross_entropy(logits: &Tensor, labels: &Arc<Vec<i32>>, normalizer: f32) -> Result<Tensor> {
    let (rows, vocab) = logits.dims2()?;
    if labels.len() != rows {
        bail!("cross-entropy: {} labels for {rows} rows", labels.len());
    }
    if let Some(&bad) = labels.iter().find(|&&l| l != IGNORE && (l < 0 || l as usize >= vocab)) {
        bail!("cross-entropy: label {bad} outside a vocabulary of {vocab}");
    }
    if normalizer.is_nan() || normalizer <= 0.0 {
        bail!("cross-entropy: normalizer must be positive, got {normalizer}");
    }
    logits.contiguous()?.apply_op1(CrossEntropy { labels: labels.clone(), normalizer, grad: Mutex::new(None) })
}

struct CrossEntropy {
    labels: Arc<Vec<i32>>,
    normalizer: f32,
    /// d loss / d logits, written by the forward.
    grad: Mutex<Option<Tensor>>,
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = f32s(s, l, self.name())?;
        let mut grad = vec![0f32; logits.len()];
        let loss = cpu::forward_backward(logits, &self.labels, self.normalizer, &mut grad);
        let grad = Tensor::from_vec(grad, l.shape(), &candle_core::Device::Cpu)?;
        *self.grad.lock().expect("not poisoned") = Some(grad);
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(&self, _logits: &Tensor, _loss: &Tensor, dloss: &Tensor) -> Result<Option<Tensor>> {
        let Some(grad) = self.grad.lock().expect("not poisoned").clone() else {
            bail!("cross-entropy: backward before forward");
        };
        Ok(Some(grad.broadcast_mul(dloss)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grads, fresh_seed, random};
    use candle_core::{D, Device, Var};
    use rand::{Rng, SeedableRng};

    fn reference(logits: &Tensor, labels: &[i32], normalizer: f32) -> Result<Tensor> {
        let (rows, vocab) = logits.dims2()?;
        let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
        let log_probs = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
        let mut onehot = vec![0f32; rows * vocab];
        for (r, &l) in labels.iter().enumerate() {
            if l != IGNORE {
                onehot[r * vocab + l as usize] = 1.0;
            }
        }
        let onehot = Tensor::from_vec(onehot, (rows, vocab), &Device::Cpu)?;
        (log_probs * onehot)?.sum_all()?.neg()? / normalizer as f64
    }

    #[test]
    fn values_and_gradients_match_log_softmax() -> Result<()> {
        let seed = fresh_seed();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for (rows, vocab) in [(1, 2), (17, 31), (128, 513)] {
            let logits = Var::from_tensor(&(random(seed, &[rows, vocab])? * 5.0)?)?;
            let labels: Vec<i32> = (0..rows)
                .map(|_| if rng.random_bool(0.3) { IGNORE } else { rng.random_range(0..vocab as i32) })
                .collect();
            let normalizer = 1.0 + labels.iter().filter(|&&l| l != IGNORE).count() as f32;
            let fused = cross_entropy(&logits, &Arc::new(labels.clone()), normalizer)?;
            let slow = reference(&logits, &labels, normalizer)?;
            assert_close(&fused, &slow, 1e-5)?;
            check_grads(&fused, &slow, &[&logits], seed, 1e-5)?;
        }
        Ok(())
    }

    #[test]
    fn labels_outside_the_vocabulary_are_errors() {
        let logits = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(cross_entropy(&logits, &Arc::new(vec![0, 4]), 1.0).is_err());
        assert!(cross_entropy(&logits, &Arc::new(vec![0]), 1.0).is_err());
    }
}
