//! The whole model on the GPU against the CPU: loss and every parameter's gradient of a
//! packed micro-batch, in f32 (close to the CPU's) and in bf16 compute with f32 masters
//! (within bf16's precision), then one AdamW step of the composed GPU optimizer against
//! the fused CPU one. The `cuda` build only (`just build-cuda test --features cuda
//! --no-run -p kiln-stages`); its own harness says "skipped" without a GPU.

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("\nrunning 1 test\ntest model_on_gpu ... skipped: built without the cuda feature");
    println!("\ntest result: ok. 0 passed; 0 failed; 1 skipped\n");
}

#[cfg(feature = "cuda")]
fn main() {
    println!("\nrunning 2 tests");
    let Some(gpu) = kiln_stages::device::cuda_device() else {
        println!("test model_on_gpu ... skipped: no CUDA device");
        println!("\ntest result: ok. 0 passed; 0 failed; 2 skipped\n");
        return;
    };
    let mut failed = 0;
    for dtype in [candle_core::DType::F32, candle_core::DType::BF16] {
        match check::model(&gpu, dtype) {
            Ok(report) => println!("test model_on_gpu ({dtype:?}) ... ok ({report})"),
            Err(e) => {
                failed += 1;
                println!("test model_on_gpu ({dtype:?}) ... FAILED: {e}");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("\ntest result: {verdict}. {} passed; {failed} failed; 0 skipped\n", 2 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

#[cfg(feature = "cuda")]
mod check {
    use std::sync::Arc;

    use candle_core::{DType, Device, Result, Tensor, Var, bail};
    use kiln_kernels::adamw::{AdamW, Hyper, Update};
    use kiln_kernels::cross_entropy::cross_entropy;
    use kiln_stages::model::{Model, Qwen2Config, Tokens, index_tensor};

    fn config() -> Qwen2Config {
        let text = r#"{"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 97,
            "max_position_embeddings": 128, "tie_word_embeddings": false, "initializer_range": 0.1}"#;
        serde_json::from_str(text).expect("a config")
    }

    fn values(t: &Tensor) -> Result<Vec<f32>> {
        t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
    }

    fn relative(a: &[f32], b: &[f32]) -> f32 {
        let scale = a.iter().chain(b).fold(1e-3f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
    }

    struct Pass {
        loss: f32,
        grads: Vec<Vec<f32>>,
        model: Model,
        vars: Vec<Var>,
    }

    /// Loss and gradients of one packed micro-batch (three documents, padding) on `device`.
    fn loss_and_grads(model: &Model, device: &Device, dtype: DType) -> Result<Pass> {
        let (model, vars) = model.trainable(device)?;
        let compute = model.compute_copy(dtype)?;
        let ids: Vec<u32> = (0..40u32).map(|i| (i * 31 + 7) % 97).collect();
        let segments = vec![(0, 17), (17, 9), (26, 12)];
        let mut positions = Vec::new();
        for &(_, len) in &segments {
            positions.extend(0..len as u32);
        }
        positions.extend([0, 0]);
        let tokens = Tokens::new(ids.clone(), positions, segments)?.to_device(device)?;
        let targets: Vec<u32> = (0..37u32).filter(|&t| t != 16 && t != 25).collect();
        let labels: Vec<i32> = targets.iter().map(|&t| ids[t as usize + 1] as i32).collect();
        let hidden = compute.hidden(&tokens, |_, _| Ok(()))?;
        let selected = hidden.index_select(&index_tensor(&targets)?.to_device(device)?, 0)?;
        let loss = cross_entropy(&compute.logits(&selected)?, &Arc::new(labels), targets.len() as f32)?;
        let store = loss.backward()?;
        let grads = vars
            .iter()
            .map(|v| match store.get(v.as_tensor()) {
                Some(g) => values(g),
                None => bail!("a parameter has no gradient"),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pass { loss: values(&loss)?[0], grads, model, vars })
    }

    pub fn model(gpu: &Device, dtype: DType) -> Result<String> {
        let (model, _) = Model::init(&config(), 3)?;
        let cpu = loss_and_grads(&model, &Device::Cpu, DType::F32)?;
        let on_gpu = loss_and_grads(&model, gpu, dtype)?;
        let tol = if dtype == DType::BF16 { 3e-2 } else { 1e-4 };
        if (cpu.loss - on_gpu.loss).abs() > tol * cpu.loss.abs().max(1.0) {
            bail!("loss {} on the GPU, {} on the CPU", on_gpu.loss, cpu.loss);
        }
        let mut worst = 0f32;
        for (i, (a, b)) in cpu.grads.iter().zip(&on_gpu.grads).enumerate() {
            let d = relative(a, b);
            worst = worst.max(d);
            if d > tol * 4.0 {
                bail!("parameter {i}: gradients differ by {d}");
            }
        }
        // One optimizer step each way from the same gradients: fused on the CPU, composed
        // on the GPU.
        let hyper = Hyper { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
        let sizes: Vec<usize> = cpu.grads.iter().map(Vec::len).collect();
        let parameters = cpu.model.parameters();
        let cpu_g: Vec<Tensor> = parameters
            .iter()
            .zip(&on_gpu.grads)
            .map(|((p, _), g)| Tensor::from_slice(g, p.shape(), &Device::Cpu))
            .collect::<Result<_>>()?;
        let updates: Vec<Update> =
            parameters.iter().zip(&cpu_g).map(|((p, decay), g)| Update { param: p, grad: g, decay: *decay }).collect();
        AdamW::new(&sizes).step(&updates, hyper, Some(1.0))?;
        let gpu_g: Vec<Tensor> = cpu_g.iter().map(|g| g.to_device(gpu)).collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = gpu_g.iter().collect();
        let decay: Vec<bool> = parameters.iter().map(|(_, d)| *d).collect();
        AdamW::new(&sizes).step_vars(&on_gpu.vars, &refs, &decay, hyper, Some(1.0))?;
        for (i, ((p, _), v)) in parameters.iter().zip(&on_gpu.vars).enumerate() {
            let d = relative(&values(p)?, &values(v.as_tensor())?);
            if d > 1e-5 {
                bail!("parameter {i} after one AdamW step differs by {d}");
            }
        }
        Ok(format!("loss {:.5} vs {:.5}, gradients within {worst:.1e}", on_gpu.loss, cpu.loss))
    }
}
