//! `train`: a Qwen2-architecture decoder trained on packed rows.
//!
//! Per optimizer step: `accumulation` micro-batches of `batch_rows` rows; the loss of
//! each is the cross-entropy over its trained positions divided by the trained-token
//! count of the whole step (not of the micro-batch), so every token weighs the same;
//! gradients are summed, clipped by their global norm, and AdamW (decoupled weight
//! decay on matrices only) takes one step at the scheduled learning rate. Rows are
//! visited in an order drawn from the seed, reshuffled each epoch.
//!
//! The weights start fresh (`model:` gives the shape), from a Hugging Face Qwen2 folder
//! (`init: <dir>`) or from another train stage's model (the input `init`), with a fresh
//! optimizer unless `continue_optimizer` is set. Every `checkpoint_every` steps the
//! whole state goes to the scratch folder, and a killed run resumes from it (`state`).

pub mod schedule;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array};
use candle_core::{DType, Device, Var};
use kiln_kernels::adamw::{AdamW, Hyper, Update};
use kiln_kernels::cross_entropy::cross_entropy;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use schedule::{Decay, Schedule, Warmup};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::model::{Model, Qwen2Config, Tokens, checkpoint, index_tensor};
use crate::schema::IGNORE;
use crate::schema::standard;
use crate::stage::{Accepts, ExternalFile, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::{Columns, list_i32};
use crate::template::{END_OF_TEXT, IM_END};
use crate::tokenizer_file::{self, TOKENIZER_FILE};
use state::{LoopState, OPTIMIZER_FILE};

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
    /// Rows of the embedding: the tokenizer's vocabulary when left out; more pads it (as
    /// Qwen's 151,936 rows pad a 151,646-token vocabulary).
    pub vocab_size: Option<usize>,
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
            vocab_size: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerParams {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// Decoupled weight decay, on matrices only: never on norms and biases, and on the
    /// token embedding only with `decay_embedding` (an untied output head is a matrix).
    pub weight_decay: f64,
    pub decay_embedding: bool,
    /// Global gradient-norm clipping; 0 for none.
    pub max_grad_norm: f64,
}

impl Default for OptimizerParams {
    fn default() -> Self {
        OptimizerParams {
            lr: 1e-3,
            betas: [0.9, 0.95],
            eps: 1e-8,
            weight_decay: 0.1,
            decay_embedding: false,
            max_grad_norm: 1.0,
        }
    }
}

/// Whether weight decay applies to each parameter, in `Model::parameters` order.
fn decays(model: &Model, o: &OptimizerParams) -> Vec<bool> {
    let embed = model.embed.id();
    model.parameters().iter().map(|(t, matrix)| *matrix || (o.decay_embedding && t.id() == embed)).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The shape of a fresh model. Left out when the weights come from `init`, whose
    /// `config.json` gives the shape.
    #[serde(default)]
    pub model: Option<ModelParams>,
    /// A Hugging Face Qwen2 checkpoint folder to fine-tune (`config.json` and
    /// `model.safetensors` or its shards). To continue another train stage, bind its
    /// model to the input `init` instead.
    pub init: Option<String>,
    /// Continue the AdamW moments and step count saved with the `init` model (trained
    /// with `save_optimizer`); the schedule always restarts over this stage's `steps`.
    pub continue_optimizer: bool,
    /// Also write the optimizer state beside the model (`optimizer.safetensors`, twice
    /// the weights' size), for a later stage's `continue_optimizer`.
    pub save_optimizer: bool,
    /// Write a resumable checkpoint every this many optimizer steps (0: never).
    pub checkpoint_every: u64,
    /// Where to train: `auto` (the build's device), `cpu` or `cuda`.
    pub device: DeviceChoice,
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
            model: Some(ModelParams::default()),
            init: None,
            continue_optimizer: false,
            save_optimizer: false,
            checkpoint_every: 500,
            device: DeviceChoice::Auto,
            optimizer: OptimizerParams::default(),
            schedule: Schedule::default(),
            steps: 1000,
            batch_rows: 4,
            accumulation: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    /// The device to train on and the dtype to compute in: f32 on the CPU; bf16 on a GPU
    /// (with f32 master weights and optimizer state). A plan may name `cuda` on a machine
    /// without one (the key is the same wherever it is planned); the run needs it.
    fn resolve(self) -> Result<(Device, DType)> {
        match (self, crate::device::cuda_device()) {
            (DeviceChoice::Cpu, _) | (DeviceChoice::Auto, None) => Ok((Device::Cpu, DType::F32)),
            (DeviceChoice::Auto | DeviceChoice::Cuda, Some(gpu)) => Ok((gpu, DType::BF16)),
            (DeviceChoice::Cuda, None) => {
                let why = if cfg!(feature = "cuda") {
                    "is cuda, but no CUDA device answered"
                } else {
                    "is cuda, but this kiln was built without CUDA support (`just build-cuda` builds one with it)"
                };
                Err(StageError::param("device", why))
            }
        }
    }
}

impl Params {
    /// The shape of a fresh model.
    fn fresh_model(&self) -> ModelParams {
        self.model.clone().unwrap_or_default()
    }

    fn config(&self, vocab_size: usize, bos: Option<u32>, eos: Option<u32>) -> Qwen2Config {
        let m = &self.fresh_model();
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
            rope_scaling: None,
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
    const NOT_IN_KEY: &'static [&'static str] = &["checkpoint_every"];

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
                optional: false,
            },
            InputDecl {
                name: "tokenizer",
                accepts: Accepts::Files("tokenizer"),
                about: "the tokenizer the rows were made with",
                optional: false,
            },
            InputDecl {
                name: "init",
                accepts: Accepts::Files("model"),
                about: "a model to continue training (another train stage's)",
                optional: true,
            },
        ]
    }

    fn check(params: &Params) -> Result<()> {
        let model = params.fresh_model();
        let positive = [
            ("model.hidden", model.hidden),
            ("model.layers", model.layers),
            ("model.heads", model.heads),
            ("model.kv_heads", model.kv_heads),
            ("model.intermediate", model.intermediate),
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
        if params.optimizer.lr > 1.0 {
            return Err(StageError::param(
                "optimizer.lr",
                format!(
                    "{:e} cannot be meant: AdamW moves every weight by about the learning rate each step (SFT uses 1e-6 to 1e-2)",
                    params.optimizer.lr
                ),
            ));
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

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        let init_input = inputs.contains_key("init");
        if init_input && params.init.is_some() {
            return Err(StageError::param("init", "is given both here and as the input `init`; keep one"));
        }
        let from_checkpoint = init_input || params.init.is_some();
        if from_checkpoint && params.model.is_some() {
            return Err(StageError::param(
                "model",
                "the model's shape comes from the `init` checkpoint's config.json; leave `model` out",
            ));
        }
        if params.continue_optimizer && !from_checkpoint {
            return Err(StageError::param("continue_optimizer", "needs `init` (a path or the input `init`)"));
        }
        Ok(vec![OutputDecl::files("model", "model"), OutputDecl::report("metrics", standard::train_metrics())])
    }

    fn external_files(params: &Params) -> Vec<ExternalFile> {
        let Some(dir) = &params.init else { return Vec::new() };
        let dir = Path::new(dir);
        if !dir.is_dir() {
            // One error for a missing folder, not one per file it should hold.
            return vec![ExternalFile { param: "init".into(), path: dir.join("config.json"), folder: false }];
        }
        let weights = checkpoint::weight_files(dir).unwrap_or_else(|_| vec![dir.join(checkpoint::INDEX_FILE)]);
        let mut files = vec![dir.join("config.json")];
        files.extend(weights);
        if params.continue_optimizer {
            files.push(dir.join(OPTIMIZER_FILE));
        }
        files.into_iter().map(|path| ExternalFile { param: "init".into(), path, folder: false }).collect()
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let (device, dtype) = params.device.resolve()?;
        let tokenizer_dir = ctx.files("tokenizer")?.to_path_buf();
        let tokenizer = tokenizer_file::load(&tokenizer_dir)?;
        let rows = read_rows(ctx)?;
        let seq_len = rows.first().map_or(0, |r| r.ids.len());
        if rows.is_empty() {
            return Err(StageError::data(ctx.input("data")?.origin.clone(), "no packed rows to train on"));
        }
        let checkpoints = ctx.scratch().join("checkpoints");
        let (model, optimizer, start, origin) = match state::latest(&checkpoints)? {
            Some(resumed) => {
                let origin = Origin::Checkpoint(resumed.dir.clone());
                (resumed.model, resumed.optimizer, resumed.state, origin)
            }
            None => {
                let (model, origin) = starting_model(params, ctx, &tokenizer)?;
                let optimizer = match (&origin, params.continue_optimizer) {
                    (Origin::Checkpoint(dir), true) => {
                        state::load_optimizer(&dir.join(OPTIMIZER_FILE), &model.parameter_sizes())?
                    }
                    _ => AdamW::new(&model.parameter_sizes()),
                };
                (model, optimizer, LoopState::default(), origin)
            }
        };
        fits(&model.config, &origin, &rows, seq_len, tokenizer.get_vocab_size(true), ctx)?;
        let (model, vars) = model.trainable(&device)?;
        let trained = train(params, &model, &vars, optimizer, start, &rows, ctx, &checkpoints, dtype)?;

        let dir = ctx.output_dir("model")?;
        checkpoint::save(&model, &dir)?;
        if params.save_optimizer {
            state::save_optimizer(&trained.optimizer, &dir.join(OPTIMIZER_FILE))?;
        }
        let from = tokenizer_dir.join(TOKENIZER_FILE);
        std::fs::copy(&from, dir.join(TOKENIZER_FILE)).map_err(|e| StageError::io(&from, e))?;
        let done = &trained.state;
        write_metrics(ctx, &done.log)?;

        let tail = &done.log[done.log.len().saturating_sub(20)..];
        let final_loss = tail.iter().map(|s| s.loss).sum::<f64>() / tail.len().max(1) as f64;
        let tokens_per_s = trained.tokens_this_run as f64 / trained.seconds.max(1e-9);
        let mut report = StageReport::default();
        if let Some(step) = trained.resumed_at {
            report = report.metric("resumed_at_step", step);
        }
        Ok(report
            .metric("parameters", model.parameter_count())
            .metric("steps", params.steps)
            .metric("final_loss", final_loss)
            .metric("tokens", done.tokens)
            .metric("trained_tokens", done.trained_tokens)
            .metric("tokens_per_s", tokens_per_s)
            .metric("train_seconds", trained.seconds)
            .metric("epochs", done.tokens as f64 / (rows.len() * seq_len) as f64)
            .summary(format!(
                "{} steps, loss {final_loss:.4}, {tokens_per_s:.0} tokens/s, {:.2}M parameters",
                params.steps,
                model.parameter_count() as f64 / 1e6
            )))
    }
}

/// Where the weights came from.
enum Origin {
    Fresh,
    Checkpoint(PathBuf),
}

/// The model training starts from: the `init` checkpoint (a path or another stage's
/// model) or fresh weights of the `model` shape drawn from the stage's seed.
fn starting_model(params: &Params, ctx: &StageContext, tokenizer: &tokenizers::Tokenizer) -> Result<(Model, Origin)> {
    let dir = match (&params.init, ctx.has_input("init")) {
        (Some(path), _) => Some(PathBuf::from(path)),
        (None, true) => Some(ctx.files("init")?.to_path_buf()),
        (None, false) => None,
    };
    match dir {
        Some(dir) => Ok((checkpoint::load(&dir)?, Origin::Checkpoint(dir))),
        None => {
            // An embedding smaller than the vocabulary is refused by `fits`.
            let rows = params.fresh_model().vocab_size.unwrap_or(tokenizer.get_vocab_size(true));
            let config = params.config(rows, tokenizer.token_to_id(END_OF_TEXT), tokenizer.token_to_id(IM_END));
            Ok((Model::init(&config, ctx.seed)?.0, Origin::Fresh))
        }
    }
}

/// Checks the rows fit the model: no longer than its positions, every id inside its
/// embedding and the tokenizer's vocabulary.
fn fits(
    config: &Qwen2Config,
    origin: &Origin,
    rows: &[Row],
    seq_len: usize,
    tokenizer_vocab: usize,
    ctx: &StageContext,
) -> Result<()> {
    let blame = |field: &str, message: String| match origin {
        Origin::Fresh => StageError::param(format!("model.{field}"), message),
        Origin::Checkpoint(dir) => StageError::data(dir.join("config.json").display().to_string(), message),
    };
    if seq_len > config.max_position_embeddings {
        let field = if matches!(origin, Origin::Fresh) { "max_positions" } else { "max_position_embeddings" };
        return Err(blame(
            field,
            format!("{field} is {}, shorter than the rows ({seq_len} tokens)", config.max_position_embeddings),
        ));
    }
    if tokenizer_vocab > config.vocab_size {
        return Err(blame(
            "vocab_size",
            format!(
                "vocab_size is {}, but the tokenizer has {tokenizer_vocab} tokens; is it the model's tokenizer?",
                config.vocab_size
            ),
        ));
    }
    if let Some(bad) = rows.iter().flat_map(|r| &r.ids).find(|&&t| t as usize >= tokenizer_vocab) {
        return Err(StageError::data(
            ctx.input("data")?.origin.clone(),
            format!(
                "token id {bad} is outside the tokenizer's vocabulary of {tokenizer_vocab}; were the rows made with another tokenizer?"
            ),
        ));
    }
    Ok(())
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    pub trained_tokens: u64,
}

struct Trained {
    state: LoopState,
    optimizer: AdamW,
    /// The step a checkpoint let this run start from.
    resumed_at: Option<u64>,
    tokens_this_run: u64,
    seconds: f64,
}

#[allow(clippy::too_many_arguments)]
fn train(
    params: &Params,
    model: &Model,
    vars: &[Var],
    mut optimizer: AdamW,
    mut state: LoopState,
    rows: &[Row],
    ctx: &StageContext,
    checkpoints: &Path,
    dtype: DType,
) -> Result<Trained> {
    let device = model.embed.device().clone();
    let parameters = model.parameters();
    let o = &params.optimizer;
    let decay = decays(model, o);
    let per_step = params.batch_rows * params.accumulation;
    let mut order = Order::at(rows.len(), ctx.seed, state.epoch, state.at);
    let progress = ctx.progress();
    progress.start(params.steps, "steps");
    let resumed_at = (state.step > 0).then_some(state.step);
    if let Some(step) = resumed_at {
        progress.advance(step);
        progress.message(&format!("resumed at step {step}"));
    }
    let mut tokens_this_run = 0u64;
    let started = Instant::now();
    for step in state.step..params.steps {
        let picked: Vec<&Row> = (0..per_step).map(|_| &rows[order.next()]).collect();
        let micro: Vec<MicroBatch> = picked.chunks(params.batch_rows).map(micro_batch).collect::<Result<_>>()?;
        let trained: usize = micro.iter().map(|m| m.targets.len()).sum();
        let tokens: usize = picked.iter().map(|r| r.ids.len()).sum();
        let mut loss_sum = 0f64;
        let mut grads: Vec<Option<candle_core::Tensor>> = vec![None; vars.len()];
        if trained > 0 {
            // The weights the forward computes with this step (the f32 masters themselves
            // on the CPU; their bf16 casts on a GPU).
            let compute = model.compute_copy(dtype)?;
            for m in micro {
                if m.targets.is_empty() {
                    continue;
                }
                let hidden = compute.hidden(&m.tokens.to_device(&device)?, |_, _| Ok(()))?;
                let selected = hidden.index_select(&index_tensor(&m.target_positions)?.to_device(&device)?, 0)?;
                let logits = compute.logits(&selected)?;
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
            .zip(&decay)
            .map(|(((param, _), g), &decay)| Update {
                param,
                grad: g.as_ref().unwrap_or_else(|| zero_iter.next().expect("one zero per missing gradient")),
                decay,
            })
            .collect();
        let max_norm = (o.max_grad_norm > 0.0).then_some(o.max_grad_norm);
        let grad_norm = if device.is_cpu() {
            optimizer.step(&updates, hyper, max_norm)?
        } else {
            let grads: Vec<&candle_core::Tensor> = updates.iter().map(|u| u.grad).collect();
            optimizer.step_vars(vars, &grads, &decay, hyper, max_norm)?
        };
        if !grad_norm.is_finite() {
            return Err(StageError::Diverged { step: step + 1, value: grad_norm });
        }
        tokens_this_run += tokens as u64;
        state.tokens += tokens as u64;
        state.trained_tokens += trained as u64;
        state.log.push(StepLog {
            step: step + 1,
            lr,
            loss: loss_sum,
            grad_norm,
            tokens: tokens as u64,
            trained_tokens: trained as u64,
        });
        state.step = step + 1;
        (state.epoch, state.at) = (order.epoch, order.at);
        if params.checkpoint_every > 0
            && state.step.is_multiple_of(params.checkpoint_every)
            && state.step < params.steps
        {
            optimizer.sync_to_host()?;
            state::save(checkpoints, model, &optimizer, &state)?;
        }
        progress.advance(1);
        progress.message(&format!("loss {loss_sum:.4}"));
    }
    optimizer.sync_to_host()?;
    Ok(Trained { state, optimizer, resumed_at, tokens_this_run, seconds: started.elapsed().as_secs_f64() })
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
    /// The order positioned after `at` rows of `epoch`.
    fn at(rows: usize, seed: u64, epoch: u64, at: usize) -> Self {
        let mut order = Order { rows, seed, epoch, at, permutation: Vec::new() };
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
    use crate::context::Slot;
    use crate::pack::{Sequence, assemble};
    use crate::testing;
    use crate::tokenizer_train;

    const SEQ_LEN: usize = 64;

    /// A tokenizer and rows of packed arithmetic chats under `dir`.
    fn inputs(dir: &Path) -> Vec<(&'static str, Slot)> {
        let texts: Vec<String> = (0..60)
            .map(|i| format!("<|im_start|>user\n{i} + {i}<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>\n", 2 * i))
            .collect();
        let tokenizer =
            tokenizer_train::train(&tokenizer_train::Params { vocab_size: 300, ..Default::default() }, &texts).unwrap();
        std::fs::create_dir_all(dir.join("tok")).unwrap();
        tokenizer_file::save(&tokenizer, &dir.join("tok")).unwrap();
        let sequences: Vec<Sequence> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ids: Vec<i32> =
                    tokenizer.encode(t.as_str(), false).unwrap().get_ids().iter().map(|&t| t as i32).collect();
                Sequence { id: i as i64, mask: vec![true; ids.len()], ids }
            })
            .collect();
        let mut rows: Vec<Vec<usize>> = vec![Vec::new()];
        let mut used = 0;
        for (i, seq) in sequences.iter().enumerate() {
            if used + seq.ids.len() > SEQ_LEN {
                rows.push(Vec::new());
                used = 0;
            }
            rows.last_mut().unwrap().push(i);
            used += seq.ids.len();
        }
        let packed =
            testing::write_table(&dir.join("packed"), standard::packed(), assemble(&sequences, &rows, SEQ_LEN, 0));
        vec![("data", packed), ("tokenizer", testing::files(&dir.join("tok"), "tokenizer"))]
    }

    const TINY: &str = "{ model: { hidden: 16, layers: 2, heads: 2, kv_heads: 1, intermediate: 32 }, batch_rows: 2 }";

    fn with(extra: &str) -> String {
        let base: serde_json::Value = serde_yaml::from_str(TINY).unwrap();
        let mut base = base.as_object().unwrap().clone();
        let extra: serde_json::Value = serde_yaml::from_str(extra).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            base.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(base).to_string()
    }

    fn weights(model_dir: &Path) -> Vec<f32> {
        let model = checkpoint::load(model_dir).unwrap();
        model.parameters().iter().flat_map(|(t, _)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }

    /// A run cut short after a checkpoint and run again to the end gives the bytes of a
    /// run that was never interrupted (the schedule is constant, so the shorter first run
    /// takes the same steps up to its checkpoint).
    #[test]
    fn a_resumed_run_ends_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = || inputs(dir.path());
        let schedule = "schedule: { warmup_ratio: 0.0, decay: constant }, checkpoint_every: 3";
        testing::run::<Train>(&with(&format!("{{ steps: 8, {schedule} }}")), inputs(), &dir.path().join("a"), 7)
            .unwrap();
        let b = dir.path().join("b");
        testing::run::<Train>(&with(&format!("{{ steps: 5, {schedule} }}")), inputs(), &b, 7).unwrap();
        assert!(b.join("scratch/checkpoints/step-00000003").is_dir());
        std::fs::remove_dir_all(b.join("model")).unwrap();
        let report = testing::run::<Train>(&with(&format!("{{ steps: 8, {schedule} }}")), inputs(), &b, 7).unwrap();
        assert_eq!(report.metrics["resumed_at_step"], 3);
        for file in ["model/model.safetensors", "model/config.json"] {
            let (x, y) =
                (std::fs::read(dir.path().join("a").join(file)).unwrap(), std::fs::read(b.join(file)).unwrap());
            assert!(x == y, "{file} differs after resuming");
        }
        let log = |out: &Path| testing::read(&out.join("metrics"));
        assert_eq!(log(&dir.path().join("a")), log(&b));
    }

    /// `init` from another train stage's model starts from its weights (a vanishing
    /// learning rate leaves them as they were), not from fresh ones.
    #[test]
    fn init_continues_from_another_stage_model() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        testing::run::<Train>(&with("{ steps: 3, save_optimizer: true }"), inputs(dir.path()), &first, 1).unwrap();
        let mut second = inputs(dir.path());
        second.push(("init", testing::files(&first.join("model"), "model")));
        let tiny_lr = "{ steps: 2, optimizer: { lr: 1.0e-30 }, save_optimizer: true }";
        testing::run::<Train>(tiny_lr, second, &dir.path().join("second"), 2).unwrap();
        let (a, b) = (weights(&first.join("model")), weights(&dir.path().join("second/model")));
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-12), "the weights moved");
        let fresh = dir.path().join("fresh");
        testing::run::<Train>(&with("{ steps: 2, optimizer: { lr: 1.0e-30 } }"), inputs(dir.path()), &fresh, 2)
            .unwrap();
        let c = weights(&fresh.join("model"));
        assert!(a.iter().zip(&c).filter(|(x, y)| (*x - *y).abs() > 1e-3).count() > a.len() / 2);
        // A fresh optimizer counts from 0; `continue_optimizer` from the first stage's 3.
        let steps_of = |out: &Path| {
            let file = checkpoint::F32File::read(&out.join("model").join(OPTIMIZER_FILE)).unwrap();
            file.metadata["step"].parse::<u64>().unwrap()
        };
        assert_eq!(steps_of(&dir.path().join("second")), 2);
        let mut third = inputs(dir.path());
        third.push(("init", testing::files(&first.join("model"), "model")));
        let out = dir.path().join("third");
        testing::run::<Train>("{ steps: 2, continue_optimizer: true, save_optimizer: true }", third, &out, 2).unwrap();
        assert_eq!(steps_of(&out), 5);
    }

    /// `init: <dir>` fine-tunes a Hugging Face Qwen2 checkpoint (sharded, bf16).
    #[test]
    fn init_from_a_hugging_face_folder() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        let vocab = tokenizer_file::load(&dir.path().join("tok")).unwrap().get_vocab_size(true);
        let hf = dir.path().join("hf");
        std::fs::create_dir_all(&hf).unwrap();
        let mut config = Params::default().config(vocab + 5, None, None);
        (config.hidden_size, config.num_attention_heads, config.num_key_value_heads) = (16, 4, 2);
        (config.intermediate_size, config.num_hidden_layers, config.tie_word_embeddings) = (24, 1, false);
        checkpoint::tests::write_hf_checkpoint(&hf, &config, 3);
        let with = format!("{{ init: {}, steps: 2, batch_rows: 2 }}", hf.display());
        let report = testing::run::<Train>(&with, inputs, &dir.path().join("out"), 0).unwrap();
        assert!(report.metrics["final_loss"].as_f64().unwrap().is_finite());
        let trained = checkpoint::load(&dir.path().join("out/model")).unwrap();
        assert_eq!(trained.config.vocab_size, vocab + 5);
        assert_eq!(trained.config.num_hidden_layers, 1);
        // The shape comes from the checkpoint: also giving `model` is an error, as is
        // an embedding smaller than the tokenizer.
        let both = format!("{{ init: {}, model: {{ hidden: 16 }} }}", hf.display());
        let err = testing::run::<Train>(&both, self::inputs(dir.path()), &dir.path().join("x"), 0).unwrap_err();
        assert!(matches!(&err, StageError::Param { path, .. } if path == "model"), "{err}");
        config.vocab_size = vocab - 1;
        let small = dir.path().join("small");
        std::fs::create_dir_all(&small).unwrap();
        checkpoint::tests::write_hf_checkpoint(&small, &config, 3);
        let with = format!("{{ init: {}, steps: 1 }}", small.display());
        let err = testing::run::<Train>(&with, self::inputs(dir.path()), &dir.path().join("y"), 0).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("config.json") && err.contains(&format!("tokenizer has {vocab} tokens")), "{err}");
    }

    /// Matrices decay; norms, biases and the embedding do not, unless asked.
    #[test]
    fn weight_decay_falls_on_matrices_and_on_the_embedding_when_asked() -> Result<()> {
        let mut config = Params::default().config(11, None, None);
        config.tie_word_embeddings = false;
        let (model, _) = Model::init(&config, 1)?;
        let o = OptimizerParams::default();
        let flags = decays(&model, &o);
        let b = &model.blocks[0];
        let flag =
            |t: &candle_core::Tensor| flags[model.parameters().iter().position(|(p, _)| p.id() == t.id()).unwrap()];
        assert!(!flag(&model.embed) && !flag(&model.norm) && !flag(&b.input_norm) && !flag(&b.qkv_bias));
        assert!(flag(&b.qkv_weight) && flag(&b.o_weight) && flag(&b.gate_up_weight) && flag(&b.down_weight));
        assert!(flag(model.lm_head.as_ref().unwrap()));
        let asked = decays(&model, &OptimizerParams { decay_embedding: true, ..o });
        assert_eq!(asked.iter().filter(|&&d| d).count(), flags.iter().filter(|&&d| d).count() + 1);
        assert!(asked[0] && model.parameters()[0].0.id() == model.embed.id());
        Ok(())
    }

    /// `model.vocab_size` pads the embedding beyond the tokenizer, never below it.
    #[test]
    fn the_embedding_can_be_padded_beyond_the_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let padded_inputs = inputs(dir.path());
        let vocab = tokenizer_file::load(&dir.path().join("tok")).unwrap().get_vocab_size(true);
        let model = |rows: usize| {
            format!(
                "{{ model: {{ hidden: 16, layers: 1, heads: 2, kv_heads: 1, intermediate: 32, vocab_size: {rows} }}, steps: 1, batch_rows: 2 }}"
            )
        };
        let out = dir.path().join("padded");
        testing::run::<Train>(&model(vocab + 64), padded_inputs, &out, 0).unwrap();
        assert_eq!(checkpoint::load(&out.join("model")).unwrap().config.vocab_size, vocab + 64);
        let err = testing::run::<Train>(&model(vocab - 1), inputs(dir.path()), &dir.path().join("x"), 0).unwrap_err();
        assert!(matches!(&err, StageError::Param { path, .. } if path == "model.vocab_size"), "{err}");
    }

    /// A loss that turns non-finite stops training naming the step (here behind the
    /// plan-time refusal of such a rate, which `bad_parameters_are_named` checks).
    #[test]
    fn a_diverging_loss_stops_training_naming_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut params: Params = serde_json::from_str(&with("{ steps: 20 }")).unwrap();
        params.optimizer.lr = 1.0e30;
        let err = testing::run_unchecked::<Train>(&params, inputs(dir.path()), &dir.path().join("out"), 0).unwrap_err();
        assert!(matches!(err, StageError::Diverged { .. }), "{err}");
        assert!(err.to_string().starts_with("loss diverged at step "), "{err}");
        assert!(!dir.path().join("out/model/model.safetensors").exists());
    }

    #[test]
    fn continue_optimizer_needs_init() {
        let dir = tempfile::tempdir().unwrap();
        let err = testing::run::<Train>(&with("{ continue_optimizer: true }"), inputs(dir.path()), dir.path(), 0)
            .unwrap_err();
        assert!(matches!(&err, StageError::Param { path, .. } if path == "continue_optimizer"), "{err}");
    }

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
        let mut order = Order::at(7, 3, 0, 0);
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
        let p = Params { model: Some(ModelParams { heads: 3, ..Default::default() }), ..Default::default() };
        match Train::check(&p) {
            Err(StageError::Param { path, .. }) => assert_eq!(path, "model.heads"),
            other => panic!("{other:?}"),
        }
        let p = Params { optimizer: OptimizerParams { betas: [0.9, 1.5], ..Default::default() }, ..Default::default() };
        assert!(matches!(Train::check(&p), Err(StageError::Param { path, .. }) if path == "optimizer.betas[1]"));
        let p = Params { optimizer: OptimizerParams { lr: 1.0e30, ..Default::default() }, ..Default::default() };
        match Train::check(&p) {
            Err(StageError::Param { path, message }) => {
                assert_eq!(path, "optimizer.lr");
                assert!(message.starts_with("1e30 cannot be meant"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
