//! Test helpers: random tensors from a seed, closeness checks, and gradient comparison
//! of a fused op against its composition of candle primitives.

use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A fresh seed per test run (`KILN_TEST_SEED` repeats one); failures print it.
pub fn fresh_seed() -> u64 {
    if let Some(seed) = std::env::var("KILN_TEST_SEED").ok().and_then(|s| s.parse().ok()) {
        return seed;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Values uniform in [-1, 1).
pub fn random(seed: u64, dims: &[usize]) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(values, dims, &Device::Cpu)
}

/// Largest absolute difference, relative to the largest magnitude (at least 1).
pub fn max_relative_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let a: Vec<f32> = a.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
    assert_eq!(a.len(), b.len(), "shapes differ");
    let scale = a.iter().chain(&b).fold(1f32, |m, v| m.max(v.abs()));
    Ok(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale)
}

pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32) -> Result<()> {
    assert_eq!(a.dims(), b.dims());
    let diff = max_relative_diff(a, b)?;
    assert!(diff <= tol, "values differ by {diff} (tolerance {tol})");
    Ok(())
}

/// Backpropagates `sum(out * r)` for the same random `r` through both outputs and
/// compares the gradients of every variable.
pub fn check_grads(fused: &Tensor, reference: &Tensor, vars: &[&Var], seed: u64, tol: f32) -> Result<()> {
    let r = random(seed ^ 0x5eed, fused.dims())?;
    let g1 = (fused * &r)?.sum_all()?.backward()?;
    let g2 = (reference * &r)?.sum_all()?.backward()?;
    for (i, v) in vars.iter().enumerate() {
        let a = g1.get(v).unwrap_or_else(|| panic!("fused op gave no gradient for input {i}"));
        let b = g2.get(v).unwrap_or_else(|| panic!("reference gave no gradient for input {i}"));
        let diff = max_relative_diff(a, b)?;
        assert!(diff <= tol, "gradient of input {i} differs by {diff} (tolerance {tol}, seed {seed})");
    }
    Ok(())
}
