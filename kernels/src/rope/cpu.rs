//! Rotary position embedding in plain loops, in Hugging Face's convention: the pairs
//! rotated together are (i, i + D/2) of each head, so checkpoints interoperate.
//!
//! x: `[tokens, heads, head_dim]`; each token has its own position (positions restart
//! per packed document). Only the first `rotated` heads turn (queries and keys of a
//! fused projection); the others (values) pass through. `inverse` rotates by the
//! negative angle, which is the backward.

use rayon::prelude::*;

/// cos and sin of `position * theta^(-2i/D)` for every position and pair index.
#[derive(Debug, Clone)]
pub struct RopeTable {
    pub head_dim: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(head_dim: usize, theta: f32, max_positions: usize) -> Self {
        let half = head_dim / 2;
        // Computed as transformers does, in f32: inv_freq = 1 / theta^(2i/D).
        let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        RopeTable { head_dim, cos, sin }
    }

    pub fn max_positions(&self) -> usize {
        self.cos.len() / (self.head_dim / 2).max(1)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn apply(
    x: &[f32],
    heads: usize,
    rotated: usize,
    table: &RopeTable,
    positions: &[u32],
    inverse: bool,
    y: &mut [f32],
) {
    let d = table.head_dim;
    let half = d / 2;
    let token = heads * d;
    y.par_chunks_mut(token).zip(x.par_chunks(token)).zip(positions.par_iter()).for_each(|((y, x), &p)| {
        let cos = &table.cos[p as usize * half..(p as usize + 1) * half];
        let sin = &table.sin[p as usize * half..(p as usize + 1) * half];
        let sign = if inverse { -1.0 } else { 1.0 };
        for (h, (y, x)) in y.chunks_mut(d).zip(x.chunks(d)).enumerate() {
            if h >= rotated {
                y.copy_from_slice(x);
                continue;
            }
            for i in 0..half {
                let (a, b) = (x[i], x[i + half]);
                let s = sign * sin[i];
                y[i] = a * cos[i] - b * s;
                y[i + half] = b * cos[i] + a * s;
            }
        }
    });
}
