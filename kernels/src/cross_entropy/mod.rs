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
    logits.contiguous()?.apply_op1(CrossEntropy {
        labels: labels.clone(),
        normalizer,
        grad: Mutex::new(None),
        #[cfg(feature = "cuda")]
        gpu_grad: Default::default(),
    })
}

struct CrossEntropy {
    labels: Arc<Vec<i32>>,
    normalizer: f32,
    /// d loss / d logits, written by the forward.
    grad: Mutex<Option<Tensor>>,
    /// The same on the GPU, as storage the backward wraps into a tensor.
    #[cfg(feature = "cuda")]
    gpu_grad: gpu::Stashed,
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
        #[cfg(feature = "cuda")]
        if self.gpu_grad.is_set() {
            let grad = _logits.apply_op1_no_bwd(&self.gpu_grad)?;
            return Ok(Some(grad.broadcast_mul(&dloss.to_dtype(grad.dtype())?)?));
        }
        let Some(grad) = self.grad.lock().expect("not poisoned").clone() else {
            bail!("cross-entropy: backward before forward");
        };
        Ok(Some(grad.broadcast_mul(dloss)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::gpu::by_dtype(
            s,
            self.name(),
            || gpu::forward::<f32>(self, s, l),
            || gpu::forward::<half::bf16>(self, s, l),
        )?
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use std::sync::Mutex;

    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::{CudaStorage, CustomOp1, Layout, Result, Shape, bail};

    use super::CrossEntropy;
    use crate::gpu::{Float, function, launched, per_row, view};

    /// d logits computed by the forward, handed to the backward once as an op's output.
    #[derive(Default)]
    pub struct Stashed(Mutex<Option<(CudaStorage, Shape)>>);

    impl Stashed {
        pub fn is_set(&self) -> bool {
            self.0.lock().expect("not poisoned").is_some()
        }
    }

    impl CustomOp1 for Stashed {
        fn name(&self) -> &'static str {
            "cross-entropy-gradient"
        }

        fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
            bail!("cross-entropy: a GPU gradient read on the CPU")
        }

        fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
            match self.0.lock().expect("not poisoned").take() {
                Some(stashed) => Ok(stashed),
                None => bail!("cross-entropy: backward before forward, or twice"),
            }
        }
    }

    pub fn forward<T: Float>(op: &CrossEntropy, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let &[rows, vocab] = l.dims() else {
            bail!("cross-entropy: expects [rows, vocab], got {:?}", l.dims());
        };
        let device = s.device.clone();
        let stream = device.cuda_stream();
        let logits = view::<T>(s, l, "cross-entropy")?;
        let labels = stream.clone_htod(op.labels.as_slice()).map_err(candle_core::Error::wrap)?;
        let mut dlogits = device.alloc_zeros::<T>(rows * vocab)?;
        let mut losses = device.alloc_zeros::<f32>(rows.max(1))?;
        let func = function(&device, "cross_entropy", &format!("cross_entropy_{}", T::SUFFIX))?;
        let mut b = stream.launch_builder(&func);
        let vocab_arg = vocab as i32;
        b.arg(&logits).arg(&labels).arg(&mut dlogits).arg(&mut losses).arg(&vocab_arg).arg(&op.normalizer);
        // SAFETY: the arguments match the kernel's signature; sizes were checked by the caller.
        launched(unsafe { b.launch(per_row(rows, vocab)) }.map(|_| ()))?;
        drop(b);
        let mut total = device.alloc_zeros::<f32>(1)?;
        let func = function(&device, "cross_entropy", "cross_entropy_sum")?;
        let mut b = stream.launch_builder(&func);
        let rows_arg = rows as i32;
        b.arg(&losses).arg(&mut total).arg(&rows_arg);
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: as above.
        launched(unsafe { b.launch(cfg) }.map(|_| ()))?;
        *op.gpu_grad.0.lock().expect("not poisoned") =
            Some((CudaStorage::wrap_cuda_slice(dlogits, device.clone()), l.shape().clone()));
        Ok((CudaStorage::wrap_cuda_slice(total, device), Shape::from(())))
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
