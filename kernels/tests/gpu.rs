//! Each kernel on the GPU against its CPU twin, values and gradients, in f32 and bf16
//! (the `cuda` build: `just build-cuda test --features cuda --no-run -p kiln-kernels`,
//! then run the binary on a machine with an H100/H200). Its own harness: without a GPU
//! (or in a build without CUDA) it reports "skipped", never "passed".

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("\nrunning 1 test\ntest gpu_ops_match_their_twins ... skipped: built without the cuda feature");
    println!("\ntest result: ok. 0 passed; 0 failed; 1 skipped\n");
}

#[cfg(feature = "cuda")]
fn main() {
    use candle_core::Device;
    println!("\nrunning {} tests", checks::ALL.len() * 2);
    let gpu = match Device::new_cuda(0) {
        Ok(device) => device,
        Err(e) => {
            println!("test gpu_ops_match_their_twins ... skipped: no CUDA device ({e})");
            println!("\ntest result: ok. 0 passed; 0 failed; {} skipped\n", checks::ALL.len() * 2);
            return;
        }
    };
    let mut failed = 0;
    for (name, check) in checks::ALL {
        for dtype in [candle_core::DType::F32, candle_core::DType::BF16] {
            match check(&gpu, dtype) {
                Ok(()) => println!("test {name} ({dtype:?}) ... ok"),
                Err(e) => {
                    failed += 1;
                    println!("test {name} ({dtype:?}) ... FAILED: {e}");
                }
            }
        }
    }
    let total = checks::ALL.len() * 2;
    println!(
        "\ntest result: {}. {} passed; {failed} failed; 0 skipped\n",
        if failed == 0 { "ok" } else { "FAILED" },
        total - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

#[cfg(feature = "cuda")]
mod checks {
    use std::sync::Arc;

    use candle_core::{DType, Device, Result, Tensor, Var, bail};
    use kiln_kernels::attention::{Heads, attention};
    use kiln_kernels::{cross_entropy, rms_norm, rope, swiglu};
    use rand::{Rng, SeedableRng};

    type Check = fn(&Device, DType) -> Result<()>;
    pub const ALL: &[(&str, Check)] = &[
        ("swiglu", swiglu_check),
        ("rms_norm", rms_norm_check),
        ("rope", rope_check),
        ("cross_entropy", cross_entropy_check),
        ("attention", attention_check),
    ];

    fn random(seed: u64, dims: &[usize]) -> Result<Tensor> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = dims.iter().product();
        Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), dims, &Device::Cpu)
    }

    /// Largest difference relative to the largest magnitude, after both go to f32 on the CPU.
    fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) -> Result<()> {
        let a: Vec<f32> = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        if a.len() != b.len() {
            bail!("{what}: {} values vs {}", a.len(), b.len());
        }
        let scale = a.iter().chain(&b).fold(1f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale;
        if diff > tol {
            bail!("{what}: differs by {diff} (tolerance {tol})");
        }
        Ok(())
    }

    fn tolerance(dtype: DType) -> f32 {
        if dtype == DType::BF16 { 2e-2 } else { 1e-5 }
    }

    /// Runs `f` on the CPU in f32 and on the GPU in `dtype` from the same input, then
    /// backpropagates the same random weights through both; compares outputs and input
    /// gradients.
    fn compare(
        gpu: &Device,
        dtype: DType,
        dims: &[usize],
        seed: u64,
        f: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let x = random(seed, dims)?;
        let cpu_x = Var::from_tensor(&x)?;
        let gpu_x = Var::from_tensor(&x.to_device(gpu)?.to_dtype(dtype)?)?;
        let (cpu_y, gpu_y) = (f(cpu_x.as_tensor())?, f(gpu_x.as_tensor())?);
        close(&cpu_y, &gpu_y, tolerance(dtype), "values")?;
        let r = random(seed + 1, cpu_y.dims())?;
        let cpu_g = (cpu_y * &r)?.sum_all()?.backward()?;
        let gpu_g = (gpu_y.to_dtype(DType::F32)? * r.to_device(gpu)?)?.sum_all()?.backward()?;
        let (a, b) = (cpu_g.get(cpu_x.as_tensor()), gpu_g.get(gpu_x.as_tensor()));
        match (a, b) {
            (Some(a), Some(b)) => close(a, b, tolerance(dtype) * 4.0, "gradients"),
            _ => bail!("a gradient is missing"),
        }
    }

    fn swiglu_check(gpu: &Device, dtype: DType) -> Result<()> {
        compare(gpu, dtype, &[37, 2 * 29], 1, swiglu::swiglu)
    }

    fn rms_norm_check(gpu: &Device, dtype: DType) -> Result<()> {
        let w = random(7, &[45])?;
        compare(gpu, dtype, &[33, 45], 2, |x| {
            let w = w.to_device(x.device())?;
            rms_norm::rms_norm(x, &w, 1e-6)
        })
    }

    fn rope_check(gpu: &Device, dtype: DType) -> Result<()> {
        let table = Arc::new(rope::RopeTable::new(16, 10000.0, 64));
        let positions: Arc<Vec<u32>> = Arc::new((0..21u32).map(|t| t % 9).collect());
        compare(gpu, dtype, &[21, 5, 16], 3, |x| rope::rope_heads(x, 3, &table, &positions))
    }

    fn cross_entropy_check(gpu: &Device, dtype: DType) -> Result<()> {
        let labels: Arc<Vec<i32>> =
            Arc::new((0..19).map(|r| if r % 4 == 0 { cross_entropy::IGNORE } else { r * 7 % 53 }).collect());
        compare(gpu, dtype, &[19, 53], 4, |x| cross_entropy::cross_entropy(x, &labels, 14.0))
    }

    /// Documents of awkward lengths (one past a tile, one shorter than a key block),
    /// padding at the end, grouped-query heads.
    fn attention_check(gpu: &Device, dtype: DType) -> Result<()> {
        let heads = Heads { q_heads: 6, kv_heads: 2, head_dim: 24 };
        let segments = Arc::new(vec![(0, 65), (65, 7), (72, 130), (202, 1)]);
        compare(gpu, dtype, &[210, heads.qkv_width()], 5, |x| attention(x, heads, &segments))
    }
}
