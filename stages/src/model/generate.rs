//! Greedy decoding with a key/value cache, batched.
//!
//! The prompts of a batch are prefilled together as segments of one token sequence
//! (the same packed attention as training), their keys and values kept per sequence and
//! layer; each later step feeds one token per unfinished sequence and attends to its
//! cache. Ties in the argmax go to the lowest token id, so decoding is deterministic.

use candle_core::{Device, Result, Tensor};
use kiln_kernels::attention::cpu::decode;
use kiln_kernels::rms_norm::rms_norm;
use kiln_kernels::rope::rope_heads;
use kiln_kernels::swiglu::swiglu;

use super::{Model, Tokens, index_tensor};

/// Keys and values of one sequence, per layer: `len * kv_heads * head_dim` each.
struct Cache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

/// Continues each prompt greedily until `stop` or `max_new` tokens; returns the new
/// tokens of each, `stop` excluded.
pub fn greedy(model: &Model, prompts: &[Vec<u32>], stop: u32, max_new: usize) -> Result<Vec<Vec<u32>>> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let heads = model.heads();
    let (d, kv) = (heads.head_dim, heads.kv_heads * heads.head_dim);
    let q_width = heads.q_heads * d;
    let layers = model.blocks.len();

    // Prefill all prompts as one packed sequence.
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    let mut segments = Vec::new();
    for p in prompts {
        segments.push((ids.len(), p.len()));
        ids.extend_from_slice(p);
        positions.extend(0..p.len() as u32);
    }
    let mut caches: Vec<Cache> = prompts
        .iter()
        .map(|p| Cache { keys: vec![Vec::new(); layers], values: vec![Vec::new(); layers], len: p.len() })
        .collect();
    let tokens = Tokens::new(ids, positions, segments.clone())?;
    let hidden = model.hidden(&tokens, |layer, qkv| {
        let values: Vec<f32> = qkv.flatten_all()?.to_vec1()?;
        let width = heads.qkv_width();
        for (cache, &(start, len)) in caches.iter_mut().zip(&segments) {
            for t in start..start + len {
                let row = &values[t * width..(t + 1) * width];
                cache.keys[layer].extend_from_slice(&row[q_width..q_width + kv]);
                cache.values[layer].extend_from_slice(&row[q_width + kv..]);
            }
        }
        Ok(())
    })?;
    let last: Vec<u32> = segments.iter().map(|&(s, l)| (s + l - 1) as u32).collect();
    let logits = model.logits(&hidden.index_select(&index_tensor(&last)?, 0)?)?;
    let mut next = argmax_rows(&logits)?;

    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    let limit = model.config.max_position_embeddings;
    for step in 0..max_new {
        // Record the chosen tokens; finished sequences leave the batch.
        let mut still = Vec::new();
        for (slot, &s) in active.iter().enumerate() {
            let token = next[slot];
            if token == stop {
                continue;
            }
            outputs[s].push(token);
            if step + 1 < max_new && caches[s].len < limit {
                still.push(s);
            }
        }
        active = still;
        if active.is_empty() {
            break;
        }
        let ids: Vec<u32> = active.iter().map(|&s| *outputs[s].last().expect("just pushed")).collect();
        let positions: Vec<u32> = active.iter().map(|&s| caches[s].len as u32).collect();
        next = step_batch(model, &ids, &positions, &active, &mut caches)?;
    }
    Ok(outputs)
}

/// One decoding step for the active sequences; returns the next token of each.
fn step_batch(
    model: &Model,
    ids: &[u32],
    positions: &[u32],
    active: &[usize],
    caches: &mut [Cache],
) -> Result<Vec<u32>> {
    let heads = model.heads();
    let (d, kv, w) = (heads.head_dim, heads.kv_heads * heads.head_dim, heads.qkv_width());
    let q_width = heads.q_heads * d;
    let eps = model.config.rms_norm_eps as f32;
    let scale = 1.0 / (d as f32).sqrt();
    let b = ids.len();
    let positions = std::sync::Arc::new(positions.to_vec());
    let mut x = model.embed.index_select(&index_tensor(ids)?, 0)?;
    for (layer, block) in model.blocks.iter().enumerate() {
        let h = rms_norm(&x, &block.input_norm, eps)?;
        let qkv = h.matmul(&block.qkv_weight.t()?)?.broadcast_add(&block.qkv_bias)?;
        let qkv = qkv.reshape((b, heads.q_heads + 2 * heads.kv_heads, d))?;
        let qkv = rope_heads(&qkv, heads.q_heads + heads.kv_heads, &model.rope, &positions)?;
        let values: Vec<f32> = qkv.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; b * q_width];
        for (slot, &s) in active.iter().enumerate() {
            let row = &values[slot * w..(slot + 1) * w];
            let cache = &mut caches[s];
            cache.keys[layer].extend_from_slice(&row[q_width..q_width + kv]);
            cache.values[layer].extend_from_slice(&row[q_width + kv..]);
            decode(
                &row[..q_width],
                &cache.keys[layer],
                &cache.values[layer],
                heads,
                scale,
                &mut out[slot * q_width..(slot + 1) * q_width],
            );
        }
        let a = Tensor::from_vec(out, (b, q_width), &Device::Cpu)?;
        x = (x + a.matmul(&block.o_weight.t()?)?)?;
        let h = rms_norm(&x, &block.post_norm, eps)?;
        let m = swiglu(&h.matmul(&block.gate_up_weight.t()?)?)?;
        x = (x + m.matmul(&block.down_weight.t()?)?)?;
    }
    for &s in active {
        caches[s].len += 1;
    }
    let x = rms_norm(&x, &model.norm, eps)?;
    argmax_rows(&model.logits(&x)?)
}

/// The index of each row's largest value, the lowest index on ties.
fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    let (_, vocab) = logits.dims2()?;
    let values: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    Ok(values
        .chunks(vocab)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::tiny_config;

    /// Cached decoding picks the same tokens as recomputing the whole sequence each step.
    #[test]
    fn cached_decoding_equals_full_recomputation() -> Result<()> {
        let (model, _) = Model::init(&tiny_config(), 4)?;
        let prompts = vec![vec![1u32, 2, 3], vec![4u32], vec![5u32, 6, 7, 8, 9]];
        let fast = greedy(&model, &prompts, u32::MAX, 6)?;
        for (p, got) in prompts.iter().zip(&fast) {
            let mut seq = p.clone();
            for _ in 0..6 {
                let n = seq.len();
                let t = Tokens::new(seq.clone(), (0..n as u32).collect(), vec![(0, n)])?;
                let h = model.hidden(&t, |_, _| Ok(()))?;
                let logits = model.logits(&h.narrow(0, n - 1, 1)?)?;
                seq.push(argmax_rows(&logits)?[0]);
            }
            assert_eq!(&seq[p.len()..], got.as_slice());
        }
        Ok(())
    }

    #[test]
    fn decoding_stops_at_the_stop_token() -> Result<()> {
        let (model, _) = Model::init(&tiny_config(), 4)?;
        let free = greedy(&model, &[vec![1, 2]], u32::MAX, 5)?;
        let stop = free[0][2];
        let cut = greedy(&model, &[vec![1, 2]], stop, 5)?;
        let expected: Vec<u32> = free[0].iter().copied().take_while(|&t| t != stop).collect();
        assert_eq!(cut[0], expected);
        Ok(())
    }
}
