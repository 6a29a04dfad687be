//! SwiGLU in plain loops: y = silu(gate) * up, with silu(g) = g σ(g).

use rayon::prelude::*;

const CHUNK: usize = 4096;

#[inline]
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + (-g).exp())
}

pub fn forward(gate: &[f32], up: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK))).for_each(|(y, (g, u))| {
        for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
            *y = g * sigmoid(g) * u;
        }
    });
}

/// d gate = dy · up · σ(g)(1 + g(1 - σ(g))), d up = dy · silu(g).
pub fn backward(gate: &[f32], up: &[f32], dy: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)).zip(dy.par_chunks(CHUNK)))
        .for_each(|((dg, du), ((g, u), dy))| {
            for i in 0..g.len() {
                let s = sigmoid(g[i]);
                dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                du[i] = dy[i] * g[i] * s;
            }
        });
}
