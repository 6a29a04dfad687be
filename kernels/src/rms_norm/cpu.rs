//! RMSNorm in plain loops: the specification of the kernel.
//!
//! y = x / sqrt(mean(x²) + eps) * w, per row of `cols` values.

use rayon::prelude::*;

use crate::storage::{REDUCE_BLOCK, widest};

pub fn forward(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let cols = w.len();
    y.par_chunks_mut(cols).zip(x.par_chunks(cols)).for_each(|(y, x)| forward_row(x, w, eps, y));
}

widest! {
fn forward_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let r = inv_rms(x, eps);
    for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
        *y = x * r * w;
    }
}
}

/// dx = r (dy w - x̂ mean(dy w x̂)), dw = Σ_rows dy x̂, with x̂ = x r.
pub fn backward(x: &[f32], w: &[f32], dy: &[f32], eps: f32, dx: &mut [f32], dw: &mut [f32]) {
    let cols = w.len();
    let block = cols * REDUCE_BLOCK;
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block).zip(dy.par_chunks(block)))
        .map(|(dx, (x, dy))| {
            let mut dw_part = vec![0f32; cols];
            backward_block(x, w, dy, eps, dx, &mut dw_part);
            dw_part
        })
        .collect();
    dw.fill(0.0);
    for part in partials {
        for (d, p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
}

widest! {
/// Rows of one reduction block: dx, and their share of dw added into `dw_part`.
fn backward_block(x: &[f32], w: &[f32], dy: &[f32], eps: f32, dx: &mut [f32], dw_part: &mut [f32]) {
    let cols = w.len();
    for ((dx, x), dy) in dx.chunks_mut(cols).zip(x.chunks(cols)).zip(dy.chunks(cols)) {
        let r = inv_rms(x, eps);
        let mut mean = 0f32;
        for i in 0..cols {
            let xhat = x[i] * r;
            mean += dy[i] * w[i] * xhat;
            dw_part[i] += dy[i] * xhat;
        }
        mean /= cols as f32;
        for i in 0..cols {
            dx[i] = r * (dy[i] * w[i] - x[i] * r * mean);
        }
    }
}
}

#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ss = crate::storage::dot(x, x);
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}
