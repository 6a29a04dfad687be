//! Rotary position embedding as a candle op with backward; positions are given per
//! token, so they can restart at 0 in each document of a packed row.

pub mod cpu;

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

pub use cpu::RopeTable;

use crate::storage::f32s;

/// Rotates `x` (`[tokens, heads, head_dim]`) by each token's position.
pub fn rope(x: &Tensor, table: &Arc<RopeTable>, positions: &Arc<Vec<u32>>) -> Result<Tensor> {
    rope_heads(x, x.dim(1)?, table, positions)
}

/// Rotates the first `rotated` heads of `x` (`[tokens, heads, head_dim]`), passing the
/// others through: for a fused q|k|v projection, `rotated` is the query and key heads.
pub fn rope_heads(x: &Tensor, rotated: usize, table: &Arc<RopeTable>, positions: &Arc<Vec<u32>>) -> Result<Tensor> {
    let op = Rope { table: table.clone(), positions: positions.clone(), rotated, inverse: false };
    x.contiguous()?.apply_op1(op)
}

#[derive(Clone)]
struct Rope {
    table: Arc<RopeTable>,
    positions: Arc<Vec<u32>>,
    rotated: usize,
    inverse: bool,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s, l, self.name())?;
        let &[tokens, heads, d] = l.dims() else {
            bail!("rope: expects [tokens, heads, head_dim], got {:?}", l.dims());
        };
        if d != self.table.head_dim || d % 2 != 0 {
            bail!("rope: head_dim {d} but the table is for {}", self.table.head_dim);
        }
        if self.positions.len() != tokens {
            bail!("rope: {} positions for {tokens} tokens", self.positions.len());
        }
        if let Some(&p) = self.positions.iter().max()
            && p as usize >= self.table.max_positions()
        {
            bail!("rope: position {p} beyond the table's {}", self.table.max_positions());
        }
        let mut y = vec![0f32; x.len()];
        cpu::apply(x, heads, self.rotated, &self.table, &self.positions, self.inverse, &mut y);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        // A rotation's transpose is the rotation by the negative angle.
        let inverse = Rope { inverse: !self.inverse, ..self.clone() };
        Ok(Some(dy.contiguous()?.apply_op1(inverse)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        crate::gpu::by_dtype(s, self.name(), || gpu::apply::<f32>(self, s, l), || gpu::apply::<half::bf16>(self, s, l))?
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
    use candle_core::{CudaStorage, Layout, Result, Shape, bail};

    use super::Rope;
    use crate::gpu::{Float, elementwise, function, launched, view};

    pub fn apply<T: Float>(op: &Rope, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let &[tokens, heads, d] = l.dims() else {
            bail!("rope: expects [tokens, heads, head_dim], got {:?}", l.dims());
        };
        let half = d / 2;
        if d != op.table.head_dim || op.positions.len() != tokens {
            bail!("rope: head_dim {d} or {} positions do not fit {tokens} tokens", op.positions.len());
        }
        let rows = op.positions.iter().max().map_or(0, |&p| p as usize + 1);
        if rows > op.table.max_positions() {
            bail!("rope: position {} beyond the table's {}", rows - 1, op.table.max_positions());
        }
        let device = s.device.clone();
        let stream = device.cuda_stream();
        // Only the table rows the positions use go to the device.
        let cos = stream.clone_htod(&op.table.cos[..rows * half]).map_err(candle_core::Error::wrap)?;
        let sin = stream.clone_htod(&op.table.sin[..rows * half]).map_err(candle_core::Error::wrap)?;
        let positions: Vec<i32> = op.positions.iter().map(|&p| p as i32).collect();
        let positions = stream.clone_htod(&positions).map_err(candle_core::Error::wrap)?;
        let x = view::<T>(s, l, "rope")?;
        let mut y = device.alloc_zeros::<T>(tokens * heads * d)?;
        let func = function(&device, "rope", &format!("rope_{}", T::SUFFIX))?;
        let mut b = stream.launch_builder(&func);
        let (tokens_arg, heads_arg, rotated_arg, d_arg, inverse_arg) =
            (tokens as i64, heads as i32, op.rotated as i32, d as i32, op.inverse as i32);
        b.arg(&x).arg(&mut y).arg(&cos).arg(&sin).arg(&positions);
        b.arg(&tokens_arg).arg(&heads_arg).arg(&rotated_arg).arg(&d_arg).arg(&inverse_arg);
        // SAFETY: the arguments match the kernel's signature; sizes were checked above.
        launched(unsafe { b.launch(elementwise(tokens * heads * half)) }.map(|_| ()))?;
        Ok((CudaStorage::wrap_cuda_slice(y, device), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grads, fresh_seed, random};
    use candle_core::{Device, Var};

    /// transformers' `apply_rotary_pos_emb`: x * cos + rotate_half(x) * sin.
    fn reference(x: &Tensor, table: &RopeTable, positions: &[u32]) -> Result<Tensor> {
        let (tokens, _, d) = x.dims3()?;
        let half = d / 2;
        let mut cos: Vec<f32> = Vec::new();
        let mut sin: Vec<f32> = Vec::new();
        for &p in positions {
            let c = &table.cos[p as usize * half..(p as usize + 1) * half];
            let s = &table.sin[p as usize * half..(p as usize + 1) * half];
            cos.extend(c.iter().chain(c));
            sin.extend(s.iter().chain(s));
        }
        let cos = Tensor::from_vec(cos, (tokens, 1, d), &Device::Cpu)?;
        let sin = Tensor::from_vec(sin, (tokens, 1, d), &Device::Cpu)?;
        let x1 = x.narrow(2, 0, half)?;
        let x2 = x.narrow(2, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], 2)?;
        x.broadcast_mul(&cos)?.add(&rotated.broadcast_mul(&sin)?)
    }

    #[test]
    fn values_and_gradients_match_transformers_formula() -> Result<()> {
        let seed = fresh_seed();
        for (tokens, heads, d) in [(5, 1, 2), (37, 3, 16), (64, 4, 64)] {
            let table = Arc::new(RopeTable::new(d, 10000.0, 128));
            let positions: Vec<u32> = (0..tokens as u32).map(|i| (i * 7) % 50).collect();
            let x = Var::from_tensor(&random(seed, &[tokens, heads, d])?)?;
            let fused = rope(&x, &table, &Arc::new(positions.clone()))?;
            let slow = reference(&x, &table, &positions)?;
            assert_close(&fused, &slow, 1e-6)?;
            check_grads(&fused, &slow, &[&x], seed, 1e-5)?;
        }
        Ok(())
    }

    #[test]
    fn heads_past_the_rotated_ones_pass_through() -> Result<()> {
        let seed = fresh_seed();
        let table = Arc::new(RopeTable::new(8, 10000.0, 64));
        let positions: Vec<u32> = (0..10).collect();
        let x = Var::from_tensor(&random(seed, &[10, 5, 8])?)?;
        let fused = rope_heads(&x, 3, &table, &Arc::new(positions.clone()))?;
        let turned = reference(&x.narrow(1, 0, 3)?, &table, &positions)?;
        let slow = Tensor::cat(&[&turned, &x.narrow(1, 3, 2)?], 1)?;
        assert_close(&fused, &slow, 1e-6)?;
        check_grads(&fused, &slow, &[&x], seed, 1e-5)
    }

    #[test]
    fn a_position_beyond_the_table_is_an_error() {
        let table = Arc::new(RopeTable::new(4, 10000.0, 8));
        let x = Tensor::zeros((1, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(rope(&x, &table, &Arc::new(vec![8])).is_err());
    }
}
