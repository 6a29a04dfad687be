//! Greedy decoding and sampling (temperature, top-p) with a key/value cache, batched.
//!
//! The prompts of a batch are prefilled together as segments of one token sequence
//! (the same packed attention as training), their keys and values kept per sequence and
//! layer; each later step feeds one token per unfinished sequence and attends to its
//! cache. Ties in the argmax go to the lowest token id, so decoding is deterministic.
//! Sampling draws each sequence's tokens from its own seeded stream, so a sequence's
//! tokens do not depend on which others share its batch.

use candle_core::{Device, Result, Tensor};
use kiln_kernels::attention::cpu::decode as attend_cached;
use kiln_kernels::rms_norm::rms_norm;
use kiln_kernels::rope::rope_heads;
use kiln_kernels::swiglu::swiglu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Model, Tokens, index_tensor};

/// Keys and values of one sequence, per layer: `len * kv_heads * head_dim` each.
struct Cache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    Greedy,
    /// From softmax(logits / temperature), restricted to the smallest set of most likely
    /// tokens whose probabilities sum to at least `top_p` (nucleus sampling).
    Sample {
        temperature: f32,
        top_p: f32,
    },
}

/// When a sequence ends before `max_new` tokens: at the `token` (an end of turn, left
/// out of its output), or as soon as `done` holds for its tokens so far (a stop
/// sequence in their text, which the caller cuts off).
pub struct Stop<'a> {
    pub token: u32,
    pub done: &'a (dyn Fn(&[u32]) -> bool + Sync),
}

impl Stop<'_> {
    /// Ends at `token` only.
    pub fn at(token: u32) -> Stop<'static> {
        Stop { token, done: &|_| false }
    }
}

/// Continues each prompt greedily until `stop` or `max_new` tokens; returns the new
/// tokens of each, `stop` excluded.
pub fn greedy(model: &Model, prompts: &[Vec<u32>], stop: u32, max_new: usize) -> Result<Vec<Vec<u32>>> {
    decode(model, prompts, &Stop::at(stop), max_new, Decoding::Greedy, &[])
}

/// Continues each prompt until it stops (`stop`) or has `max_new` tokens, choosing tokens by
/// `decoding`; `seeds[i]` seeds prompt i's stream when sampling.
pub fn decode(
    model: &Model,
    prompts: &[Vec<u32>],
    stop: &Stop,
    max_new: usize,
    decoding: Decoding,
    seeds: &[u64],
) -> Result<Vec<Vec<u32>>> {
    let mut chooser = Chooser::new(decoding, prompts.len(), seeds);
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
    let all: Vec<usize> = (0..prompts.len()).collect();
    let mut next = chooser.choose(&logits, &all)?;

    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    let limit = model.config.max_position_embeddings;
    for step in 0..max_new {
        // Record the chosen tokens; finished sequences leave the batch.
        let mut still = Vec::new();
        for (slot, &s) in active.iter().enumerate() {
            let token = next[slot];
            if token == stop.token {
                continue;
            }
            outputs[s].push(token);
            if step + 1 < max_new && caches[s].len < limit && !(stop.done)(&outputs[s]) {
                still.push(s);
            }
        }
        active = still;
        if active.is_empty() {
            break;
        }
        let ids: Vec<u32> = active.iter().map(|&s| *outputs[s].last().expect("just pushed")).collect();
        let positions: Vec<u32> = active.iter().map(|&s| caches[s].len as u32).collect();
        let logits = step_batch(model, &ids, &positions, &active, &mut caches)?;
        next = chooser.choose(&logits, &active)?;
    }
    Ok(outputs)
}

/// One decoding step for the active sequences; returns the logits of each.
fn step_batch(model: &Model, ids: &[u32], positions: &[u32], active: &[usize], caches: &mut [Cache]) -> Result<Tensor> {
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
            attend_cached(
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
    model.logits(&x)
}

/// Picks the next token of each sequence from its row of logits.
struct Chooser {
    decoding: Decoding,
    /// One stream per sequence (sampling only).
    rngs: Vec<ChaCha8Rng>,
}

impl Chooser {
    fn new(decoding: Decoding, sequences: usize, seeds: &[u64]) -> Self {
        let rngs = match decoding {
            Decoding::Greedy => Vec::new(),
            Decoding::Sample { .. } => {
                assert_eq!(seeds.len(), sequences, "this is a bug in kiln: sampling needs a seed per prompt");
                seeds.iter().map(|&s| ChaCha8Rng::seed_from_u64(s)).collect()
            }
        };
        Chooser { decoding, rngs }
    }

    /// Row r of `logits` belongs to sequence `sequences[r]`.
    fn choose(&mut self, logits: &Tensor, sequences: &[usize]) -> Result<Vec<u32>> {
        match self.decoding {
            Decoding::Greedy => argmax_rows(logits),
            Decoding::Sample { temperature, top_p } => {
                let (_, vocab) = logits.dims2()?;
                let values: Vec<f32> = logits.flatten_all()?.to_vec1()?;
                Ok(values
                    .chunks(vocab)
                    .zip(sequences)
                    .map(|(row, &s)| sample_row(row, temperature, top_p, &mut self.rngs[s]))
                    .collect())
            }
        }
    }
}

/// A token drawn from softmax(row / temperature) within the top-p nucleus; ties in
/// probability are ordered by token id, so the draw depends only on the stream.
pub fn sample_row(row: &[f32], temperature: f32, top_p: f32, rng: &mut impl Rng) -> u32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = row.iter().map(|&v| (((v - max) / temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut nucleus = Vec::new();
    let mut mass = 0.0;
    for &i in &order {
        nucleus.push(i);
        mass += weights[i];
        if mass >= top_p as f64 * total {
            break;
        }
    }
    let mut draw = rng.random::<f64>() * mass;
    for &i in &nucleus {
        draw -= weights[i];
        if draw < 0.0 {
            return i as u32;
        }
    }
    *nucleus.last().expect("a nucleus holds a token") as u32
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

    /// Each sequence's sample depends on its seed, not on its batch; a tiny temperature
    /// is the argmax.
    #[test]
    fn samples_do_not_depend_on_the_batch_and_a_cold_sample_is_greedy() -> Result<()> {
        let (model, _) = Model::init(&tiny_config(), 4)?;
        let prompts = vec![vec![1u32, 2, 3], vec![4u32], vec![5u32, 6]];
        let hot = Decoding::Sample { temperature: 1.0, top_p: 0.9 };
        let none = Stop::at(u32::MAX);
        let together = decode(&model, &prompts, &none, 6, hot, &[7, 8, 9])?;
        let alone = decode(&model, &prompts[1..2], &none, 6, hot, &[8])?;
        assert_eq!(together[1], alone[0]);
        let other_seed = decode(&model, &prompts, &none, 6, hot, &[17, 18, 19])?;
        assert_ne!(together, other_seed, "seeds change samples");
        let cold = Decoding::Sample { temperature: 1e-4, top_p: 1.0 };
        assert_eq!(decode(&model, &prompts, &none, 6, cold, &[1, 2, 3])?, greedy(&model, &prompts, u32::MAX, 6)?);
        Ok(())
    }

    /// A sequence whose tokens satisfy `done` leaves the batch with them: its output is
    /// the unstopped output's prefix up to that token, and the others are unchanged.
    #[test]
    fn a_sequence_ends_where_its_stop_condition_first_holds() -> Result<()> {
        let (model, _) = Model::init(&tiny_config(), 4)?;
        let prompts = vec![vec![1u32, 2, 3], vec![4u32], vec![5u32, 6]];
        let hot = Decoding::Sample { temperature: 1.0, top_p: 0.9 };
        let full = decode(&model, &prompts, &Stop::at(u32::MAX), 8, hot, &[7, 8, 9])?;
        // The first sequence stops after its third token, whatever that is.
        let head = full[0][..3].to_vec();
        let done = move |ids: &[u32]| ids == head.as_slice();
        let stopped = decode(&model, &prompts, &Stop { token: u32::MAX, done: &done }, 8, hot, &[7, 8, 9])?;
        assert_eq!(stopped[0], full[0][..3]);
        assert!(stopped[0].len() < full[0].len());
        assert_eq!(stopped[1..], full[1..]);
        Ok(())
    }

    /// Frequencies of 40,000 draws match softmax(row / T) (a straightforward loop), and
    /// tokens outside the nucleus are never drawn.
    #[test]
    fn sampling_follows_the_tempered_softmax_within_the_nucleus() {
        let row = [2.0f32, 1.0, 0.5, -1.0, 0.0];
        let t = 0.8;
        let exp: Vec<f64> = row.iter().map(|&v| ((v / t) as f64).exp()).collect();
        let z: f64 = exp.iter().sum();
        let p: Vec<f64> = exp.iter().map(|e| e / z).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 40_000;
        let mut counts = [0usize; 5];
        for _ in 0..n {
            counts[sample_row(&row, t, 1.0, &mut rng) as usize] += 1;
        }
        for (c, want) in counts.iter().zip(&p) {
            assert!((*c as f64 / n as f64 - want).abs() < 0.01, "{counts:?} vs {p:?}");
        }
        // top_p 0.8: the nucleus is tokens 0 and 1 (p0 + p1 >= 0.8 > p0); renormalised.
        assert!(p[0] < 0.8 && p[0] + p[1] >= 0.8);
        let mut counts = [0usize; 5];
        for _ in 0..n {
            counts[sample_row(&row, t, 0.8, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3] + counts[4], 0, "{counts:?}");
        let share0 = counts[0] as f64 / n as f64;
        assert!((share0 - p[0] / (p[0] + p[1])).abs() < 0.01, "{share0}");
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
