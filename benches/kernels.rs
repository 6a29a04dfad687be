//! Kernel benchmarks, each against a baseline measured in the same run.
//!
//! - attention: document-masked causal attention over packed 1024-token rows of short
//!   documents (the math pipeline's ~90 tokens), forward and backward, against dense
//!   causal attention over the whole row: the same kernel given the row as one document,
//!   and a composition of candle primitives (scores, additive document mask, softmax,
//!   values) as an eager framework computes it.
//!
//! Run with `just bench`; `cargo test --bench kernels` builds it with the dev profile.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{D, Device, Result, Tensor, Var};
use kiln_kernels::attention::{Heads, attention};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Median seconds of `runs` calls after one warm-up.
fn median(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

/// Forward and backward of `sum(out * r)` through kiln's attention.
fn kiln_step(qkv: &Var, heads: Heads, segments: &Arc<Vec<(usize, usize)>>, r: &Tensor) -> Result<()> {
    let out = attention(qkv.as_tensor(), heads, segments)?;
    let grads = (out * r)?.sum_all()?.backward()?;
    grads.get(qkv.as_tensor()).expect("a gradient");
    Ok(())
}

/// The same attention as candle primitives over the whole row, with an additive mask
/// allowing each token its own document's earlier tokens.
fn composed_step(qkv: &Var, heads: Heads, mask: &Tensor, r: &Tensor) -> Result<()> {
    let x = qkv.as_tensor();
    let (tokens, _) = x.dims2()?;
    let d = heads.head_dim;
    let x = x.reshape((tokens, heads.q_heads + 2 * heads.kv_heads, d))?;
    let q = x.narrow(1, 0, heads.q_heads)?.transpose(0, 1)?.contiguous()?;
    let group = heads.q_heads / heads.kv_heads;
    let expand = |t: Tensor| -> Result<Tensor> {
        let (kv, t_len, d) = t.dims3()?;
        t.unsqueeze(1)?.broadcast_as((kv, group, t_len, d))?.reshape((kv * group, t_len, d))
    };
    let k = expand(x.narrow(1, heads.q_heads, heads.kv_heads)?.transpose(0, 1)?.contiguous()?)?;
    let v = expand(x.narrow(1, heads.q_heads + heads.kv_heads, heads.kv_heads)?.transpose(0, 1)?.contiguous()?)?;
    let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(mask)?;
    let max = scores.max_keepdim(D::Minus1)?.detach();
    let e = scores.broadcast_sub(&max)?.exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    let out = p.matmul(&v)?.transpose(0, 1)?.reshape((tokens, heads.out_width()))?;
    let grads = (out * r)?.sum_all()?.backward()?;
    grads.get(qkv.as_tensor()).expect("a gradient");
    Ok(())
}

fn bench_attention() -> Result<()> {
    let tokens = 1024;
    // Qwen2-0.5B's attention shape: 14 query heads sharing 2 key/value heads of 64.
    let heads = Heads { q_heads: 14, kv_heads: 2, head_dim: 64 };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut segments = Vec::new();
    let mut at = 0;
    while at < tokens {
        let len = rng.random_range(55..130).min(tokens - at);
        segments.push((at, len));
        at += len;
    }
    let values: Vec<f32> = (0..tokens * heads.qkv_width()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let qkv = Var::from_tensor(&Tensor::from_vec(values, (tokens, heads.qkv_width()), &Device::Cpu)?)?;
    let r_values: Vec<f32> = (0..tokens * heads.out_width()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let r = Tensor::from_vec(r_values, (tokens, heads.out_width()), &Device::Cpu)?;
    let documents = Arc::new(segments.clone());
    let whole_row = Arc::new(vec![(0, tokens)]);
    let mut mask = vec![-1e9f32; tokens * tokens];
    for &(start, len) in &segments {
        for i in start..start + len {
            mask[i * tokens + start..=i * tokens + i].fill(0.0);
        }
    }
    let mask = Tensor::from_vec(mask, (1, tokens, tokens), &Device::Cpu)?;

    let packed = median(9, || kiln_step(&qkv, heads, &documents, &r))?;
    let dense = median(9, || kiln_step(&qkv, heads, &whole_row, &r))?;
    let composed = median(5, || composed_step(&qkv, heads, &mask, &r))?;
    let squares: usize = segments.iter().map(|&(_, l)| l * l).sum();
    println!(
        "attention forward+backward, one packed row of {tokens} tokens, {} documents of 55-129, 14/2 heads of 64: \
         document-masked {:.1} ms; dense causal over the row (same kernel) {:.1} ms: {:.1}x faster; \
         candle composition with the document mask {:.1} ms: {:.1}x faster (score entries: {:.1}x fewer)",
        segments.len(),
        packed * 1e3,
        dense * 1e3,
        dense / packed,
        composed * 1e3,
        composed / packed,
        (tokens * tokens) as f64 / squares as f64
    );
    Ok(())
}

fn main() -> Result<()> {
    println!("kiln kernel benchmarks ({} threads)", rayon::current_num_threads());
    bench_attention()
}
