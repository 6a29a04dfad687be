//! Checkpoints as Hugging Face lays them out: `config.json` and `model.safetensors`
//! with Qwen2's tensor names, so a kiln model loads in `transformers` as
//! `Qwen2ForCausalLM`, and a Hugging Face Qwen2 checkpoint loads here.
//!
//! kiln holds q/k/v and gate/up fused; they are split on save and joined on load.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::Deserialize;

use super::{Block, Model, Qwen2Config};
use crate::error::{Result, StageError};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The model's tensors under Hugging Face names, in name order.
pub fn named_tensors(model: &Model) -> Result<Vec<(String, Tensor)>> {
    let heads = model.heads();
    let (q, kv) = (heads.q_heads * heads.head_dim, heads.kv_heads * heads.head_dim);
    let f = model.config.intermediate_size;
    let mut out = vec![("model.embed_tokens.weight".to_string(), model.embed.clone())];
    for (i, b) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let split = |t: &Tensor, at: usize, len: usize| t.narrow(0, at, len);
        out.push((format!("{p}.input_layernorm.weight"), b.input_norm.clone()));
        out.push((format!("{p}.self_attn.q_proj.weight"), split(&b.qkv_weight, 0, q)?));
        out.push((format!("{p}.self_attn.k_proj.weight"), split(&b.qkv_weight, q, kv)?));
        out.push((format!("{p}.self_attn.v_proj.weight"), split(&b.qkv_weight, q + kv, kv)?));
        out.push((format!("{p}.self_attn.q_proj.bias"), split(&b.qkv_bias, 0, q)?));
        out.push((format!("{p}.self_attn.k_proj.bias"), split(&b.qkv_bias, q, kv)?));
        out.push((format!("{p}.self_attn.v_proj.bias"), split(&b.qkv_bias, q + kv, kv)?));
        out.push((format!("{p}.self_attn.o_proj.weight"), b.o_weight.clone()));
        out.push((format!("{p}.post_attention_layernorm.weight"), b.post_norm.clone()));
        out.push((format!("{p}.mlp.gate_proj.weight"), split(&b.gate_up_weight, 0, f)?));
        out.push((format!("{p}.mlp.up_proj.weight"), split(&b.gate_up_weight, f, f)?));
        out.push((format!("{p}.mlp.down_proj.weight"), b.down_weight.clone()));
    }
    out.push(("model.norm.weight".to_string(), model.norm.clone()));
    if let Some(head) = &model.lm_head {
        out.push(("lm_head.weight".to_string(), head.clone()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Writes `config.json` and `model.safetensors` (f32) into `dir`.
pub fn save(model: &Model, dir: &Path) -> Result<()> {
    model.config.save(dir)?;
    let tensors = named_tensors(model)?;
    let data: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.dims().to_vec(), t.flatten_all()?.to_vec1()?)))
        .collect::<Result<_>>()?;
    let refs: Vec<(&str, &[usize], &[f32])> =
        data.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    write_f32s(&dir.join(WEIGHTS_FILE), &refs, BTreeMap::new())
}

/// Writes named f32 tensors as a safetensors file, with `metadata` beside the format.
pub fn write_f32s(path: &Path, tensors: &[(&str, &[usize], &[f32])], metadata: BTreeMap<String, String>) -> Result<()> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), bytes)| {
            let view = TensorView::new(Dtype::F32, shape.to_vec(), bytes).map_err(st_err)?;
            Ok((name.to_string(), view))
        })
        .collect::<Result<_>>()?;
    // transformers refuses a safetensors file without this metadata.
    let mut metadata: HashMap<String, String> = metadata.into_iter().collect();
    metadata.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(st_err)?;
    std::fs::write(path, bytes).map_err(|e| StageError::io(path, e))
}

/// A safetensors file's tensors as f32 (from f32, f16 or bf16), by name, with its metadata.
pub struct F32File {
    pub path: PathBuf,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl F32File {
    pub fn read(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| StageError::data(origin.clone(), e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(&bytes).map_err(|e| StageError::data(origin.clone(), e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
                StageError::data(origin.clone(), format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()))
            })?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(F32File { path: path.to_path_buf(), tensors, metadata })
    }

    /// Takes the tensor `name`, which must have shape `dims`.
    pub fn take(&mut self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let origin = self.path.display().to_string();
        let (shape, values) =
            self.tensors.remove(name).ok_or_else(|| StageError::data(origin.clone(), format!("no tensor `{name}`")))?;
        if shape != dims {
            return Err(StageError::data(
                origin,
                format!("tensor `{name}` has shape {shape:?}, the config implies {dims:?}"),
            ));
        }
        Ok(Tensor::from_vec(values, dims, &Device::Cpu)?)
    }
}

/// The files that hold a checkpoint folder's weights: `model.safetensors`, or the shards
/// its `model.safetensors.index.json` names (as Hugging Face writes models over 5 GB).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if !index.is_file() {
        return Ok(vec![dir.join(WEIGHTS_FILE)]);
    }
    #[derive(Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(&index).map_err(|e| StageError::io(&index, e))?;
    let parsed: Index =
        serde_json::from_str(&text).map_err(|e| StageError::data(index.display().to_string(), e.to_string()))?;
    let files: BTreeSet<&String> = parsed.weight_map.values().collect();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Loads a checkpoint folder (kiln's, or a Hugging Face Qwen2 one in f32, f16 or bf16,
/// in one file or in shards).
pub fn load(dir: &Path) -> Result<Model> {
    let config = Qwen2Config::load(dir)?;
    config.check("").map_err(|e| match e {
        StageError::Param { path, message } => {
            StageError::data(dir.join("config.json").display().to_string(), format!("`{path}`: {message}"))
        }
        other => other,
    })?;
    let mut shards = weight_files(dir)?.iter().map(|p| F32File::read(p)).collect::<Result<Vec<_>>>()?;
    let mut get = |name: &str, dims: &[usize]| -> Result<Tensor> {
        match shards.iter_mut().find(|s| s.tensors.contains_key(name)) {
            Some(shard) => shard.take(name, dims),
            None => Err(StageError::data(dir.display().to_string(), format!("no tensor `{name}`"))),
        }
    };
    let heads = super::Model::heads_of(&config);
    let (h, f) = (config.hidden_size, config.intermediate_size);
    let (q, kv) = (heads.q_heads * heads.head_dim, heads.kv_heads * heads.head_dim);
    let embed = get("model.embed_tokens.weight", &[config.vocab_size, h])?;
    let mut blocks = Vec::new();
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let cat = |parts: &[Tensor]| Tensor::cat(parts, 0);
        blocks.push(Block {
            input_norm: get(&format!("{p}.input_layernorm.weight"), &[h])?,
            qkv_weight: cat(&[
                get(&format!("{p}.self_attn.q_proj.weight"), &[q, h])?,
                get(&format!("{p}.self_attn.k_proj.weight"), &[kv, h])?,
                get(&format!("{p}.self_attn.v_proj.weight"), &[kv, h])?,
            ])?,
            qkv_bias: cat(&[
                get(&format!("{p}.self_attn.q_proj.bias"), &[q])?,
                get(&format!("{p}.self_attn.k_proj.bias"), &[kv])?,
                get(&format!("{p}.self_attn.v_proj.bias"), &[kv])?,
            ])?,
            o_weight: get(&format!("{p}.self_attn.o_proj.weight"), &[h, q])?,
            post_norm: get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
            gate_up_weight: cat(&[
                get(&format!("{p}.mlp.gate_proj.weight"), &[f, h])?,
                get(&format!("{p}.mlp.up_proj.weight"), &[f, h])?,
            ])?,
            down_weight: get(&format!("{p}.mlp.down_proj.weight"), &[h, f])?,
        });
    }
    let norm = get("model.norm.weight", &[h])?;
    let lm_head = if config.tie_word_embeddings { None } else { Some(get("lm_head.weight", &[config.vocab_size, h])?) };
    Ok(Model::from_parts(config, embed, blocks, norm, lm_head))
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        Dtype::BF16 => Some(data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        Dtype::F16 => Some(data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        _ => None,
    }
}

fn st_err(e: safetensors::SafeTensorError) -> StageError {
    StageError::Internal(format!("safetensors: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Tokens;
    use crate::model::tests::tiny_config;

    #[test]
    fn a_saved_model_loads_with_the_same_outputs() -> candle_core::Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tiny_config();
        config.tie_word_embeddings = false;
        let (model, _) = Model::init(&config, 9)?;
        save(&model, dir.path()).unwrap();
        let loaded = load(dir.path()).unwrap();
        let t = Tokens::new(vec![1, 2, 3], vec![0, 1, 2], vec![(0, 3)])?;
        let a: Vec<f32> = model.logits(&model.hidden(&t, |_, _| Ok(()))?)?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = loaded.logits(&loaded.hidden(&t, |_, _| Ok(()))?)?.flatten_all()?.to_vec1()?;
        assert_eq!(a, b);
        let names: Vec<String> = named_tensors(&model).unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"model.layers.1.self_attn.k_proj.bias".to_string()));
        assert!(names.contains(&"lm_head.weight".to_string()));
        Ok(())
    }

    /// A Hugging Face Qwen2 checkpoint as `save_pretrained` writes a sharded bf16 one,
    /// made without kiln's `save`: `config.json` with transformers' extra fields, two
    /// shards and their index. Returns every tensor's values (exact in bf16).
    pub(crate) fn write_hf_checkpoint(dir: &Path, config: &Qwen2Config, seed: u64) -> BTreeMap<String, Vec<f32>> {
        use rand::{Rng, SeedableRng};
        let (h, f, v) = (config.hidden_size, config.intermediate_size, config.vocab_size);
        let d = config.head_dim();
        let (q, kv) = (config.num_attention_heads * d, config.num_key_value_heads * d);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![("model.embed_tokens.weight".into(), vec![v, h])];
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            for (name, shape) in [
                ("input_layernorm.weight", vec![h]),
                ("self_attn.q_proj.weight", vec![q, h]),
                ("self_attn.q_proj.bias", vec![q]),
                ("self_attn.k_proj.weight", vec![kv, h]),
                ("self_attn.k_proj.bias", vec![kv]),
                ("self_attn.v_proj.weight", vec![kv, h]),
                ("self_attn.v_proj.bias", vec![kv]),
                ("self_attn.o_proj.weight", vec![h, q]),
                ("post_attention_layernorm.weight", vec![h]),
                ("mlp.gate_proj.weight", vec![f, h]),
                ("mlp.up_proj.weight", vec![f, h]),
                ("mlp.down_proj.weight", vec![h, f]),
            ] {
                shapes.push((format!("{p}.{name}"), shape));
            }
        }
        shapes.push(("model.norm.weight".into(), vec![h]));
        if !config.tie_word_embeddings {
            shapes.push(("lm_head.weight".into(), vec![v, h]));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut values = BTreeMap::new();
        let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let x: Vec<half::bf16> = (0..n).map(|_| half::bf16::from_f32(rng.random_range(-0.3f32..0.3))).collect();
            values.insert(name.clone(), x.iter().map(|b| b.to_f32()).collect());
            bytes.push((name, shape, x.iter().flat_map(|b| b.to_le_bytes()).collect()));
        }
        let mut weight_map = serde_json::Map::new();
        let half_way = bytes.len() / 2;
        for (shard, part) in [&bytes[..half_way], &bytes[half_way..]].into_iter().enumerate() {
            let file = format!("model-{:05}-of-00002.safetensors", shard + 1);
            let views: Vec<(String, TensorView)> = part
                .iter()
                .map(|(name, shape, b)| (name.clone(), TensorView::new(Dtype::BF16, shape.clone(), b).unwrap()))
                .collect();
            let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
            std::fs::write(dir.join(&file), safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
            for (name, _, _) in part {
                weight_map.insert(name.clone(), file.clone().into());
            }
        }
        let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
        std::fs::write(dir.join(INDEX_FILE), index.to_string()).unwrap();
        let hf_config = serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id, "hidden_act": "silu", "hidden_size": h,
            "initializer_range": 0.02, "intermediate_size": f,
            "max_position_embeddings": config.max_position_embeddings,
            "max_window_layers": config.num_hidden_layers, "model_type": "qwen2",
            "num_attention_heads": config.num_attention_heads, "num_hidden_layers": config.num_hidden_layers,
            "num_key_value_heads": config.num_key_value_heads, "rms_norm_eps": config.rms_norm_eps,
            "rope_scaling": null, "rope_theta": config.rope_theta, "sliding_window": 4096,
            "tie_word_embeddings": config.tie_word_embeddings, "torch_dtype": "bfloat16",
            "transformers_version": "4.45.0", "use_cache": true, "use_sliding_window": false, "vocab_size": v
        });
        std::fs::write(dir.join("config.json"), hf_config.to_string()).unwrap();
        values
    }

    /// A sharded bf16 checkpoint in Hugging Face's layout loads with every tensor where
    /// its name says, and gives the logits its values give.
    #[test]
    fn a_hugging_face_checkpoint_loads() -> candle_core::Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tiny_config();
        config.tie_word_embeddings = false;
        let values = write_hf_checkpoint(dir.path(), &config, 4);
        let model = load(dir.path()).unwrap();
        assert_eq!(model.config.rope_theta, config.rope_theta);
        for (name, tensor) in named_tensors(&model).unwrap() {
            assert_eq!(tensor.flatten_all()?.to_vec1::<f32>()?, values[&name], "{name}");
        }
        assert_eq!(named_tensors(&model).unwrap().len(), values.len());
        // Saved by kiln and loaded again: the same tensors.
        let again = tempfile::tempdir().unwrap();
        save(&model, again.path()).unwrap();
        for (name, tensor) in named_tensors(&load(again.path()).unwrap()).unwrap() {
            assert_eq!(tensor.flatten_all()?.to_vec1::<f32>()?, values[&name], "{name}");
        }
        Ok(())
    }

    #[test]
    fn unsupported_checkpoint_features_are_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_hf_checkpoint(dir.path(), &tiny_config(), 1);
        let path = dir.path().join("config.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let scaled = text.replace(r#""rope_scaling":null"#, r#""rope_scaling":{"type":"yarn","factor":4.0}"#);
        assert_ne!(scaled, text);
        std::fs::write(&path, scaled).unwrap();
        let err = load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("config.json") && err.contains("rope_scaling") && err.contains("yarn"), "{err}");
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (model, _) = Model::init(&tiny_config(), 1).unwrap();
        save(&model, dir.path()).unwrap();
        let mut config = tiny_config();
        config.num_hidden_layers = 3;
        config.save(dir.path()).unwrap();
        let err = load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("model.layers.2"), "{err}");
    }
}
