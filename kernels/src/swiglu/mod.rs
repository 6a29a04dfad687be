//! SwiGLU, `silu(gate) * up`, as one candle op with backward: one pass instead of the
//! three (sigmoid, two products) a composition makes over the intermediate activations.
//! The input is the fused gate|up projection (`[rows, 2F]`, gate first), so the MLP's
//! two input matrices are one matmul.

pub mod cpu;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};

use crate::storage::f32s;

/// `silu(gate) * up` of a fused `[rows, 2F]` projection; returns `[rows, F]`.
pub fn swiglu(gate_up: &Tensor) -> Result<Tensor> {
    gate_up.contiguous()?.apply_op1(SwiGlu)
}

struct SwiGlu;

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s, l, self.name())?;
        let &[rows, width] = l.dims() else {
            bail!("swiglu: expects [rows, 2F], got {:?}", l.dims());
        };
        if width % 2 != 0 {
            bail!("swiglu: width {width} is not gate|up");
        }
        let f = width / 2;
        let mut y = vec![0f32; rows * f];
        cpu::forward(x, f, &mut y);
        Ok((CpuStorage::F32(y), Shape::from((rows, f))))
    }

    fn bwd(&self, gate_up: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(gate_up.apply_op2_no_bwd(&dy.contiguous()?, &SwiGluBackward)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::by_dtype(s, self.name(), || gpu::forward::<f32>(s, l), || gpu::forward::<half::bf16>(s, l))?
    }
}

struct SwiGluBackward;

impl CustomOp2 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ds: &CpuStorage, dl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (f32s(xs, xl, self.name())?, f32s(ds, dl, self.name())?);
        let f = xl.dims()[1] / 2;
        let mut dx = vec![0f32; x.len()];
        cpu::backward(x, f, dy, &mut dx);
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ds: &candle_core::CudaStorage,
        dl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        gpu::by_dtype(
            xs,
            self.name(),
            || gpu::backward::<f32>(xs, xl, ds, dl),
            || gpu::backward::<half::bf16>(xs, xl, ds, dl),
        )?
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
    use candle_core::{CudaStorage, Layout, Result, Shape, bail};

    pub use crate::gpu::by_dtype;
    use crate::gpu::{Float, elementwise, function, launched, view};

    fn rows_f(l: &Layout) -> Result<(usize, usize)> {
        match l.dims() {
            &[rows, width] if width % 2 == 0 => Ok((rows, width / 2)),
            dims => bail!("swiglu: expects [rows, 2F], got {dims:?}"),
        }
    }

    pub fn forward<T: Float>(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (rows, f) = rows_f(l)?;
        let device = s.device.clone();
        let x = view::<T>(s, l, "swiglu")?;
        let mut y = device.alloc_zeros::<T>(rows * f)?;
        let func = function(&device, "swiglu", &format!("swiglu_fwd_{}", T::SUFFIX))?;
        let stream = device.cuda_stream();
        let mut b = stream.launch_builder(&func);
        let (rows_arg, f_arg) = (rows as i64, f as i32);
        b.arg(&x).arg(&mut y).arg(&rows_arg).arg(&f_arg);
        // SAFETY: the arguments match the kernel's signature; sizes were checked above.
        launched(unsafe { b.launch(elementwise(rows * f)) }.map(|_| ()))?;
        Ok((CudaStorage::wrap_cuda_slice(y, device), Shape::from((rows, f))))
    }

    pub fn backward<T: Float>(
        xs: &CudaStorage,
        xl: &Layout,
        ds: &CudaStorage,
        dl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, f) = rows_f(xl)?;
        let device = xs.device.clone();
        let (x, dy) = (view::<T>(xs, xl, "swiglu")?, view::<T>(ds, dl, "swiglu")?);
        let mut dx = device.alloc_zeros::<T>(rows * 2 * f)?;
        let func = function(&device, "swiglu", &format!("swiglu_bwd_{}", T::SUFFIX))?;
        let stream = device.cuda_stream();
        let mut b = stream.launch_builder(&func);
        let (rows_arg, f_arg) = (rows as i64, f as i32);
        b.arg(&x).arg(&dy).arg(&mut dx).arg(&rows_arg).arg(&f_arg);
        // SAFETY: as in `forward`.
        launched(unsafe { b.launch(elementwise(rows * f)) }.map(|_| ()))?;
        Ok((CudaStorage::wrap_cuda_slice(dx, device), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grads, fresh_seed, random};
    use candle_core::Var;

    #[test]
    fn values_and_gradients_match_the_composition() -> Result<()> {
        let seed = fresh_seed();
        for (rows, f) in [(1usize, 1usize), (7, 13), (300, 129)] {
            let x = Var::from_tensor(&(random(seed, &[rows, 2 * f])? * 4.0)?)?;
            let fused = swiglu(&x)?;
            // silu(g) = g / (1 + exp(-g)), from differentiable primitives
            let (g, u) = (x.narrow(1, 0, f)?, x.narrow(1, f, f)?);
            let slow = ((&g * (g.neg()?.exp()? + 1.0)?.recip()?)? * u)?;
            assert_close(&fused, &slow, 1e-6)?;
            check_grads(&fused, &slow, &[&x], seed, 1e-5)?;
        }
        Ok(())
    }
}
