//! AdamW in plain loops, with PyTorch's semantics: decoupled weight decay applied to
//! the parameter before the update, bias-corrected moments, eps added to the
//! bias-corrected root of the second moment. `grad_scale` is the global-norm clipping
//! factor (1 when the norm is within bounds).

use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

const CHUNK: usize = 4096;

/// One update of step `t` (from 1).
pub fn step(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], hyper: Hyper, t: u64, grad_scale: f32) {
    let bias1 = 1.0 - hyper.beta1.powi(t as i32);
    let bias2_sqrt = (1.0 - hyper.beta2.powi(t as i32)).sqrt();
    let step_size = hyper.lr / bias1;
    let decay = 1.0 - hyper.lr * hyper.weight_decay;
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            for i in 0..p.len() {
                let g = g[i] * grad_scale;
                p[i] *= decay;
                m[i] = hyper.beta1 * m[i] + (1.0 - hyper.beta1) * g;
                v[i] = hyper.beta2 * v[i] + (1.0 - hyper.beta2) * g * g;
                p[i] -= step_size * m[i] / (v[i].sqrt() / bias2_sqrt + hyper.eps);
            }
        });
}

/// Σ g² over all gradients, in f64, in a fixed order.
pub fn sum_of_squares(grads: &[&[f32]]) -> f64 {
    grads
        .iter()
        .map(|g| {
            g.par_chunks(CHUNK).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).collect::<Vec<f64>>()
        })
        .map(|parts| parts.iter().sum::<f64>())
        .sum()
}
