//! SwiGLU in plain loops over a fused gate|up row: y = silu(gate) * up, with
//! silu(g) = g σ(g).

use rayon::prelude::*;

use crate::storage::{fast_exp, widest};

#[inline(always)]
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-g))
}

/// `x` holds rows of `2f` (gate then up); `y` rows of `f`.
pub fn forward(x: &[f32], f: usize, y: &mut [f32]) {
    y.par_chunks_mut(f).zip(x.par_chunks(2 * f)).for_each(|(y, x)| forward_row(x, y));
}

widest! {
fn forward_row(x: &[f32], y: &mut [f32]) {
    let (g, u) = x.split_at(y.len());
    for i in 0..y.len() {
        y[i] = g[i] * sigmoid(g[i]) * u[i];
    }
}
}

/// d gate = dy · up · σ(g)(1 + g(1 - σ(g))), d up = dy · silu(g).
pub fn backward(x: &[f32], f: usize, dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(2 * f)
        .zip(x.par_chunks(2 * f))
        .zip(dy.par_chunks(f))
        .for_each(|((dx, x), dy)| backward_row(x, dy, dx));
}

widest! {
fn backward_row(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let f = dy.len();
    let (g, u) = x.split_at(f);
    let (dg, du) = dx.split_at_mut(f);
    for i in 0..f {
        let s = sigmoid(g[i]);
        dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
        du[i] = dy[i] * g[i] * s;
    }
}
}
