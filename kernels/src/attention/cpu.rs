//! Causal attention restricted to each document of a packed row, in plain loops.
//!
//! The input is the fused projection `qkv`: per token `q_heads` query heads, then
//! `kv_heads` key heads, then `kv_heads` value heads, each `head_dim` wide; query head
//! `h` reads key/value head `h / (q_heads / kv_heads)` (grouped-query attention).
//! A segment `(start, len)` is one document: its tokens attend to the tokens of the same
//! segment at or before them, and to nothing else, so the cost grows with the sum of
//! squared document lengths, not the square of the row. Tokens in no segment (padding)
//! get zeros.
//!
//! The forward also returns each query's log-sum-exp, from which the backward
//! recomputes the probabilities instead of storing them.

use rayon::prelude::*;

use crate::storage::{axpy, dot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    /// Values per token in `qkv`.
    pub fn qkv_width(&self) -> usize {
        (self.q_heads + 2 * self.kv_heads) * self.head_dim
    }
    pub fn out_width(&self) -> usize {
        self.q_heads * self.head_dim
    }
    fn group(&self) -> usize {
        self.q_heads / self.kv_heads
    }
    fn q(&self, h: usize) -> usize {
        h * self.head_dim
    }
    fn k(&self, g: usize) -> usize {
        (self.q_heads + g) * self.head_dim
    }
    fn v(&self, g: usize) -> usize {
        (self.q_heads + self.kv_heads + g) * self.head_dim
    }
}

/// Splits `data` (rows of `width`) into the disjoint mutable pieces of each segment.
fn split_segments<'a>(mut data: &'a mut [f32], width: usize, segments: &[(usize, usize)]) -> Vec<&'a mut [f32]> {
    let mut pieces = Vec::with_capacity(segments.len());
    let mut at = 0;
    for &(start, len) in segments {
        let (_, rest) = data.split_at_mut((start - at) * width);
        let (piece, rest) = rest.split_at_mut(len * width);
        pieces.push(piece);
        data = rest;
        at = start + len;
    }
    pieces
}

/// Checks that segments are in order, disjoint and within `tokens`.
pub fn check_segments(segments: &[(usize, usize)], tokens: usize) -> Result<(), String> {
    let mut end = 0;
    for &(start, len) in segments {
        if start < end || start + len > tokens {
            return Err(format!("segment ({start}, {len}) overlaps or leaves {tokens} tokens"));
        }
        end = start + len;
    }
    Ok(())
}

pub fn forward(qkv: &[f32], heads: Heads, segments: &[(usize, usize)], scale: f32, out: &mut [f32], lse: &mut [f32]) {
    let (w, d) = (heads.qkv_width(), heads.head_dim);
    out.fill(0.0);
    lse.fill(0.0);
    let outs = split_segments(out, heads.out_width(), segments);
    let lses = split_segments(lse, heads.q_heads, segments);
    outs.into_par_iter().zip(lses).zip(segments.par_iter()).for_each(|((out, lse), &(start, len))| {
        let seg = &qkv[start * w..(start + len) * w];
        let mut scores = vec![0f32; len];
        for h in 0..heads.q_heads {
            let g = h / heads.group();
            for i in 0..len {
                let q = &seg[i * w + heads.q(h)..][..d];
                let mut max = f32::NEG_INFINITY;
                for j in 0..=i {
                    let s = scale * dot(q, &seg[j * w + heads.k(g)..][..d]);
                    scores[j] = s;
                    max = max.max(s);
                }
                let o = &mut out[(i * heads.q_heads + h) * d..][..d];
                let mut sum = 0f32;
                for j in 0..=i {
                    let p = (scores[j] - max).exp();
                    sum += p;
                    axpy(p, &seg[j * w + heads.v(g)..][..d], o);
                }
                for x in o.iter_mut() {
                    *x /= sum;
                }
                lse[i * heads.q_heads + h] = max + sum.ln();
            }
        }
    });
}

/// The gradient of `qkv` given the gradient of the output; `out` and `lse` are the
/// forward's.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    qkv: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    heads: Heads,
    segments: &[(usize, usize)],
    scale: f32,
    dqkv: &mut [f32],
) {
    let (w, d, ow) = (heads.qkv_width(), heads.head_dim, heads.out_width());
    dqkv.fill(0.0);
    let pieces = split_segments(dqkv, w, segments);
    pieces.into_par_iter().zip(segments.par_iter()).for_each(|(dseg, &(start, len))| {
        let seg = &qkv[start * w..(start + len) * w];
        let mut delta = vec![0f32; len];
        for h in 0..heads.q_heads {
            let g = h / heads.group();
            for i in 0..len {
                let t = (start + i) * ow + h * d;
                delta[i] = dot(&dout[t..t + d], &out[t..t + d]);
            }
            for i in 0..len {
                let t = (start + i) * ow + h * d;
                let dout_i = &dout[t..t + d];
                let lse_i = lse[(start + i) * heads.q_heads + h];
                let q_i = &seg[i * w + heads.q(h)..][..d];
                for j in 0..=i {
                    let k_j = &seg[j * w + heads.k(g)..][..d];
                    let v_j = &seg[j * w + heads.v(g)..][..d];
                    let p = (scale * dot(q_i, k_j) - lse_i).exp();
                    let ds = p * (dot(dout_i, v_j) - delta[i]);
                    axpy(p, dout_i, &mut dseg[j * w + heads.v(g)..][..d]);
                    axpy(scale * ds, k_j, &mut dseg[i * w + heads.q(h)..][..d]);
                    // q_i is read from the input, so the borrow of dseg is for dk only.
                    axpy(scale * ds, q_i, &mut dseg[j * w + heads.k(g)..][..d]);
                }
            }
        }
    });
}

/// One decoding step for one sequence: query heads `q` (`q_heads * head_dim`) attend to
/// the `len` cached keys and values (`len * kv_heads * head_dim` each, the new token's
/// already appended). Writes `q_heads * head_dim` outputs.
pub fn decode(q: &[f32], k_cache: &[f32], v_cache: &[f32], heads: Heads, scale: f32, out: &mut [f32]) {
    let d = heads.head_dim;
    let kv = heads.kv_heads * d;
    let len = k_cache.len() / kv;
    let mut scores = vec![0f32; len];
    out.fill(0.0);
    for h in 0..heads.q_heads {
        let g = h / heads.group();
        let q = &q[h * d..(h + 1) * d];
        let mut max = f32::NEG_INFINITY;
        for j in 0..len {
            let s = scale * dot(q, &k_cache[j * kv + g * d..][..d]);
            scores[j] = s;
            max = max.max(s);
        }
        let o = &mut out[h * d..(h + 1) * d];
        let mut sum = 0f32;
        for j in 0..len {
            let p = (scores[j] - max).exp();
            sum += p;
            axpy(p, &v_cache[j * kv + g * d..][..d], o);
        }
        for x in o.iter_mut() {
            *x /= sum;
        }
    }
}
