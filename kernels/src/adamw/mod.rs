//! AdamW over a model's parameters with global gradient-norm clipping, updating the
//! parameters in place.

pub mod cpu;

use std::sync::Mutex;

use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Tensor, bail};

pub use cpu::Hyper;

use crate::storage::{f32s, f32s_mut};

/// The optimizer state: first and second moments per parameter (on the host; for
/// parameters on a GPU, in `device_moments` while training and copied back by
/// `sync_to_host`).
pub struct AdamW {
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
    pub steps: u64,
    device_moments: Option<Vec<(Tensor, Tensor)>>,
}

/// One parameter to update: its tensor (a `Var`'s), its gradient and whether weight decay
/// applies to it.
pub struct Update<'a> {
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub decay: bool,
}

impl AdamW {
    pub fn new(sizes: &[usize]) -> Self {
        Self::from_state(sizes.iter().map(|&n| (vec![0.0; n], vec![0.0; n])).collect(), 0)
    }

    /// A state read back (moments per parameter, steps taken).
    pub fn from_state(moments: Vec<(Vec<f32>, Vec<f32>)>, steps: u64) -> Self {
        AdamW { moments, steps, device_moments: None }
    }

    /// One step for parameters on any device, composed of candle tensor ops (the GPU
    /// path; on the CPU, `step` runs the fused twin). Same formulas and clipping as
    /// `step`; the moments live on the parameters' device until `sync_to_host`.
    pub fn step_vars(
        &mut self,
        vars: &[candle_core::Var],
        grads: &[&Tensor],
        decay: &[bool],
        hyper: Hyper,
        max_norm: Option<f64>,
    ) -> Result<f64> {
        if vars.len() != self.moments.len() || grads.len() != vars.len() || decay.len() != vars.len() {
            bail!("adamw: {} parameters for a state of {}", vars.len(), self.moments.len());
        }
        if self.device_moments.is_none() {
            let upload = |values: &Vec<f32>, like: &Tensor| Tensor::from_slice(values, like.shape(), like.device());
            let moments = self
                .moments
                .iter()
                .zip(vars)
                .map(|((m, v), var)| Ok((upload(m, var.as_tensor())?, upload(v, var.as_tensor())?)))
                .collect::<Result<Vec<_>>>()?;
            self.device_moments = Some(moments);
        }
        let mut norm_sq = 0f64;
        for g in grads {
            norm_sq += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        }
        let norm = norm_sq.sqrt();
        let scale = match max_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.steps += 1;
        let t = self.steps as i32;
        let h = hyper;
        let bias1 = 1.0 - (h.beta1 as f64).powi(t);
        let bias2_sqrt = (1.0 - (h.beta2 as f64).powi(t)).sqrt();
        let moments = self.device_moments.as_mut().expect("uploaded above");
        for (((var, g), &decay), (m, v)) in vars.iter().zip(grads).zip(decay).zip(moments.iter_mut()) {
            let g = (g.to_dtype(candle_core::DType::F32)? * scale)?;
            let shrink = if decay { 1.0 - h.lr as f64 * h.weight_decay as f64 } else { 1.0 };
            *m = ((&*m * h.beta1 as f64)? + (&g * (1.0 - h.beta1 as f64))?)?;
            *v = ((&*v * h.beta2 as f64)? + (g.sqr()? * (1.0 - h.beta2 as f64))?)?;
            let denom = ((v.sqrt()? / bias2_sqrt)? + h.eps as f64)?;
            let p = ((var.as_tensor() * shrink)? - ((&*m / denom)? * (h.lr as f64 / bias1))?)?;
            var.set(&p)?;
        }
        Ok(norm)
    }

    /// Copies the moments of `step_vars` back into `moments` (to save them).
    pub fn sync_to_host(&mut self) -> Result<()> {
        if let Some(device) = &self.device_moments {
            for ((m, v), (dm, dv)) in self.moments.iter_mut().zip(device) {
                *m = dm.flatten_all()?.to_vec1()?;
                *v = dv.flatten_all()?.to_vec1()?;
            }
        }
        Ok(())
    }

    /// The global L2 norm of the gradients.
    pub fn grad_norm(grads: &[&Tensor]) -> Result<f64> {
        let data: Vec<Vec<f32>> = grads.iter().map(|g| g.flatten_all()?.to_vec1::<f32>()).collect::<Result<_>>()?;
        let slices: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        Ok(cpu::sum_of_squares(&slices).sqrt())
    }

    /// One step: clips the gradients to `max_norm` (if given) by their global norm, then
    /// updates every parameter. Returns the norm before clipping.
    pub fn step(&mut self, updates: &[Update], hyper: Hyper, max_norm: Option<f64>) -> Result<f64> {
        if updates.len() != self.moments.len() {
            bail!("adamw: {} parameters for a state of {}", updates.len(), self.moments.len());
        }
        let grads: Vec<&Tensor> = updates.iter().map(|u| u.grad).collect();
        let norm = Self::grad_norm(&grads)?;
        let scale = match max_norm {
            Some(max) if norm > max => (max / (norm + 1e-6)) as f32,
            _ => 1.0,
        };
        self.steps += 1;
        for (u, (m, v)) in updates.iter().zip(self.moments.iter_mut()) {
            let hyper = if u.decay { hyper } else { Hyper { weight_decay: 0.0, ..hyper } };
            let op = StepOp { m: Mutex::new(m), v: Mutex::new(v), hyper, t: self.steps, scale };
            u.param.inplace_op2(&u.grad.contiguous()?, &op)?;
        }
        Ok(norm)
    }
}

struct StepOp<'a> {
    m: Mutex<&'a mut Vec<f32>>,
    v: Mutex<&'a mut Vec<f32>>,
    hyper: Hyper,
    t: u64,
    scale: f32,
}

impl InplaceOp2 for StepOp<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<()> {
        let param = f32s_mut(dst, dst_l, "adamw")?;
        let grad = f32s(gs, gl, "adamw")?;
        let mut m = self.m.lock().expect("not poisoned");
        let mut v = self.v.lock().expect("not poisoned");
        if grad.len() != param.len() || m.len() != param.len() {
            bail!("adamw: parameter of {}, gradient of {}, state of {}", param.len(), grad.len(), m.len());
        }
        cpu::step(param, grad, m.as_mut_slice(), v.as_mut_slice(), self.hyper, self.t, self.scale);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fresh_seed, random};
    use candle_core::Var;

    /// torch.optim.AdamW's update written with candle tensor ops, as the reference.
    fn reference_step(
        p: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
        h: Hyper,
        t: i32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let p = (p * (1.0 - h.lr as f64 * h.weight_decay as f64))?;
        let m = ((m * h.beta1 as f64)? + (g * (1.0 - h.beta1 as f64))?)?;
        let v = ((v * h.beta2 as f64)? + (g.sqr()? * (1.0 - h.beta2 as f64))?)?;
        let bias1 = 1.0 - (h.beta1 as f64).powi(t);
        let bias2 = 1.0 - (h.beta2 as f64).powi(t);
        let denom = ((v.sqrt()? / bias2.sqrt())? + h.eps as f64)?;
        let p = (p - ((&m / &denom)? * (h.lr as f64 / bias1))?)?;
        Ok((p, m, v))
    }

    #[test]
    fn three_steps_match_pytorch_formulas() -> Result<()> {
        let seed = fresh_seed();
        let hyper = Hyper { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
        let param = Var::from_tensor(&random(seed, &[33, 7])?)?;
        let mut reference = (param.as_tensor().copy()?, param.zeros_like()?, param.zeros_like()?);
        let mut opt = AdamW::new(&[33 * 7]);
        for t in 1..=3 {
            let grad = random(seed + t as u64, &[33, 7])?;
            opt.step(&[Update { param: param.as_tensor(), grad: &grad, decay: true }], hyper, None)?;
            reference = reference_step(&reference.0, &grad, &reference.1, &reference.2, hyper, t)?;
            let diff = crate::testing::max_relative_diff(param.as_tensor(), &reference.0)?;
            assert!(diff < 1e-6, "step {t}: {diff} (seed {seed})");
        }
        Ok(())
    }

    /// The composed path (used on the GPU) takes the same steps as the fused twin, here
    /// on the CPU, with clipping and decay on one parameter of two.
    #[test]
    fn the_composed_step_matches_the_fused_one() -> Result<()> {
        let seed = fresh_seed();
        let hyper = Hyper { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
        let fused = [Var::from_tensor(&random(seed, &[13, 5])?)?, Var::from_tensor(&random(seed + 1, &[7])?)?];
        let composed = [Var::from_tensor(&random(seed, &[13, 5])?)?, Var::from_tensor(&random(seed + 1, &[7])?)?];
        let (mut a, mut b) = (AdamW::new(&[65, 7]), AdamW::new(&[65, 7]));
        for t in 0..3u64 {
            let grads = [random(seed + 10 + t, &[13, 5])?, random(seed + 20 + t, &[7])?];
            let updates = [
                Update { param: fused[0].as_tensor(), grad: &grads[0], decay: true },
                Update { param: fused[1].as_tensor(), grad: &grads[1], decay: false },
            ];
            let na = a.step(&updates, hyper, Some(2.0))?;
            let nb = b.step_vars(&composed, &[&grads[0], &grads[1]], &[true, false], hyper, Some(2.0))?;
            assert!((na - nb).abs() < 1e-5 * na, "norms {na} {nb}");
            for (x, y) in fused.iter().zip(&composed) {
                let diff = crate::testing::max_relative_diff(x.as_tensor(), y.as_tensor())?;
                assert!(diff < 1e-6, "step {t}: {diff} (seed {seed})");
            }
        }
        b.sync_to_host()?;
        assert_eq!(b.steps, 3);
        for ((ma, va), (mb, vb)) in a.moments.iter().zip(&b.moments) {
            // Relative to the largest moment: the clipping factor is f32 in one, f64 in the other.
            let close = |x: &[f32], y: &[f32]| {
                let scale = x.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
                x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5 * scale)
            };
            assert!(close(ma, mb) && close(va, vb), "moments differ (seed {seed})");
        }
        Ok(())
    }

    #[test]
    fn clipping_scales_by_the_global_norm() -> Result<()> {
        let hyper = Hyper { lr: 1.0, beta1: 0.0, beta2: 0.0, eps: 0.0, weight_decay: 0.0 };
        // With beta = 0 an update is lr * g / |g|: the sign. Clipping must not change
        // signs, only the reported norm.
        let a = Var::new(&[0.0f32, 0.0], &candle_core::Device::Cpu)?;
        let b = Var::new(&[0.0f32], &candle_core::Device::Cpu)?;
        let ga = Tensor::new(&[3.0f32, 0.0], &candle_core::Device::Cpu)?;
        let gb = Tensor::new(&[-4.0f32], &candle_core::Device::Cpu)?;
        let mut opt = AdamW::new(&[2, 1]);
        let norm = opt.step(
            &[
                Update { param: a.as_tensor(), grad: &ga, decay: true },
                Update { param: b.as_tensor(), grad: &gb, decay: false },
            ],
            hyper,
            Some(1.0),
        )?;
        assert!((norm - 5.0).abs() < 1e-9);
        assert_eq!(b.as_tensor().to_vec1::<f32>()?, [1.0]);
        Ok(())
    }
}
