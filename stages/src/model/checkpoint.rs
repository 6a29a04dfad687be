//! Checkpoints as Hugging Face lays them out: `config.json` and `model.safetensors`
//! with Qwen2's tensor names, so a kiln model loads in `transformers` as
//! `Qwen2ForCausalLM`, and a Hugging Face Qwen2 checkpoint loads here.
//!
//! kiln holds q/k/v and gate/up fused; they are split on save and joined on load.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{Block, Model, Qwen2Config};
use crate::error::{Result, StageError};

pub const WEIGHTS_FILE: &str = "model.safetensors";

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
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name.clone(), t.dims().to_vec(), bytes))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(st_err)?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    // transformers refuses a safetensors file without this metadata.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(st_err)?;
    let path = dir.join(WEIGHTS_FILE);
    std::fs::write(&path, bytes).map_err(|e| StageError::io(&path, e))
}

/// Loads a checkpoint folder (kiln's, or a Hugging Face Qwen2 one in f32, f16 or bf16).
pub fn load(dir: &Path) -> Result<Model> {
    let config = Qwen2Config::load(dir)?;
    config.check("")?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| StageError::io(&path, e))?;
    let file =
        SafeTensors::deserialize(&bytes).map_err(|e| StageError::data(path.display().to_string(), e.to_string()))?;
    let origin = path.display().to_string();
    let get = |name: &str, dims: &[usize]| -> Result<Tensor> {
        let view = file.tensor(name).map_err(|_| StageError::data(origin.clone(), format!("no tensor `{name}`")))?;
        if view.shape() != dims {
            return Err(StageError::data(
                origin.clone(),
                format!("tensor `{name}` has shape {:?}, the config implies {dims:?}", view.shape()),
            ));
        }
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            StageError::data(origin.clone(), format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()))
        })?;
        Ok(Tensor::from_vec(values, dims, &Device::Cpu)?)
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
mod tests {
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
