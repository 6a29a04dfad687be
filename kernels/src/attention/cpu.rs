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
//! recomputes the probabilities instead of storing them. Within a document the work is
//! blocks of dense matrix products (gemm), 64 query rows at a time; documents run in
//! parallel.

use rayon::prelude::*;

use crate::storage::{Mat, MatMut, axpy, dot, fast_exp, lanes, matmul, widest};

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

/// Query rows per block: the score block is `BLOCK x keys`, so memory stays bounded for
/// long documents.
const BLOCK: usize = 64;

/// Views of one segment's q, k and v heads inside `qkv` (rows are tokens).
struct SegmentViews<'a> {
    seg: &'a [f32],
    heads: Heads,
}

impl<'a> SegmentViews<'a> {
    fn rows(&self, offset: usize, first: usize, rows: usize) -> Mat<'a> {
        let w = self.heads.qkv_width();
        Mat {
            data: self.seg,
            offset: first * w + offset,
            rows,
            cols: self.heads.head_dim,
            row_stride: w,
            col_stride: 1,
        }
    }
    fn q(&self, h: usize, first: usize, rows: usize) -> Mat<'a> {
        self.rows(self.heads.q(h), first, rows)
    }
    fn k(&self, g: usize, rows: usize) -> Mat<'a> {
        self.rows(self.heads.k(g), 0, rows)
    }
    fn v(&self, g: usize, rows: usize) -> Mat<'a> {
        self.rows(self.heads.v(g), 0, rows)
    }
}

widest! {
/// Turns scores `s[r][j]` of query `first + r` into probabilities over keys `j <= first + r`
/// (zero beyond), given each query's log-sum-exp, or computing it into `lse` when `None`.
fn softmax_rows(scores: &mut [f32], keys: usize, first: usize, scale: f32, lse: &mut [f32], known: bool) {
    for (r, row) in scores.chunks_mut(keys).enumerate() {
        let visible = first + r + 1;
        let (row, masked) = row.split_at_mut(visible);
        masked.fill(0.0);
        if known {
            let l = lse[r];
            for x in row.iter_mut() {
                *x = fast_exp(*x * scale - l);
            }
        } else {
            // Exponentials, then their sum, in separate loops: a float sum in the same loop
            // would keep the exponentials from vectorizing.
            let max = lanes(row, f32::NEG_INFINITY, f32::max) * scale;
            for x in row.iter_mut() {
                *x = fast_exp(*x * scale - max);
            }
            let sum = lanes(row, 0.0, |a, b| a + b);
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv);
            lse[r] = max + sum.ln();
        }
    }
}
}

pub fn forward(qkv: &[f32], heads: Heads, segments: &[(usize, usize)], scale: f32, out: &mut [f32], lse: &mut [f32]) {
    let (w, d, hq) = (heads.qkv_width(), heads.head_dim, heads.q_heads);
    out.fill(0.0);
    lse.fill(0.0);
    let outs = split_segments(out, heads.out_width(), segments);
    let lses = split_segments(lse, hq, segments);
    outs.into_par_iter().zip(lses).zip(segments.par_iter()).for_each(|((out, lse), &(start, len))| {
        let views = SegmentViews { seg: &qkv[start * w..(start + len) * w], heads };
        let mut scores = vec![0f32; BLOCK.min(len) * len];
        let mut block_lse = vec![0f32; BLOCK];
        for h in 0..hq {
            let g = h / heads.group();
            for first in (0..len).step_by(BLOCK) {
                let rows = BLOCK.min(len - first);
                let keys = first + rows;
                let s = &mut scores[..rows * keys];
                matmul(MatMut::dense(s, rows, keys), views.q(h, first, rows), views.k(g, keys).t(), false, 1.0);
                softmax_rows(s, keys, first, scale, &mut block_lse, false);
                let dst = MatMut::rows(out, (first * hq + h) * d, rows, d, hq * d);
                matmul(dst, Mat::dense(s, rows, keys), views.v(g, keys), false, 1.0);
                for r in 0..rows {
                    lse[(first + r) * hq + h] = block_lse[r];
                }
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
    let (w, d, hq, ow) = (heads.qkv_width(), heads.head_dim, heads.q_heads, heads.out_width());
    dqkv.fill(0.0);
    let pieces = split_segments(dqkv, w, segments);
    pieces.into_par_iter().zip(segments.par_iter()).for_each(|(dseg, &(start, len))| {
        let views = SegmentViews { seg: &qkv[start * w..(start + len) * w], heads };
        let dout_seg = &dout[start * ow..(start + len) * ow];
        let mut p = vec![0f32; BLOCK.min(len) * len];
        let mut dp = vec![0f32; BLOCK.min(len) * len];
        let mut delta = vec![0f32; len];
        let mut block_lse = vec![0f32; BLOCK];
        for h in 0..hq {
            let g = h / heads.group();
            for (i, delta) in delta.iter_mut().enumerate() {
                let t = (start + i) * ow + h * d;
                *delta = dot(&dout[t..t + d], &out[t..t + d]);
            }
            let dout_rows = |first: usize, rows: usize| Mat {
                data: dout_seg,
                offset: first * ow + h * d,
                rows,
                cols: d,
                row_stride: ow,
                col_stride: 1,
            };
            for first in (0..len).step_by(BLOCK) {
                let rows = BLOCK.min(len - first);
                let keys = first + rows;
                let (p, dp) = (&mut p[..rows * keys], &mut dp[..rows * keys]);
                for r in 0..rows {
                    block_lse[r] = lse[(start + first + r) * hq + h];
                }
                matmul(MatMut::dense(p, rows, keys), views.q(h, first, rows), views.k(g, keys).t(), false, 1.0);
                softmax_rows(p, keys, first, scale, &mut block_lse, true);
                matmul(MatMut::dense(dp, rows, keys), dout_rows(first, rows), views.v(g, keys).t(), false, 1.0);
                // dS = P (dP - delta) * scale, zero where P is masked.
                score_gradient(p, dp, &delta[first..first + rows], keys, scale);
                let (p_mat, ds) = (Mat::dense(p, rows, keys), Mat::dense(dp, rows, keys));
                // dV_g += Pᵀ dO, dQ_h += dS K_g, dK_g += dSᵀ Q_h
                let dv = MatMut::rows(dseg, heads.v(g), keys, d, w);
                matmul(dv, p_mat.t(), dout_rows(first, rows), true, 1.0);
                let dq = MatMut::rows(dseg, first * w + heads.q(h), rows, d, w);
                matmul(dq, ds, views.k(g, keys), true, 1.0);
                let dk = MatMut::rows(dseg, heads.k(g), keys, d, w);
                matmul(dk, ds.t(), views.q(h, first, rows), true, 1.0);
            }
        }
    });
}

widest! {
/// dS = P (dP - delta) * scale over a block of rows, written over dP.
fn score_gradient(p: &[f32], dp: &mut [f32], delta: &[f32], keys: usize, scale: f32) {
    for (r, &dl) in delta.iter().enumerate() {
        let (pr, dr) = (&p[r * keys..(r + 1) * keys], &mut dp[r * keys..(r + 1) * keys]);
        for j in 0..keys {
            dr[j] = pr[j] * (dr[j] - dl) * scale;
        }
    }
}
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
