//! `eval.code`: code problems answered by a model (or by their own canonical
//! solutions), each answer run with the problem's tests in the sandbox of
//! [`crate::code::sandbox`], scored pass@k overall, per language and per family.
//!
//! Modes: `completion` continues the problem's prompt as HumanEval's harnesses do and
//! ends the continuation at the first stop sequence (Codex's `\nclass`, `\ndef`, `\n#`,
//! `\nif`, `\nprint`); `chat` sends the problem's instruction as a ChatML user turn and
//! runs the code of the answer's first fenced block, after the prompt's imports.
//!
//! Decoding is greedy (one sample per problem, pass@1) or, with `samples: n` and a
//! `temperature`, sampled (top-p), each sample from its own seeded stream; pass@k is the
//! unbiased estimator averaged over problems, reported for each k <= n. Every sample's row keeps its
//! completion, status (`passed`, `failed`, `timeout`, `memory`, `error`), the tail of
//! stderr and its time; the stage's metrics record which isolation mechanisms were used.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::code::execute::{Executor, Status};
use crate::code::language::{Language, Toolchain};
use crate::code::problem::CodeProblem;
use crate::code::sandbox::{Isolation, Limits, Sandbox};
use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::model::{generate, texts};
use crate::schema::standard;
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;
use crate::template::{Message, Template};

pub mod pass_at_k;

pub struct EvalCode;

/// How the model is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The model continues the prompt (HumanEval's form).
    #[default]
    Completion,
    /// The instruction as a chat turn; the code of the answer's fenced block.
    Chat,
}

/// What is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outputs {
    /// The model's answers (inputs `model` and `tokenizer`).
    #[default]
    Model,
    /// Each problem's canonical solution, without a model: the check that the problems,
    /// their tests and the toolchains agree (every one should pass).
    Solutions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub mode: Mode,
    pub outputs: Outputs,
    /// The languages the problems may be in; each toolchain must run in the sandbox.
    pub languages: Vec<Language>,
    pub template: Template,
    /// The system message of chat mode; empty for none.
    pub system: String,
    /// Completion mode cuts the continuation at the first of these.
    pub stop: Vec<String>,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    /// Evaluate only the first N problems (0: all).
    pub limit: usize,
    /// Seconds each program may run (and, separately, compile).
    pub timeout: f64,
    /// Address space of each program, MiB (the JVM, V8 and Go get at least what they
    /// reserve).
    pub memory_mb: u64,
    /// Processes and threads each program may start.
    pub processes: u64,
    /// Programs run at once (0: one per core).
    pub workers: usize,
    /// Samples per problem (more than one needs `temperature` above 0).
    pub samples: usize,
    /// 0: greedy; above 0, sampling from softmax(logits / temperature).
    pub temperature: f64,
    /// Nucleus sampling: the smallest set of likeliest tokens with this much probability.
    pub top_p: f64,
    /// The k of the pass@k reported (each only where k <= samples).
    pub k: Vec<usize>,
    /// `strict`: every sandbox mechanism or fail; `available`: what this machine has.
    pub isolation: Isolation,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mode: Mode::Completion,
            outputs: Outputs::Model,
            languages: vec![Language::Python],
            template: Template::Chatml,
            system: String::new(),
            stop: ["\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```"].map(String::from).to_vec(),
            max_new_tokens: 512,
            batch_size: 16,
            limit: 0,
            timeout: 10.0,
            memory_mb: 2048,
            processes: 32,
            workers: 0,
            samples: 1,
            temperature: 0.0,
            top_p: 0.95,
            k: vec![1, 10, 100],
            isolation: Isolation::Strict,
        }
    }
}

impl Params {
    fn limits(&self) -> Limits {
        Limits {
            time: std::time::Duration::from_secs_f64(self.timeout),
            memory_bytes: self.memory_mb << 20,
            processes: self.processes,
            ..Limits::default()
        }
    }

    fn sandbox(&self) -> Result<Sandbox> {
        Sandbox::probe(self.isolation, self.limits()).map_err(|e| StageError::param("isolation", e.to_string()))
    }
}

impl Stage for EvalCode {
    type Params = Params;
    const KIND: &'static str = "eval.code";
    const VERSION: u32 = 1;
    /// Each sample's stream is seeded by the stage seed (sampling; greedy ignores it).
    const RANDOM: bool = true;
    const ABOUT: &'static str =
        "run model-written code with the problems' tests in a sandbox; pass@1 per language and family";
    const USES_DEVICE: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[
            InputDecl {
                name: "model",
                accepts: Accepts::Files("model"),
                about: "a trained model (none with `outputs: solutions`)",
                optional: true,
            },
            InputDecl {
                name: "tokenizer",
                accepts: Accepts::Files("tokenizer"),
                about: "its tokenizer (none with `outputs: solutions`)",
                optional: true,
            },
            InputDecl {
                name: "data",
                accepts: Accepts::Table(&[
                    ("id", "int64"),
                    ("task_id", "string"),
                    ("family", "string"),
                    ("language", "string"),
                    ("prompt", "string"),
                    ("instruction", "string"),
                    ("canonical_solution", "string"),
                    ("test", "string"),
                ]),
                about: "code problems (`source.code`, `code.generate`)",
                optional: false,
            },
        ]
    }

    fn check(params: &Params) -> Result<()> {
        if params.batch_size == 0 {
            return Err(StageError::param("batch_size", "must be at least 1"));
        }
        if params.max_new_tokens == 0 {
            return Err(StageError::param("max_new_tokens", "must be at least 1"));
        }
        if !(params.timeout > 0.0 && params.timeout <= 3600.0) {
            return Err(StageError::param("timeout", "must be between 0 and 3600 seconds"));
        }
        if params.languages.is_empty() {
            return Err(StageError::param("languages", "name at least one language"));
        }
        if params.samples == 0 {
            return Err(StageError::param("samples", "must be at least 1"));
        }
        if !(params.temperature >= 0.0 && params.temperature.is_finite()) {
            return Err(StageError::param("temperature", "must be 0 (greedy) or above"));
        }
        if params.samples > 1 && params.temperature == 0.0 {
            return Err(StageError::param(
                "temperature",
                "greedy decoding gives the same sample every time: set a temperature above 0 for `samples` > 1",
            ));
        }
        if params.samples > 1 && params.outputs == Outputs::Solutions {
            return Err(StageError::param("samples", "`outputs: solutions` has one solution per problem"));
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(StageError::param("top_p", "must be in (0, 1]"));
        }
        // A missing toolchain is a plan error, not a surprise after hours of generation.
        let sandbox = params.sandbox()?;
        for &language in &params.languages {
            Toolchain::find(language, &sandbox).map_err(|e| StageError::param("languages", e.to_string()))?;
        }
        Ok(())
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        let with_model = inputs.contains_key("model") && inputs.contains_key("tokenizer");
        match params.outputs {
            Outputs::Model if !with_model => {
                return Err(StageError::param(
                    "outputs",
                    "running a model's code needs the inputs `model` and `tokenizer` (or `outputs: solutions` without them)",
                ));
            }
            Outputs::Solutions if inputs.contains_key("model") || inputs.contains_key("tokenizer") => {
                return Err(StageError::param(
                    "outputs",
                    "`solutions` runs the problems' own solutions: give no model",
                ));
            }
            _ => {}
        }
        Ok(vec![OutputDecl::table("samples", standard::code_samples())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let mut problems = read_problems(ctx, params)?;
        if params.limit > 0 {
            problems.truncate(params.limit);
        }
        let sandbox = params.sandbox()?;
        let mechanisms: Vec<&str> = sandbox.mechanisms.list().iter().map(|m| m.name()).collect();
        let executor =
            Executor::new(sandbox, &params.languages).map_err(|e| StageError::param("languages", e.to_string()))?;

        // Sample j of problem i is row i * samples + j.
        let n = params.samples;
        let rows: Vec<(usize, usize)> = (0..problems.len()).flat_map(|i| (0..n).map(move |j| (i, j))).collect();
        let completions: Vec<String> = match params.outputs {
            Outputs::Solutions => rows.iter().map(|&(i, _)| problems[i].2.canonical_solution.clone()).collect(),
            Outputs::Model => generate_completions(params, ctx, &problems, &rows)?,
        };
        let programs: Vec<String> = rows
            .iter()
            .zip(&completions)
            .map(|(&(i, _), c)| match (params.outputs, params.mode) {
                (Outputs::Model, Mode::Chat) => problems[i].2.program_from_answer(c),
                _ => problems[i].2.program(c),
            })
            .collect();

        ctx.progress().start(programs.len() as u64, "programs");
        let progress = ctx.progress();
        let workers = if params.workers == 0 { rayon::current_num_threads() } else { params.workers };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .map_err(|e| StageError::Internal(format!("cannot start {workers} workers: {e}")))?;
        let executions = pool.install(|| {
            rows.par_iter()
                .zip(&programs)
                .map(|(&(i, _), program)| {
                    let p = &problems[i].2;
                    let run =
                        executor.execute(p.language, program).map_err(|e| StageError::data(&p.task_id, e.to_string()));
                    progress.advance(1);
                    run
                })
                .collect::<Result<Vec<_>>>()
        })?;

        let mut writer = ctx.write_table("samples")?;
        let strings = |f: &dyn Fn(usize) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values((0..rows.len()).map(f)))
        };
        let problem = |r: usize| &problems[rows[r].0];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values((0..rows.len()).map(|r| problem(r).0))),
            strings(&|r| problem(r).2.task_id.clone()),
            strings(&|r| problem(r).1.clone()),
            strings(&|r| problem(r).2.language.name().to_string()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|&(_, j)| j as i64))),
            strings(&|r| completions[r].clone()),
            strings(&|r| executions[r].status.name().to_string()),
            strings(&|r| executions[r].stderr.clone()),
            Arc::new(Float64Array::from_iter_values(executions.iter().map(|e| e.seconds))),
        ];
        writer.write_columns(columns)?;
        writer.finish()?;

        // Passes per problem, then the unbiased pass@k averaged over problems.
        let passes: Vec<u64> = (0..problems.len())
            .map(|i| (0..n).filter(|j| executions[i * n + j].status == Status::Passed).count() as u64)
            .collect();
        let mean_pass_at = |k: usize, members: &[usize]| -> f64 {
            let values: Vec<f64> =
                members.iter().filter_map(|&i| pass_at_k::pass_at_k(n as u64, passes[i], k as u64)).collect();
            values.iter().sum::<f64>() / values.len().max(1) as f64
        };
        let everyone: Vec<usize> = (0..problems.len()).collect();
        let by = |key: &dyn Fn(usize) -> String| -> BTreeMap<String, f64> {
            let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for i in 0..problems.len() {
                groups.entry(key(i)).or_default().push(i);
            }
            groups.into_iter().map(|(g, members)| (g, mean_pass_at(1, &members))).collect()
        };
        let per_language = by(&|i| problems[i].2.language.name().to_string());
        let per_family = by(&|i| problems[i].1.clone());
        let mut statuses: BTreeMap<&str, usize> = Status::ALL.iter().map(|s| (s.name(), 0)).collect();
        for e in &executions {
            *statuses.entry(e.status.name()).or_default() += 1;
        }
        let pass_at_1 = mean_pass_at(1, &everyone);
        let mut report = StageReport::default()
            .metric("mode", params.mode)
            .metric("problems", problems.len())
            .metric("samples", executions.len())
            .metric("samples_per_problem", n)
            .metric("pass@1", pass_at_1);
        // pass@k only where it is defined: k <= n.
        let mut reported = vec![format!("pass@1 {}", crate::stage::percent(pass_at_1))];
        for &k in params.k.iter().filter(|&&k| k > 1 && k <= n) {
            let value = mean_pass_at(k, &everyone);
            report = report.metric(&format!("pass@{k}"), value);
            reported.push(format!("pass@{k} {}", crate::stage::percent(value)));
        }
        let percent = crate::stage::percent;
        let families_line: Vec<String> = per_family.iter().map(|(f, a)| format!("{f} {}", percent(*a))).collect();
        let scored = match params.outputs {
            Outputs::Model => "",
            Outputs::Solutions => " (canonical solutions)",
        };
        Ok(report
            .metric("pass@1_per_language", &per_language)
            .metric("pass@1_per_family", &per_family)
            .metric("statuses", &statuses)
            .metric("isolation", &mechanisms)
            .summary(format!(
                "{} on {} problems{scored} ({})",
                reported.join(", "),
                problems.len(),
                families_line.join(", ")
            )))
    }
}

/// The input's problems with their ids; a language outside `languages` is an error.
fn read_problems(ctx: &StageContext, params: &Params) -> Result<Vec<(i64, String, CodeProblem)>> {
    let mut problems = Vec::new();
    for batch in ctx.table("data")?.batches() {
        let batch = batch?;
        let c = Columns::new(&batch);
        let (ids, task_ids, languages) = (c.i64s("id")?, c.strings("task_id")?, c.strings("language")?);
        let (prompts, instructions) = (c.strings("prompt")?, c.strings("instruction")?);
        let (solutions, tests) = (c.strings("canonical_solution")?, c.strings("test")?);
        let entry_points = c.strings("entry_point").ok();
        let families = c.strings("family")?;
        for r in 0..batch.num_rows() {
            let language =
                Language::parse(languages.value(r)).filter(|l| params.languages.contains(l)).ok_or_else(|| {
                    StageError::param(
                        "languages",
                        format!(
                            "problem {} is in `{}`, which is not among the stage's languages",
                            task_ids.value(r),
                            languages.value(r)
                        ),
                    )
                })?;
            problems.push((
                ids.value(r),
                families.value(r).to_string(),
                CodeProblem {
                    task_id: task_ids.value(r).to_string(),
                    language,
                    prompt: prompts.value(r).to_string(),
                    instruction: instructions.value(r).to_string(),
                    entry_point: entry_points.map_or(String::new(), |e| e.value(r).to_string()),
                    canonical_solution: solutions.value(r).to_string(),
                    test: tests.value(r).to_string(),
                },
            ));
        }
    }
    Ok(problems)
}

/// The model's completions: the prompt continued up to a stop sequence (completion
/// mode) or the answer to the instruction (chat mode).
fn generate_completions(
    params: &Params,
    ctx: &StageContext,
    problems: &[(i64, String, CodeProblem)],
    rows: &[(usize, usize)],
) -> Result<Vec<String>> {
    let prompts: Vec<String> = rows
        .iter()
        .map(|&(i, _)| &problems[i].2)
        .map(|p| match params.mode {
            Mode::Completion => p.prompt.clone(),
            Mode::Chat => {
                let mut messages = Vec::new();
                if !params.system.is_empty() {
                    messages.push(Message::new("system", &params.system));
                }
                messages.push(Message::new("user", &p.instruction));
                params.template.prompt(&messages)
            }
        })
        .collect();
    // Each sample's own stream: the stage seed, the problem's id and the sample index.
    let seeds: Vec<u64> = rows
        .iter()
        .map(|&(i, j)| {
            let key = format!("{}/{}/{j}", ctx.seed, problems[i].0);
            u64::from_le_bytes(blake3::hash(key.as_bytes()).as_bytes()[..8].try_into().expect("8 bytes"))
        })
        .collect();
    let decoding = if params.temperature > 0.0 {
        generate::Decoding::Sample { temperature: params.temperature as f32, top_p: params.top_p as f32 }
    } else {
        generate::Decoding::Greedy
    };
    let outputs = texts::generate_texts(
        ctx,
        params.template,
        &prompts,
        match params.mode {
            Mode::Completion => &params.stop,
            Mode::Chat => &[],
        },
        params.max_new_tokens,
        params.batch_size,
        decoding,
        &seeds,
    )?;
    Ok(outputs
        .iter()
        .map(|o| match params.mode {
            Mode::Completion => cut_at_stop(&o.text, &params.stop).to_string(),
            Mode::Chat => fenced_code(&o.text).to_string(),
        })
        .collect())
}

/// The text before the first stop sequence.
pub fn cut_at_stop<'a>(text: &'a str, stops: &[String]) -> &'a str {
    let end = stops.iter().filter_map(|s| text.find(s.as_str())).min().unwrap_or(text.len());
    &text[..end]
}

/// The code of the first fenced block (```lang … ```), or the whole answer without one.
pub fn fenced_code(answer: &str) -> &str {
    let Some(open) = answer.find("```") else { return answer };
    let after = &answer[open + 3..];
    let body = after.find('\n').map_or("", |n| &after[n + 1..]);
    match body.find("```") {
        Some(close) => &body[..close],
        None => body,
    }
}

#[cfg(test)]
mod tests;
