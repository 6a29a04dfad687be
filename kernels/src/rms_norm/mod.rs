//! RMSNorm with backward, as a candle op (candle's own `rms_norm` has no backward and
//! silently stops gradients).

pub mod cpu;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::storage::f32s;

/// `x / sqrt(mean(x², last dim) + eps) * w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32s(xs, xl, self.name())?, f32s(ws, wl, self.name())?);
        if xl.dims().last() != Some(&w.len()) {
            candle_core::bail!("rms-norm: weight of {} for rows of {:?}", w.len(), xl.dims());
        }
        let mut y = vec![0f32; x.len()];
        cpu::forward(x, w, self.eps, &mut y);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // One op computes both gradients; its output holds dx followed by dw.
        let both = x.apply_op3_no_bwd(w, &dy.contiguous()?, &RmsNormBackward { eps: self.eps })?;
        let n = x.elem_count();
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = both.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

struct RmsNormBackward {
    eps: f32,
}

impl CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, dy) = (f32s(xs, xl, self.name())?, f32s(ws, wl, self.name())?, f32s(ds, dl, self.name())?);
        let mut out = vec![0f32; x.len() + w.len()];
        let (dx, dw) = out.split_at_mut(x.len());
        cpu::backward(x, w, dy, self.eps, dx, dw);
        Ok((CpuStorage::F32(out), Shape::from(x.len() + w.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grads, random};
    use candle_core::{D, Var};

    /// The composition of differentiable candle primitives that the op must equal.
    fn reference(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let r = (ms + eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&r)?.broadcast_mul(w)
    }

    #[test]
    fn values_and_gradients_match_the_composition() -> Result<()> {
        for (seed, rows, cols) in [(1, 3, 8), (2, 130, 37), (3, 1, 1), (4, 65, 256)] {
            let x = Var::from_tensor(&random(seed, &[rows, cols])?)?;
            let w = Var::from_tensor(&(random(seed + 100, &[cols])? + 1.0)?)?;
            let fused = rms_norm(&x, &w, 1e-6)?;
            let slow = reference(&x, &w, 1e-6)?;
            assert_close(&fused, &slow, 1e-5)?;
            check_grads(&fused, &slow, &[&x, &w], seed, 1e-4)?;
        }
        Ok(())
    }
}
