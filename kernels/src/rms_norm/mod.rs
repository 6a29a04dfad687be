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
        // f32 on every device; back to x's dtype for the bf16 compute path.
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?.to_dtype(x.dtype())?;
        let dw = both.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::gpu::by_dtype(
            xs,
            self.name(),
            || gpu::forward::<f32>(self.eps, xs, xl, ws, wl),
            || gpu::forward::<half::bf16>(self.eps, xs, xl, ws, wl),
        )?
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

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
        ds: &candle_core::CudaStorage,
        dl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::gpu::by_dtype(
            xs,
            self.name(),
            || gpu::backward::<f32>(self.eps, xs, xl, ws, wl, ds, dl),
            || gpu::backward::<half::bf16>(self.eps, xs, xl, ws, wl, ds, dl),
        )?
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::{CudaStorage, Layout, Result, Shape, bail};

    use crate::gpu::{Float, function, launched, per_row, view};

    /// Rows each backward block handles (its share of dw is one partial row).
    const ROWS_PER_BLOCK: usize = 64;

    fn rows_cols(xl: &Layout, wl: &Layout) -> Result<(usize, usize)> {
        let cols = wl.shape().elem_count();
        if xl.dims().last() != Some(&cols) {
            bail!("rms-norm: weight of {cols} for rows of {:?}", xl.dims());
        }
        Ok((xl.shape().elem_count() / cols.max(1), cols))
    }

    pub fn forward<T: Float>(
        eps: f32,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, cols) = rows_cols(xl, wl)?;
        let device = xs.device.clone();
        let (x, w) = (view::<T>(xs, xl, "rms-norm")?, view::<f32>(ws, wl, "rms-norm")?);
        let mut y = device.alloc_zeros::<T>(rows * cols)?;
        let func = function(&device, "rms_norm", &format!("rms_norm_fwd_{}", T::SUFFIX))?;
        let stream = device.cuda_stream();
        let mut b = stream.launch_builder(&func);
        let cols_arg = cols as i32;
        b.arg(&x).arg(&w).arg(&mut y).arg(&cols_arg).arg(&eps);
        // SAFETY: the arguments match the kernel's signature; sizes were checked above.
        launched(unsafe { b.launch(per_row(rows, cols)) }.map(|_| ()))?;
        Ok((CudaStorage::wrap_cuda_slice(y, device), xl.shape().clone()))
    }

    /// dx followed by dw, both f32 (the master gradients): the CPU op's output layout.
    pub fn backward<T: Float>(
        eps: f32,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        ds: &CudaStorage,
        dl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, cols) = rows_cols(xl, wl)?;
        let device = xs.device.clone();
        let (x, w, dy) =
            (view::<T>(xs, xl, "rms-norm")?, view::<f32>(ws, wl, "rms-norm")?, view::<T>(ds, dl, "rms-norm")?);
        let blocks = rows.div_ceil(ROWS_PER_BLOCK).max(1);
        // dx then dw, f32, as the CPU op lays them out.
        let mut out = device.alloc_zeros::<f32>(rows * cols + cols)?;
        let mut partial = device.alloc_zeros::<f32>(blocks * cols)?;
        let stream = device.cuda_stream();
        let (rows_arg, cols_arg, per_block) = (rows as i32, cols as i32, ROWS_PER_BLOCK as i32);
        {
            let func = function(&device, "rms_norm", &format!("rms_norm_bwd_{}", T::SUFFIX))?;
            let mut b = stream.launch_builder(&func);
            let mut dx = out.slice_mut(0..rows * cols);
            b.arg(&x).arg(&w).arg(&dy).arg(&mut dx).arg(&mut partial);
            b.arg(&rows_arg).arg(&cols_arg).arg(&per_block).arg(&eps);
            let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), ..per_row(1, cols) };
            // SAFETY: the arguments match the kernel's signature; sizes were checked above.
            launched(unsafe { b.launch(cfg) }.map(|_| ()))?;
        }
        // dw: the blocks' partial rows summed in order.
        let func = function(&device, "rms_norm", "rms_norm_dw")?;
        let mut b = stream.launch_builder(&func);
        let blocks_arg = blocks as i32;
        let mut dw = out.slice_mut(rows * cols..rows * cols + cols);
        b.arg(&partial).arg(&mut dw).arg(&blocks_arg).arg(&cols_arg);
        let cfg =
            LaunchConfig { grid_dim: (cols.div_ceil(256) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: as above.
        launched(unsafe { b.launch(cfg) }.map(|_| ()))?;
        Ok((CudaStorage::wrap_cuda_slice(out, device), Shape::from(rows * cols + cols)))
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
