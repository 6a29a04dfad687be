//! SwiGLU, `silu(gate) * up`, as one candle op with backward: one pass instead of the
//! three (sigmoid, two products) a composition makes over the intermediate activations.

pub mod cpu;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use crate::storage::f32s;

pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, us: &CpuStorage, ul: &Layout) -> Result<(CpuStorage, Shape)> {
        if gl.dims() != ul.dims() {
            bail!("swiglu: gate {:?} and up {:?} differ", gl.dims(), ul.dims());
        }
        let (g, u) = (f32s(gs, gl, self.name())?, f32s(us, ul, self.name())?);
        let mut y = vec![0f32; g.len()];
        cpu::forward(g, u, &mut y);
        Ok((CpuStorage::F32(y), gl.shape().clone()))
    }

    fn bwd(&self, gate: &Tensor, up: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = gate.apply_op3_no_bwd(up, &dy.contiguous()?, &SwiGluBackward)?;
        let n = gate.elem_count();
        let dgate = both.narrow(0, 0, n)?.reshape(gate.shape())?;
        let dup = both.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((Some(dgate), Some(dup)))
    }
}

struct SwiGluBackward;

impl CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u, dy) = (f32s(gs, gl, self.name())?, f32s(us, ul, self.name())?, f32s(ds, dl, self.name())?);
        let mut out = vec![0f32; 2 * g.len()];
        let (dg, du) = out.split_at_mut(g.len());
        cpu::backward(g, u, dy, dg, du);
        Ok((CpuStorage::F32(out), Shape::from(2 * g.len())))
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
        for dims in [[1usize, 1], [7, 13], [300, 129]] {
            let g = Var::from_tensor(&(random(seed, &dims)? * 4.0)?)?;
            let u = Var::from_tensor(&random(seed + 1, &dims)?)?;
            let fused = swiglu(&g, &u)?;
            // silu(g) = g / (1 + exp(-g)), from differentiable primitives
            let slow = ((g.as_tensor() * (g.neg()?.exp()? + 1.0)?.recip()?)? * u.as_tensor())?;
            assert_close(&fused, &slow, 1e-6)?;
            check_grads(&fused, &slow, &[&g, &u], seed, 1e-5)?;
        }
        Ok(())
    }
}
