//! Training throughput on CPU against PyTorch, measured in the same run: the default
//! pipeline's model (Qwen2 architecture: hidden 128, 4 layers, 4 query and 2 key/value
//! heads, SwiGLU 384, vocabulary 512, tied embedding), batches of 2 packed rows of 1024
//! tokens (documents of 60-300 tokens, the first 40% of each masked from the loss),
//! AdamW with clipping. kiln is the `train` stage itself; PyTorch is transformers'
//! `Qwen2ForCausalLM` with the same configuration, optimizer and rows
//! (benches/train_torch.py). Both exclude the first two steps (warm-up).
//!
//! Run with `just bench` (which installs PyTorch and transformers into its own virtual
//! environment and names its python in KILN_BENCH_PYTHON); `cargo test --bench train`
//! builds it with the dev profile kiln runs with.
//!
//! The shape can be changed for a GPU: KILN_BENCH_MODEL (e.g. Qwen2.5-0.5B's
//! `{ hidden: 896, layers: 24, heads: 14, kv_heads: 2, intermediate: 4864, vocab_size:
//! 151936 }`), KILN_BENCH_SEQ, KILN_BENCH_ROWS (per step), KILN_BENCH_STEPS. In the cuda
//! build on a GPU, kiln trains there in bf16 and PyTorch under bf16 autocast; both print
//! model FLOPs utilization against KILN_BENCH_PEAK_TFLOPS (default 989, H100/H200 dense
//! bf16), counting 6 x parameters + 12 x layers x hidden x document length per token.

use std::process::Command;

use kiln_stages::pack::{Sequence, assemble};
use kiln_stages::schema::standard;
use kiln_stages::train::Train;
use kiln_stages::{testing, tokenizer_file, tokenizer_train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARMUP: usize = 2;
const ROUNDS: usize = 3;
const MODEL: &str = "{ hidden: 128, layers: 4, heads: 4, kv_heads: 2, intermediate: 384 }";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}
const OPTIMIZER: &str = "{ lr: 3.0e-3, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1, max_grad_norm: 1.0 }";

/// Rows of documents with random tokens from the tokenizer's vocabulary.
fn rows(vocab: usize, rows: usize, seq_len: usize) -> (Vec<Sequence>, Vec<Vec<usize>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut sequences, mut packed) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        let mut row = Vec::new();
        let mut used = 0;
        while used < seq_len {
            let len = rng.random_range(60..=300).min(seq_len - used);
            let ids: Vec<i32> = (0..len).map(|_| rng.random_range(3..vocab as i32)).collect();
            let mask = (0..len).map(|t| t as f64 > len as f64 * 0.4).collect();
            row.push(sequences.len());
            sequences.push(Sequence { id: sequences.len() as i64, ids, mask });
            used += len;
        }
        packed.push(row);
    }
    (sequences, packed)
}

fn main() {
    // SAFETY: the first thing main does; no other thread exists yet.
    unsafe { kiln_stages::device::configure_cpu_threads() };
    // Steps measured after the warm-up; more give steadier numbers on a noisy machine.
    let steps: usize = env_or("KILN_BENCH_STEPS", 12) + WARMUP;
    let seq_len: usize = env_or("KILN_BENCH_SEQ", 1024);
    let batch_rows: usize = env_or("KILN_BENCH_ROWS", 2);
    let model_yaml: String = env_or("KILN_BENCH_MODEL", MODEL.to_string());
    let model_shape: serde_json::Value = serde_yaml::from_str(&model_yaml).expect("KILN_BENCH_MODEL is a YAML map");
    let m = |key: &str, default: f64| model_shape.get(key).and_then(|v| v.as_f64()).unwrap_or(default);
    let dir = tempfile::tempdir().unwrap();
    // Words of random letters: enough distinct pairs for all 512 entries.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let words: Vec<String> = (0..3000)
        .map(|_| (0..rng.random_range(2..9)).map(|_| rng.random_range(b'a'..=b'z') as char).collect())
        .collect();
    let texts: Vec<String> = (0..5000)
        .map(|_| (0..40).map(|_| words[rng.random_range(0..words.len())].as_str()).collect::<Vec<_>>().join(" "))
        .collect();
    let tokenizer =
        tokenizer_train::train(&tokenizer_train::Params { vocab_size: 512, ..Default::default() }, &texts).unwrap();
    std::fs::create_dir_all(dir.path().join("tok")).unwrap();
    tokenizer_file::save(&tokenizer, &dir.path().join("tok")).unwrap();
    let vocab = tokenizer.get_vocab_size(true);
    let (sequences, packed) = rows(vocab, steps * batch_rows, seq_len);
    let columns = assemble(&sequences, &packed, seq_len, 0);
    let table = testing::write_table(&dir.path().join("packed"), standard::packed(), columns);
    let inputs = || vec![("data", table.clone()), ("tokenizer", testing::files(&dir.path().join("tok"), "tokenizer"))];

    // kiln: the stage run for the warm-up steps alone and for all of them; the difference
    // is the steady steps. Rows are visited in a seeded order, so both see the same ones.
    let model_flow = serde_json::to_string(&model_shape).unwrap();
    let mut parameters = 0f64;
    let mut seconds = |steps: usize, out: &str| -> f64 {
        let with = format!(
            "{{ model: {model_flow}, optimizer: {OPTIMIZER}, steps: {steps}, batch_rows: {batch_rows}, checkpoint_every: 0 }}"
        );
        let report = testing::run::<Train>(&with, inputs(), &dir.path().join(out), 1).unwrap();
        parameters = report.metrics["parameters"].as_f64().unwrap();
        report.metrics["train_seconds"].as_f64().unwrap()
    };
    // PyTorch gets the same rows (in file order; the order does not change the work).
    let batches = testing::read(&dir.path().join("packed"));
    let cols = kiln_stages::table::Columns::new(&batches[0]);
    let list = |name: &str, r: usize| kiln_stages::table::list_i32(cols.lists(name).unwrap(), r).unwrap();
    let rows: Vec<serde_json::Value> = (0..batches[0].num_rows())
        .map(|r| json!({ "input_ids": list("input_ids", r), "labels": list("labels", r), "position_ids": list("position_ids", r) }))
        .collect();
    let spec = json!({
        "vocab_size": m("vocab_size", vocab as f64) as usize,
        "model": { "hidden": m("hidden", 0.0) as usize, "layers": m("layers", 0.0) as usize,
                   "heads": m("heads", 0.0) as usize, "kv_heads": m("kv_heads", 0.0) as usize,
                   "intermediate": m("intermediate", 0.0) as usize, "rope_theta": 10000.0,
                   "rms_norm_eps": 1e-6, "tie_embeddings": true, "max_positions": 4096 },
        "optimizer": { "lr": 3e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "max_grad_norm": 1.0 },
        "rows": rows, "batch_rows": batch_rows, "warmup_steps": WARMUP,
    });
    let spec_path = dir.path().join("rows.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let python = std::env::var("KILN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/train_torch.py");
    let threads = rayon::current_num_threads();
    println!("kiln training benchmark ({threads} threads, f32 on CPU)");
    // Alternate kiln and PyTorch for a few rounds and compare medians: the machine's
    // load drifts, and each round's pair sees about the same load.
    let torch_once = || -> Option<f64> {
        let out = Command::new(&python).arg(script).arg(&spec_path).output().ok().filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().find_map(|l| l.strip_prefix("tokens_per_s ")).and_then(|v| v.trim().parse::<f64>().ok())
    };
    let (mut kilns, mut torches) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let warm = seconds(WARMUP, &format!("warm{round}"));
        let all = seconds(steps, &format!("all{round}"));
        kilns.push(((steps - WARMUP) * batch_rows * seq_len) as f64 / (all - warm));
        match torch_once() {
            Some(t) => torches.push(t),
            None => break,
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let kiln = median(&mut kilns);
    let torch = (!torches.is_empty()).then(|| median(&mut torches));
    let device = kiln_stages::device::name();
    let shape = format!(
        "Qwen2 {model_yaml}, {:.1}M parameters, {batch_rows} x {seq_len} tokens per step, {device}",
        parameters / 1e6
    );
    // Model FLOPs per token: 6 per parameter (forward and backward) plus attention's
    // 12 x layers x hidden x the mean number of keys a query sees (documents of 60-300).
    let flops_per_token = 6.0 * parameters + 12.0 * m("layers", 0.0) * m("hidden", 0.0) * 90.0;
    let peak = env_or("KILN_BENCH_PEAK_TFLOPS", 989.0) * 1e12;
    let mfu = |tokens_per_s: f64| 100.0 * tokens_per_s * flops_per_token / peak;
    if device == "cuda" {
        println!(
            "MFU against {:.0} TFLOP/s: kiln {:.1}%{}",
            peak / 1e12,
            mfu(kiln),
            torch.map_or(String::new(), |t| format!(", PyTorch {:.1}%", mfu(t)))
        );
    }
    match torch {
        Some(torch) => {
            println!(
                "train ({shape}): kiln {kiln:.0} tokens/s, PyTorch {torch:.0} tokens/s (medians of {ROUNDS} alternating rounds): {:.2}x",
                kiln / torch
            )
        }
        None => println!(
            "train ({shape}): kiln {kiln:.0} tokens/s; PyTorch baseline unavailable ({python} with torch and transformers: `just bench` installs them)"
        ),
    }
    if device == "cpu" {
        checkpoint_in_transformers(&dir.path().join("all0/model"), &sequences[0].ids, &python);
    }
}

/// The trained checkpoint loaded by transformers as `Qwen2ForCausalLM` gives the logits
/// kiln gives, on one document.
fn checkpoint_in_transformers(model_dir: &std::path::Path, ids: &[i32], python: &str) {
    let model = kiln_stages::model::checkpoint::load(model_dir).unwrap();
    let n = ids.len();
    let tokens =
        kiln_stages::model::Tokens::new(ids.iter().map(|&t| t as u32).collect(), (0..n as u32).collect(), vec![(0, n)])
            .unwrap();
    let logits: Vec<Vec<f32>> =
        model.logits(&model.hidden(&tokens, |_, _| Ok(())).unwrap()).unwrap().to_vec2().unwrap();
    let spec = json!({ "dir": model_dir, "ids": ids, "logits": logits });
    let path = model_dir.parent().unwrap().join("interop.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let script = r#"
import json, sys, torch
from transformers import Qwen2ForCausalLM
spec = json.load(open(sys.argv[1]))
model = Qwen2ForCausalLM.from_pretrained(spec["dir"], torch_dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    logits = model(input_ids=torch.tensor([spec["ids"]])).logits[0]
reference = torch.tensor(spec["logits"])
print((logits - reference).abs().max().item(), reference.abs().max().item())
"#;
    let out = Command::new(python).arg("-c").arg(script).arg(&path).output();
    match out.ok().filter(|o| o.status.success()) {
        Some(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let values: Vec<f64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            println!(
                "checkpoint: transformers Qwen2ForCausalLM loads kiln's model.safetensors; logits over a {n}-token document differ from kiln's by at most {:.2e} (largest logit {:.2})",
                values[0], values[1]
            );
        }
        None => println!("checkpoint: transformers unavailable, interoperability not checked"),
    }
}
