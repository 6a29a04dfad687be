//! The model's shape, with Hugging Face Qwen2 field names, so `config.json` is the one
//! `transformers` reads for `Qwen2ForCausalLM`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    #[serde(default = "architectures")]
    pub architectures: Vec<String>,
    #[serde(default = "model_type")]
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "rms_norm_eps")]
    pub rms_norm_eps: f64,
    pub vocab_size: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    #[serde(default = "hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default = "torch_dtype")]
    pub torch_dtype: String,
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Scaled rotary embedding (YaRN, dynamic NTK); kiln supports none.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub attention_dropout: f64,
    #[serde(default = "initializer_range")]
    pub initializer_range: f64,
}

fn architectures() -> Vec<String> {
    vec!["Qwen2ForCausalLM".into()]
}
fn model_type() -> String {
    "qwen2".into()
}
fn rope_theta() -> f64 {
    10000.0
}
fn rms_norm_eps() -> f64 {
    1e-6
}
fn hidden_act() -> String {
    "silu".into()
}
fn torch_dtype() -> String {
    "float32".into()
}
fn initializer_range() -> f64 {
    0.02
}

impl Qwen2Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the shape is one the model can run; `path` prefixes the errors.
    pub fn check(&self, path: &str) -> Result<()> {
        let fail = |field: &str, message: String| Err(StageError::param(format!("{path}{field}"), message));
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(
                "heads",
                format!("{} heads do not divide hidden size {}", self.num_attention_heads, self.hidden_size),
            );
        }
        if self.num_key_value_heads == 0 || !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return fail(
                "kv_heads",
                format!(
                    "{} key/value heads do not divide {} heads",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return fail("heads", format!("head size {} must be even for rotary embedding", self.head_dim()));
        }
        if self.use_sliding_window {
            return fail("use_sliding_window", "sliding-window attention is not supported".into());
        }
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            return fail("rope_scaling", format!("scaled rotary embedding is not supported ({scaling})"));
        }
        if self.hidden_act != "silu" {
            return fail("hidden_act", format!("only silu is supported, not {}", self.hidden_act));
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| StageError::data(path.display().to_string(), e.to_string()))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("config.json");
        let text = serde_json::to_string_pretty(self).expect("config serializes");
        std::fs::write(&path, text).map_err(|e| StageError::io(&path, e))
    }
}
