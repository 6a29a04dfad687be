//! `train`: a Qwen2-architecture decoder trained on packed rows.
//!
//! Per optimizer step: `accumulation` micro-batches of `batch_rows` rows; the loss of
//! each is the cross-entropy over its trained positions divided by the trained-token
//! count of the whole step (not of the micro-batch), so every token weighs the same;
//! gradients are summed, clipped by their global norm, and AdamW (decoupled weight
//! decay on matrices only) takes one step at the scheduled learning rate. Rows are
//! visited in an order drawn from the seed, reshuffled each epoch.

pub mod schedule;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array};
use candle_core::Var;
use kiln_kernels::adamw::{AdamW, Hyper, Update};
use kiln_kernels::cross_entropy::cross_entropy;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use schedule::{Decay, Schedule};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::model::{Model, Qwen2Config, Tokens, checkpoint, index_tensor};
use crate::pack::IGNORE;
use crate::schema::standard;
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::{Columns, list_i32};
use crate::template::{END_OF_TEXT, IM_END};
use crate::tokenizer_train::{self, TOKENIZER_FILE};

pub struct Train;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelParams {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_embeddings: bool,
    /// Longest position the model supports; at least the rows' length.
    pub max_positions: usize,
    pub init_std: f64,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            hidden: 256,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            intermediate: 704,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            tie_embeddings: true,
            max_positions: 4096,
            init_std: 0.02,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerParams {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clipping; 0 for none.
    pub max_grad_norm: f64,
}

impl Default for OptimizerParams {
    fn default() -> Self {
        OptimizerParams { lr: 1e-3, betas: [0.9, 0.95], eps: 1e-8, weight_decay: 0.1, max_grad_norm: 1.0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub model: ModelParams,
    pub optimizer: OptimizerParams,
    pub schedule: Schedule,
    /// Optimizer steps.
    pub steps: u64,
    /// Packed rows per micro-batch.
    pub batch_rows: usize,
    /// Micro-batches per optimizer step.
    pub accumulation: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            model: ModelParams::default(),
            optimizer: OptimizerParams::default(),
            schedule: Schedule::default(),
            steps: 1000,
            batch_rows: 4,
            accumulation: 1,
        }
    }
}

impl Params {
    fn config(&self, vocab_size: usize, bos: Option<u32>, eos: Option<u32>) -> Qwen2Config {
        let m = &self.model;
        Qwen2Config {
            architectures: vec!["Qwen2ForCausalLM".into()],
            model_type: "qwen2".into(),
            hidden_size: m.hidden,
            intermediate_size: m.intermediate,
            num_hidden_layers: m.layers,
            num_attention_heads: m.heads,
            num_key_value_heads: m.kv_heads,
            rope_theta: m.rope_theta,
            rms_norm_eps: m.rms_norm_eps,
            vocab_size,
            tie_word_embeddings: m.tie_embeddings,
            max_position_embeddings: m.max_positions,
            hidden_act: "silu".into(),
            bos_token_id: bos,
            eos_token_id: eos,
            torch_dtype: "float32".into(),
            use_sliding_window: false,
            attention_dropout: 0.0,
            initializer_range: m.init_std,
        }
    }
}

impl Stage for Train {
    type Params = Params;
    const KIND: &'static str = "train";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "train a Qwen2-architecture decoder on packed rows (AdamW, warm-up + cosine)";
    const RANDOM: bool = true;
    const USES_DEVICE: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[
            InputDecl {
                name: "data",
                accepts: Accepts::Table(&[
                    ("input_ids", "list<int32>"),
                    ("labels", "list<int32>"),
                    ("position_ids", "list<int32>"),
                    ("seq_lens", "list<int32>"),
                ]),
                about: "packed rows",
            },
            InputDecl {
                name: "tokenizer",
                accepts: Accepts::Files("tokenizer"),
                about: "the tokenizer the rows were made with",
            },
        ]
    }

    fn check(params: &Params) -> Result<()> {
        let positive = [
            ("model.hidden", params.model.hidden),
            ("model.layers", params.model.layers),
            ("model.heads", params.model.heads),
            ("model.kv_heads", params.model.kv_heads),
            ("model.intermediate", params.model.intermediate),
            ("batch_rows", params.batch_rows),
            ("accumulation", params.accumulation),
        ];
        for (path, value) in positive {
            if value == 0 {
                return Err(StageError::param(path, "must be at least 1"));
            }
        }
        if params.steps == 0 {
            return Err(StageError::param("steps", "must be at least 1"));
        }
        if params.optimizer.lr.is_nan() || params.optimizer.lr <= 0.0 {
            return Err(StageError::param("optimizer.lr", "must be positive"));
        }
        for (i, b) in params.optimizer.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(StageError::param(format!("optimizer.betas[{i}]"), "must be in [0, 1)"));
            }
        }
        if !(0.0..=1.0).contains(&params.schedule.warmup_ratio) {
            return Err(StageError::param("schedule.warmup_ratio", "must be in [0, 1]"));
        }
        params.config(1, None, None).check("model.")
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::files("model", "model"), OutputDecl::report("metrics", standard::train_metrics())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let tokenizer_dir = ctx.files("tokenizer")?.to_path_buf();
        let tokenizer = tokenizer_train::load(&tokenizer_dir)?;
        let rows = read_rows(ctx)?;
        let seq_len = rows.first().map_or(0, |r| r.ids.len());
        if rows.is_empty() {
            return Err(StageError::data(ctx.input("data")?.origin.clone(), "no packed rows to train on"));
        }
        if seq_len > params.model.max_positions {
            return Err(StageError::param(
                "model.max_positions",
                format!("is {}, shorter than the rows ({seq_len} tokens)", params.model.max_positions),
            ));
        }
        let vocab = tokenizer.get_vocab_size(true);
        if let Some(bad) = rows.iter().flat_map(|r| &r.ids).find(|&&t| t as usize >= vocab) {
            return Err(StageError::data(
                ctx.input("data")?.origin.clone(),
                format!(
                    "token id {bad} is outside the tokenizer's vocabulary of {vocab}; were the rows made with another tokenizer?"
                ),
            ));
        }
        let config = params.config(vocab, tokenizer.token_to_id(END_OF_TEXT), tokenizer.token_to_id(IM_END));
        let (model, vars) = Model::init(&config, ctx.seed)?;
        let trained = train(params, &model, &vars, &rows, ctx)?;

        let dir = ctx.output_dir("model")?;
        checkpoint::save(&model, &dir)?;
        let from = tokenizer_dir.join(TOKENIZER_FILE);
        std::fs::copy(&from, dir.join(TOKENIZER_FILE)).map_err(|e| StageError::io(&from, e))?;
        write_metrics(ctx, &trained.log)?;

        let tail = &trained.log[trained.log.len().saturating_sub(20)..];
        let final_loss = tail.iter().map(|s| s.loss).sum::<f64>() / tail.len().max(1) as f64;
        let tokens_per_s = trained.tokens as f64 / trained.seconds.max(1e-9);
        Ok(StageReport::default()
            .metric("parameters", model.parameter_count())
            .metric("steps", params.steps)
            .metric("final_loss", final_loss)
            .metric("tokens", trained.tokens)
            .metric("trained_tokens", trained.trained_tokens)
            .metric("tokens_per_s", tokens_per_s)
            .metric("train_seconds", trained.seconds)
            .metric("epochs", trained.tokens as f64 / (rows.len() * seq_len) as f64)
            .summary(format!(
                "{} steps, loss {final_loss:.4}, {tokens_per_s:.0} tokens/s, {:.2}M parameters",
                params.steps,
                model.parameter_count() as f64 / 1e6
            )))
    }
}

/// One packed row.
pub struct Row {
    pub ids: Vec<u32>,
    pub labels: Vec<i32>,
    pub positions: Vec<u32>,
    pub seq_lens: Vec<usize>,
}

fn read_rows(ctx: &StageContext) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for batch in ctx.table("data")?.batches() {
        let batch = batch?;
        let cols = Columns::new(&batch);
        let (ids, labels, positions, lens) =
            (cols.lists("input_ids")?, cols.lists("labels")?, cols.lists("position_ids")?, cols.lists("seq_lens")?);
        for r in 0..batch.num_rows() {
            rows.push(Row {
                ids: list_i32(ids, r)?.into_iter().map(|t| t as u32).collect(),
                labels: list_i32(labels, r)?,
                positions: list_i32(positions, r)?.into_iter().map(|p| p as u32).collect(),
                seq_lens: list_i32(lens, r)?.into_iter().map(|l| l as usize).collect(),
            });
        }
    }
    Ok(rows)
}

/// The tokens of some rows laid end to end, and the positions whose next token is a
/// training target (labels are not shifted: position t predicts label t + 1).
pub struct MicroBatch {
    pub tokens: Tokens,
    pub target_positions: Vec<u32>,
    pub targets: Vec<i32>,
}

pub fn micro_batch(rows: &[&Row]) -> Result<MicroBatch> {
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    let mut segments = Vec::new();
    let mut target_positions = Vec::new();
    let mut targets = Vec::new();
    for row in rows {
        let offset = ids.len();
        let mut start = offset;
        for &len in &row.seq_lens {
            segments.push((start, len));
            start += len;
        }
        for t in 0..row.ids.len().saturating_sub(1) {
            if row.labels[t + 1] != IGNORE {
                target_positions.push((offset + t) as u32);
                targets.push(row.labels[t + 1]);
            }
        }
        ids.extend_from_slice(&row.ids);
        positions.extend_from_slice(&row.positions);
    }
    Ok(MicroBatch { tokens: Tokens::new(ids, positions, segments)?, target_positions, targets })
}

/// One optimizer step's record.
#[derive(Debug, Clone)]
pub struct StepLog {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    pub trained_tokens: u64,
}

struct Trained {
    log: Vec<StepLog>,
    tokens: u64,
    trained_tokens: u64,
    seconds: f64,
}

fn train(params: &Params, model: &Model, vars: &[Var], rows: &[Row], ctx: &StageContext) -> Result<Trained> {
    let parameters = model.parameters();
    let sizes: Vec<usize> = parameters.iter().map(|(t, _)| t.elem_count()).collect();
    let mut optimizer = AdamW::new(&sizes);
    let o = &params.optimizer;
    let per_step = params.batch_rows * params.accumulation;
    let mut order = Order::new(rows.len(), ctx.seed);
    let progress = ctx.progress();
    progress.start(params.steps, "steps");
    let mut log = Vec::with_capacity(params.steps as usize);
    let (mut total_tokens, mut total_trained) = (0u64, 0u64);
    let started = Instant::now();
    for step in 0..params.steps {
        let picked: Vec<&Row> = (0..per_step).map(|_| &rows[order.next()]).collect();
        let micro: Vec<MicroBatch> = picked.chunks(params.batch_rows).map(micro_batch).collect::<Result<_>>()?;
        let trained: usize = micro.iter().map(|m| m.targets.len()).sum();
        let tokens: usize = picked.iter().map(|r| r.ids.len()).sum();
        let mut loss_sum = 0f64;
        let mut grads: Vec<Option<candle_core::Tensor>> = vec![None; vars.len()];
        if trained > 0 {
            for m in &micro {
                if m.targets.is_empty() {
                    continue;
                }
                let hidden = model.hidden(&m.tokens, |_, _| Ok(()))?;
                let selected = hidden.index_select(&index_tensor(&m.target_positions)?, 0)?;
                let logits = model.logits(&selected)?;
                let loss = cross_entropy(&logits, &Arc::new(m.targets.clone()), trained as f32)?;
                loss_sum += loss.to_scalar::<f32>()? as f64;
                let store = loss.backward()?;
                for (slot, var) in grads.iter_mut().zip(vars) {
                    if let Some(g) = store.get(var.as_tensor()) {
                        *slot = Some(match slot.take() {
                            Some(acc) => (acc + g)?,
                            None => g.clone(),
                        });
                    }
                }
            }
        }
        if !loss_sum.is_finite() {
            return Err(StageError::Diverged { step: step + 1, value: loss_sum });
        }
        let lr = o.lr * params.schedule.factor(step, params.steps);
        let hyper = Hyper {
            lr: lr as f32,
            beta1: o.betas[0] as f32,
            beta2: o.betas[1] as f32,
            eps: o.eps as f32,
            weight_decay: o.weight_decay as f32,
        };
        let zeros: Vec<candle_core::Tensor> = grads
            .iter()
            .zip(vars)
            .filter(|(g, _)| g.is_none())
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let mut zero_iter = zeros.iter();
        let updates: Vec<Update> = parameters
            .iter()
            .zip(&grads)
            .map(|((param, decay), g)| Update {
                param,
                grad: g.as_ref().unwrap_or_else(|| zero_iter.next().expect("one zero per missing gradient")),
                decay: *decay,
            })
            .collect();
        let max_norm = (o.max_grad_norm > 0.0).then_some(o.max_grad_norm);
        let grad_norm = optimizer.step(&updates, hyper, max_norm)?;
        if !grad_norm.is_finite() {
            return Err(StageError::Diverged { step: step + 1, value: grad_norm });
        }
        total_tokens += tokens as u64;
        total_trained += trained as u64;
        log.push(StepLog {
            step: step + 1,
            lr,
            loss: loss_sum,
            grad_norm,
            tokens: tokens as u64,
            trained_tokens: trained as u64,
        });
        progress.advance(1);
        progress.message(&format!("loss {loss_sum:.4}"));
    }
    Ok(Trained { log, tokens: total_tokens, trained_tokens: total_trained, seconds: started.elapsed().as_secs_f64() })
}

/// Row order: a permutation per epoch, drawn from (seed, epoch).
struct Order {
    rows: usize,
    seed: u64,
    epoch: u64,
    at: usize,
    permutation: Vec<usize>,
}

impl Order {
    fn new(rows: usize, seed: u64) -> Self {
        let mut order = Order { rows, seed, epoch: 0, at: 0, permutation: Vec::new() };
        order.shuffle();
        order
    }

    fn shuffle(&mut self) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(self.epoch);
        self.permutation = (0..self.rows).collect();
        self.permutation.shuffle(&mut rng);
    }

    fn next(&mut self) -> usize {
        if self.at == self.rows {
            self.epoch += 1;
            self.at = 0;
            self.shuffle();
        }
        self.at += 1;
        self.permutation[self.at - 1]
    }
}

fn write_metrics(ctx: &StageContext, log: &[StepLog]) -> Result<()> {
    let mut writer = ctx.write_table("metrics")?;
    let f64s = |f: fn(&StepLog) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values(log.iter().map(f))) };
    let i64s = |f: fn(&StepLog) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(log.iter().map(|s| f(s) as i64)))
    };
    writer.write_columns(vec![
        i64s(|s| s.step),
        f64s(|s| s.lr),
        f64s(|s| s.loss),
        f64s(|s| s.grad_norm),
        i64s(|s| s.tokens),
        i64s(|s| s.trained_tokens),
    ])?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_cross_documents() -> Result<()> {
        // two documents [5 6 7] [8 9], then padding; labels as pack writes them
        let row = Row {
            ids: vec![5, 6, 7, 8, 9, 0],
            labels: vec![IGNORE, 6, 7, IGNORE, 9, IGNORE],
            positions: vec![0, 1, 2, 0, 1, 0],
            seq_lens: vec![3, 2],
        };
        let m = micro_batch(&[&row, &row])?;
        assert_eq!(m.target_positions, [0, 1, 3, 6, 7, 9]);
        assert_eq!(m.targets, [6, 7, 9, 6, 7, 9]);
        assert_eq!(*m.tokens.segments, [(0, 3), (3, 2), (6, 3), (9, 2)]);
        Ok(())
    }

    #[test]
    fn every_row_is_visited_once_per_epoch() {
        let mut order = Order::new(7, 3);
        let mut first: Vec<usize> = (0..7).map(|_| order.next()).collect();
        let mut second: Vec<usize> = (0..7).map(|_| order.next()).collect();
        assert_ne!(first, second);
        first.sort();
        second.sort();
        assert_eq!(first, (0..7).collect::<Vec<_>>());
        assert_eq!(second, first);
    }

    #[test]
    fn bad_parameters_are_named() {
        let p = Params { model: ModelParams { heads: 3, ..Default::default() }, ..Default::default() };
        match Train::check(&p) {
            Err(StageError::Param { path, .. }) => assert_eq!(path, "model.heads"),
            other => panic!("{other:?}"),
        }
        let p = Params { optimizer: OptimizerParams { betas: [0.9, 1.5], ..Default::default() }, ..Default::default() };
        assert!(matches!(Train::check(&p), Err(StageError::Param { path, .. }) if path == "optimizer.betas[1]"));
    }
}
