//! A Qwen2-architecture decoder: token embedding, pre-norm blocks of grouped-query
//! attention (q/k/v biases, rotary embedding) and a SwiGLU MLP, a final RMSNorm and a
//! tied or untied output head.
//!
//! Packed rows run as one sequence of tokens in which each document is a segment:
//! attention never crosses a segment and positions restart in each. The q/k/v and
//! gate/up projections are held fused (one matmul each); checkpoints split them into
//! Hugging Face's tensor names.

pub mod checkpoint;
pub mod config;
pub mod generate;
pub mod texts;

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var};
use kiln_kernels::attention::{Heads, attention};
use kiln_kernels::rms_norm::rms_norm;
use kiln_kernels::rope::{RopeTable, rope_heads};
use kiln_kernels::swiglu::swiglu;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub use config::Qwen2Config;

/// One transformer block's weights.
#[derive(Clone)]
pub struct Block {
    pub input_norm: Tensor,
    /// `[(q_heads + 2 kv_heads) * head_dim, hidden]`
    pub qkv_weight: Tensor,
    pub qkv_bias: Tensor,
    pub o_weight: Tensor,
    pub post_norm: Tensor,
    /// `[2 * intermediate, hidden]`, gate rows first.
    pub gate_up_weight: Tensor,
    pub down_weight: Tensor,
}

#[derive(Clone)]
pub struct Model {
    pub config: Qwen2Config,
    pub embed: Tensor,
    pub blocks: Vec<Block>,
    pub norm: Tensor,
    /// `None` when the head is tied to the embedding.
    pub lm_head: Option<Tensor>,
    pub rope: Arc<RopeTable>,
}

/// The tokens of one forward pass: documents laid end to end.
pub struct Tokens {
    pub ids: Tensor,
    pub positions: Arc<Vec<u32>>,
    pub segments: Arc<Vec<(usize, usize)>>,
}

impl Tokens {
    /// The same tokens with their ids on `device` (positions and segments stay on the host).
    pub fn to_device(self, device: &Device) -> Result<Self> {
        Ok(Tokens { ids: self.ids.to_device(device)?, ..self })
    }

    pub fn new(ids: Vec<u32>, positions: Vec<u32>, segments: Vec<(usize, usize)>) -> Result<Self> {
        let n = ids.len();
        Ok(Tokens {
            ids: Tensor::from_vec(ids, n, &Device::Cpu)?,
            positions: Arc::new(positions),
            segments: Arc::new(segments),
        })
    }
}

impl Model {
    pub fn heads(&self) -> Heads {
        Self::heads_of(&self.config)
    }

    pub fn heads_of(config: &Qwen2Config) -> Heads {
        Heads { q_heads: config.num_attention_heads, kv_heads: config.num_key_value_heads, head_dim: config.head_dim() }
    }

    /// Fresh weights: normal(0, initializer_range) matrices and embedding, zero biases,
    /// unit norms, drawn from `seed` in a fixed order.
    pub fn init(config: &Qwen2Config, seed: u64) -> Result<(Model, Vec<Var>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, config.initializer_range as f32).expect("valid std");
        let mut vars = Vec::new();
        let mut draw = |dims: &[usize], kind: Init| -> Result<Tensor> {
            let n: usize = dims.iter().product();
            let values: Vec<f32> = match kind {
                Init::Normal => (0..n).map(|_| normal.sample(&mut rng)).collect(),
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
            };
            let var = Var::from_vec(values, dims, &Device::Cpu)?;
            let tensor = var.as_tensor().clone();
            vars.push(var);
            Ok(tensor)
        };
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let heads = Self::heads_of(config);
        let embed = draw(&[config.vocab_size, h], Init::Normal)?;
        let mut blocks = Vec::new();
        for _ in 0..config.num_hidden_layers {
            blocks.push(Block {
                input_norm: draw(&[h], Init::Ones)?,
                qkv_weight: draw(&[heads.qkv_width(), h], Init::Normal)?,
                qkv_bias: draw(&[heads.qkv_width()], Init::Zeros)?,
                o_weight: draw(&[h, heads.out_width()], Init::Normal)?,
                post_norm: draw(&[h], Init::Ones)?,
                gate_up_weight: draw(&[2 * f, h], Init::Normal)?,
                down_weight: draw(&[h, f], Init::Normal)?,
            });
        }
        let norm = draw(&[h], Init::Ones)?;
        let lm_head =
            if config.tie_word_embeddings { None } else { Some(draw(&[config.vocab_size, h], Init::Normal)?) };
        let model = Model::from_parts(config.clone(), embed, blocks, norm, lm_head);
        Ok((model, vars))
    }

    pub fn from_parts(
        config: Qwen2Config,
        embed: Tensor,
        blocks: Vec<Block>,
        norm: Tensor,
        lm_head: Option<Tensor>,
    ) -> Model {
        let rope =
            Arc::new(RopeTable::new(config.head_dim(), config.rope_theta as f32, config.max_position_embeddings));
        Model { config, embed, blocks, norm, lm_head, rope }
    }

    /// Every parameter in a fixed order, with whether weight decay applies to it
    /// (matrices yes; norms, biases and the embedding no).
    pub fn parameters(&self) -> Vec<(&Tensor, bool)> {
        let mut out = vec![(&self.embed, false)];
        for b in &self.blocks {
            out.extend([
                (&b.input_norm, false),
                (&b.qkv_weight, true),
                (&b.qkv_bias, false),
                (&b.o_weight, true),
                (&b.post_norm, false),
                (&b.gate_up_weight, true),
                (&b.down_weight, true),
            ]);
        }
        out.push((&self.norm, false));
        if let Some(head) = &self.lm_head {
            out.push((head, true));
        }
        out
    }

    /// The same model with every parameter copied into a `Var` on `device`; the vars
    /// come in `parameters()` order.
    pub fn trainable(&self, device: &Device) -> Result<(Model, Vec<Var>)> {
        let mut vars = Vec::new();
        let mut var = |t: &Tensor| -> Result<Tensor> {
            let v = Var::from_tensor(&t.to_device(device)?)?;
            let tensor = v.as_tensor().clone();
            vars.push(v);
            Ok(tensor)
        };
        let embed = var(&self.embed)?;
        let mut blocks = Vec::new();
        for b in &self.blocks {
            blocks.push(Block {
                input_norm: var(&b.input_norm)?,
                qkv_weight: var(&b.qkv_weight)?,
                qkv_bias: var(&b.qkv_bias)?,
                o_weight: var(&b.o_weight)?,
                post_norm: var(&b.post_norm)?,
                gate_up_weight: var(&b.gate_up_weight)?,
                down_weight: var(&b.down_weight)?,
            });
        }
        let norm = var(&self.norm)?;
        let lm_head = self.lm_head.as_ref().map(&mut var).transpose()?;
        let model = Model::from_parts(self.config.clone(), embed, blocks, norm, lm_head);
        debug_assert!(model.parameters().iter().zip(&vars).all(|((t, _), v)| t.id() == v.as_tensor().id()));
        Ok((model, vars))
    }

    /// The model the forward computes with: itself in f32, or in `dtype` (bf16 on a GPU)
    /// with the norms' weights kept f32. The casts are differentiable, so gradients
    /// reach the f32 master weights in f32.
    pub fn compute_copy(&self, dtype: DType) -> Result<Model> {
        if dtype == DType::F32 {
            return Ok(self.clone());
        }
        let cast = |t: &Tensor| t.to_dtype(dtype);
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                Ok(Block {
                    input_norm: b.input_norm.clone(),
                    qkv_weight: cast(&b.qkv_weight)?,
                    qkv_bias: cast(&b.qkv_bias)?,
                    o_weight: cast(&b.o_weight)?,
                    post_norm: b.post_norm.clone(),
                    gate_up_weight: cast(&b.gate_up_weight)?,
                    down_weight: cast(&b.down_weight)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = self.lm_head.as_ref().map(cast).transpose()?;
        Ok(Model { embed: cast(&self.embed)?, blocks, lm_head, ..self.clone() })
    }

    /// Values per parameter, in `parameters()` order (the optimizer state's shape).
    pub fn parameter_sizes(&self) -> Vec<usize> {
        self.parameters().iter().map(|(t, _)| t.elem_count()).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.parameter_sizes().iter().sum()
    }

    fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        x.matmul(&weight.t()?)
    }

    /// The final normed hidden states of every token, `[tokens, hidden]`. `on_qkv`
    /// sees each block's rotated q|k|v projection (for filling a decoding cache).
    pub fn hidden(&self, tokens: &Tokens, mut on_qkv: impl FnMut(usize, &Tensor) -> Result<()>) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps as f32;
        let heads = self.heads();
        let n = tokens.positions.len();
        let mut x = self.embed.index_select(&tokens.ids, 0)?;
        for (i, b) in self.blocks.iter().enumerate() {
            let h = rms_norm(&x, &b.input_norm, eps)?;
            let qkv = Self::linear(&h, &b.qkv_weight)?.broadcast_add(&b.qkv_bias)?;
            let qkv = qkv.reshape((n, heads.q_heads + 2 * heads.kv_heads, heads.head_dim))?;
            let qkv = rope_heads(&qkv, heads.q_heads + heads.kv_heads, &self.rope, &tokens.positions)?;
            on_qkv(i, &qkv)?;
            let a = attention(&qkv, heads, &tokens.segments)?;
            x = (x + Self::linear(&a, &b.o_weight)?)?;
            let h = rms_norm(&x, &b.post_norm, eps)?;
            let m = swiglu(&Self::linear(&h, &b.gate_up_weight)?)?;
            x = (x + Self::linear(&m, &b.down_weight)?)?;
        }
        rms_norm(&x, &self.norm, eps)
    }

    /// Logits of hidden states, `[rows, vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Self::linear(hidden, self.lm_head.as_ref().unwrap_or(&self.embed))
    }
}

#[derive(Clone, Copy)]
enum Init {
    Normal,
    Zeros,
    Ones,
}

/// Ids as a tensor for `index_select`.
pub fn index_tensor(indices: &[u32]) -> Result<Tensor> {
    Tensor::from_slice(indices, indices.len(), &Device::Cpu)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn tiny_config() -> Qwen2Config {
        Qwen2Config {
            architectures: vec!["Qwen2ForCausalLM".into()],
            model_type: "qwen2".into(),
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            vocab_size: 11,
            tie_word_embeddings: true,
            max_position_embeddings: 64,
            hidden_act: "silu".into(),
            bos_token_id: None,
            eos_token_id: None,
            torch_dtype: "float32".into(),
            use_sliding_window: false,
            rope_scaling: None,
            attention_dropout: 0.0,
            initializer_range: 0.2,
        }
    }

    /// Two documents packed together give each the hidden states it has alone: no
    /// attention crosses a segment and positions restart.
    #[test]
    fn packed_documents_do_not_see_each_other() -> Result<()> {
        let (model, _) = Model::init(&tiny_config(), 3)?;
        let a = [1u32, 5, 7, 2];
        let b = [3u32, 3, 9];
        let alone = |ids: &[u32]| -> Result<Vec<f32>> {
            let t = Tokens::new(ids.to_vec(), (0..ids.len() as u32).collect(), vec![(0, ids.len())])?;
            model.hidden(&t, |_, _| Ok(()))?.flatten_all()?.to_vec1()
        };
        let ids: Vec<u32> = a.iter().chain(&b).copied().collect();
        let positions = vec![0, 1, 2, 3, 0, 1, 2];
        let packed = Tokens::new(ids, positions, vec![(0, 4), (4, 3)])?;
        let both: Vec<f32> = model.hidden(&packed, |_, _| Ok(()))?.flatten_all()?.to_vec1()?;
        let expected: Vec<f32> = alone(&a)?.into_iter().chain(alone(&b)?).collect();
        for (x, y) in both.iter().zip(&expected) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        Ok(())
    }

    /// The model written with differentiable candle primitives only: the reference for
    /// the fused ops' values and gradients end to end.
    fn reference_loss(model: &Model, t: &Tokens, target_positions: &[u32], targets: &[i32]) -> Result<Tensor> {
        use candle_core::D;
        let c = &model.config;
        let heads = model.heads();
        let (n, d, eps) = (t.positions.len(), heads.head_dim, c.rms_norm_eps);
        let rms = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            let r = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
            x.broadcast_mul(&r)?.broadcast_mul(w)
        };
        let half = d / 2;
        let (mut cos, mut sin): (Vec<f32>, Vec<f32>) = (Vec::new(), Vec::new());
        for &p in t.positions.iter() {
            let row = |table: &[f32]| table[p as usize * half..(p as usize + 1) * half].to_vec();
            let (cr, sr) = (row(&model.rope.cos), row(&model.rope.sin));
            cos.extend(cr.iter().chain(&cr));
            sin.extend(sr.iter().chain(&sr));
        }
        let cos = Tensor::from_vec(cos, (n, 1, d), &Device::Cpu)?;
        let sin = Tensor::from_vec(sin, (n, 1, d), &Device::Cpu)?;
        let mut mask = vec![-1e9f32; n * n];
        let mut real = vec![0f32; n];
        for &(start, len) in t.segments.iter() {
            for i in start..start + len {
                real[i] = 1.0;
                for j in start..=i {
                    mask[i * n + j] = 0.0;
                }
            }
        }
        for i in 0..n {
            if real[i] == 0.0 {
                mask[i * n + i] = 0.0;
            }
        }
        let mask = Tensor::from_vec(mask, (1, n, n), &Device::Cpu)?;
        let real = Tensor::from_vec(real, (n, 1), &Device::Cpu)?;
        let group = heads.q_heads / heads.kv_heads;
        let mut x = model.embed.index_select(&t.ids, 0)?;
        for b in &model.blocks {
            let h = rms(&x, &b.input_norm)?;
            let qkv = h.matmul(&b.qkv_weight.t()?)?.broadcast_add(&b.qkv_bias)?.reshape((
                n,
                heads.q_heads + 2 * heads.kv_heads,
                d,
            ))?;
            let turned = qkv.narrow(1, 0, heads.q_heads + heads.kv_heads)?;
            let rotate_half = Tensor::cat(&[&turned.narrow(2, half, half)?.neg()?, &turned.narrow(2, 0, half)?], 2)?;
            let turned = (turned.broadcast_mul(&cos)? + rotate_half.broadcast_mul(&sin)?)?;
            let q = turned.narrow(1, 0, heads.q_heads)?.transpose(0, 1)?.contiguous()?;
            let k = turned.narrow(1, heads.q_heads, heads.kv_heads)?.transpose(0, 1)?.contiguous()?;
            let v = qkv.narrow(1, heads.q_heads + heads.kv_heads, heads.kv_heads)?.transpose(0, 1)?.contiguous()?;
            let repeat = |t: &Tensor| -> Result<Tensor> {
                Tensor::cat(&(0..heads.q_heads).map(|h| t.narrow(0, h / group, 1)).collect::<Result<Vec<_>>>()?, 0)
            };
            let scores = (q.matmul(&repeat(&k)?.t()?)? / (d as f64).sqrt())?.broadcast_add(&mask)?;
            let e = scores.broadcast_sub(&scores.max_keepdim(D::Minus1)?.detach())?.exp()?;
            let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            let o = p.matmul(&repeat(&v)?)?.transpose(0, 1)?.reshape((n, heads.out_width()))?.broadcast_mul(&real)?;
            x = (x + o.matmul(&b.o_weight.t()?)?)?;
            let h = rms(&x, &b.post_norm)?;
            let gu = h.matmul(&b.gate_up_weight.t()?)?;
            let f = c.intermediate_size;
            let (g, u) = (gu.narrow(1, 0, f)?, gu.narrow(1, f, f)?);
            let m = ((&g * (g.neg()?.exp()? + 1.0)?.recip()?)? * u)?;
            x = (x + m.matmul(&b.down_weight.t()?)?)?;
        }
        let x = rms(&x, &model.norm)?;
        let logits = model.logits(&x.index_select(&index_tensor(target_positions)?, 0)?)?;
        let log_probs = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
        let log_probs = log_probs.broadcast_sub(&log_probs.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
        let mut onehot = vec![0f32; targets.len() * c.vocab_size];
        for (r, &l) in targets.iter().enumerate() {
            onehot[r * c.vocab_size + l as usize] = 1.0;
        }
        let onehot = Tensor::from_vec(onehot, (targets.len(), c.vocab_size), &Device::Cpu)?;
        (log_probs * onehot)?.sum_all()?.neg()? / targets.len() as f64
    }

    /// Loss and every parameter's gradient of the model (fused kernels) equal those of
    /// its composition from candle primitives, on a packed batch with padding and GQA.
    #[test]
    fn the_whole_model_matches_its_composition_in_values_and_gradients() -> Result<()> {
        let mut config = tiny_config();
        config.tie_word_embeddings = false;
        let (model, vars) = Model::init(&config, 17)?;
        let ids = vec![1u32, 4, 2, 9, 3, 3, 7, 10, 0, 0];
        let positions = vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 0];
        let t = Tokens::new(ids.clone(), positions, vec![(0, 4), (4, 4)])?;
        let target_positions = [0u32, 1, 2, 4, 5, 6];
        let targets: Vec<i32> = target_positions.iter().map(|&p| ids[p as usize + 1] as i32).collect();
        let hidden = model.hidden(&t, |_, _| Ok(()))?;
        let logits = model.logits(&hidden.index_select(&index_tensor(&target_positions)?, 0)?)?;
        let fused =
            kiln_kernels::cross_entropy::cross_entropy(&logits, &Arc::new(targets.clone()), targets.len() as f32)?;
        let slow = reference_loss(&model, &t, &target_positions, &targets)?;
        let (a, b) = (fused.to_scalar::<f32>()?, slow.to_scalar::<f32>()?);
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "loss {a} vs {b}");
        let (ga, gb) = (fused.backward()?, slow.backward()?);
        for (i, v) in vars.iter().enumerate() {
            let x: Vec<f32> = ga.get(v).expect("fused gradient").flatten_all()?.to_vec1()?;
            let y: Vec<f32> = gb.get(v).expect("reference gradient").flatten_all()?.to_vec1()?;
            let scale = y.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let diff = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-4 * scale, "parameter {i}: gradients differ by {diff} (scale {scale})");
        }
        Ok(())
    }

    #[test]
    fn the_parameter_count_follows_the_config() -> Result<()> {
        let c = tiny_config();
        let (model, vars) = Model::init(&c, 1)?;
        let per_block = 16 + (8 * 4 * 16 + 8 * 4) + 16 * 16 + 16 + 2 * 24 * 16 + 16 * 24;
        assert_eq!(model.parameter_count(), 11 * 16 + 2 * per_block + 16);
        assert_eq!(vars.len(), model.parameters().len());
        Ok(())
    }
}
