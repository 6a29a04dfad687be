//! Masked cross-entropy fused with its gradient, in plain loops (llm.c's fused
//! classifier): one pass per row computes the loss and writes d logits, so the logits
//! are read once instead of three times (softmax, loss, gradient).
//!
//! Rows labelled `IGNORE` (-100) contribute neither loss nor gradient. The loss is
//! divided by `normalizer`, the trained-token count of the whole optimizer step, which
//! the caller gives from outside so gradient accumulation weighs every token equally.

use rayon::prelude::*;

use crate::storage::{fast_exp, lanes, widest};

pub const IGNORE: i32 = -100;

/// Returns Σ loss / normalizer and writes d(that)/d logits into `dlogits`.
pub fn forward_backward(logits: &[f32], labels: &[i32], normalizer: f32, dlogits: &mut [f32]) -> f32 {
    let vocab = logits.len() / labels.len().max(1);
    let inv = 1.0 / normalizer;
    let losses: Vec<f64> = dlogits
        .par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .zip(labels.par_iter())
        .map(|((d, row), &label)| {
            if label == IGNORE {
                d.fill(0.0);
                return 0.0;
            }
            row_loss(row, d, label as usize, inv) as f64
        })
        .collect();
    // Summed in row order, whatever the threads: deterministic.
    losses.iter().sum::<f64>() as f32
}

widest! {
/// One labelled row: writes softmax(row) * inv, less inv at the label, into `d`; returns
/// the row's loss times inv. Exponentials and their sum in separate loops, so both
/// vectorize.
fn row_loss(row: &[f32], d: &mut [f32], label: usize, inv: f32) -> f32 {
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    for (d, &x) in d.iter_mut().zip(row) {
        *d = fast_exp(x - max);
    }
    let sum = lanes(d, 0.0, |a, b| a + b);
    let lse = max + sum.ln();
    let scale = inv / sum;
    for d in d.iter_mut() {
        *d *= scale;
    }
    d[label] -= inv;
    (lse - row[label]) * inv
}
}
