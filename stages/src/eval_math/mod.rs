//! `eval.math`: greedy decoding of a trained model on held-out problems, scored as each
//! benchmark's harness scores it (`format`: GSM8K's exact match after `#### `, MATH's
//! last `\boxed{}` with LaTeX equivalence, Math401's last number within 1e-3, Math23K's
//! number, fraction or percentage), overall, per family and, where the problems have
//! one, per level.
//!
//! With `outputs: solutions` the stage scores each problem's own solution as if a model
//! had written it, without a model: the check that extraction and comparison agree with
//! a benchmark's reference answers (every one should be right).
//!
//! Prompts are rendered with the same template and system message as training chats
//! (the parameters default to `chat.format`'s). Batches decode in parallel; each batch
//! is deterministic, so the predictions are too.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::math::format::Format;
use crate::model::generate::Decoding;
use crate::model::texts;
use crate::schema::standard;
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport, percent};
use crate::table::Columns;
use crate::template::{Message, Template};

pub struct EvalMath;

/// What is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outputs {
    /// The model's greedy outputs (inputs `model` and `tokenizer`).
    #[default]
    Model,
    /// Each problem's own solution, as if a model had written it (no model).
    Solutions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// How answers are extracted and compared: gsm8k, math, math401, math23k.
    pub format: Format,
    pub outputs: Outputs,
    pub template: Template,
    /// The system message; empty for none.
    pub system: String,
    /// The column holding the question.
    pub question: String,
    /// The column holding the gold answer.
    pub answer: String,
    pub max_new_tokens: usize,
    /// Problems decoded together.
    pub batch_size: usize,
    /// Evaluate only the first N problems (0: all).
    pub limit: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            format: Format::Gsm8k,
            outputs: Outputs::Model,
            template: Template::Chatml,
            system: crate::template::MATH_SYSTEM.into(),
            question: "question".into(),
            answer: "answer".into(),
            max_new_tokens: 256,
            batch_size: 32,
            limit: 0,
        }
    }
}

struct Problem {
    id: i64,
    family: String,
    level: Option<String>,
    question: String,
    solution: Option<String>,
    gold: String,
}

impl Stage for EvalMath {
    type Params = Params;
    const KIND: &'static str = "eval.math";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "greedy decoding scored as the benchmark's harness does (gsm8k, math, math401, math23k), per family and level";
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
                accepts: Accepts::Table(&[("id", "int64"), ("family", "string")]),
                about: "problems with question and answer columns",
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
        Ok(())
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        let with_model = inputs.contains_key("model") && inputs.contains_key("tokenizer");
        match params.outputs {
            Outputs::Model if !with_model => {
                return Err(StageError::param(
                    "outputs",
                    "scoring a model needs the inputs `model` and `tokenizer` (or `outputs: solutions` without them)",
                ));
            }
            Outputs::Solutions if inputs.contains_key("model") || inputs.contains_key("tokenizer") => {
                return Err(StageError::param(
                    "outputs",
                    "`solutions` scores the problems' own solutions: give no model",
                ));
            }
            _ => {}
        }
        if let Some(Artifact::Table(schema)) = inputs.get("data") {
            let solution = String::from("solution");
            let mut columns = vec![("question", &params.question), ("answer", &params.answer)];
            if params.outputs == Outputs::Solutions {
                columns.push(("outputs", &solution));
            }
            for (path, column) in columns {
                match schema.column(column) {
                    Some(c) if c.ty.data == DataType::Utf8 => {}
                    _ => {
                        return Err(StageError::param(
                            path,
                            format!("the input table `{}` has no string column `{column}`", schema.name),
                        ));
                    }
                }
            }
        }
        Ok(vec![OutputDecl::table("predictions", standard::predictions())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let mut problems = Vec::new();
        for batch in ctx.table("data")?.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, families) = (cols.i64s("id")?, cols.strings("family")?);
            let (questions, answers) = (cols.strings(&params.question)?, cols.strings(&params.answer)?);
            let levels = cols.strings("level").ok();
            let solutions = match params.outputs {
                Outputs::Solutions => Some(cols.strings("solution")?),
                Outputs::Model => None,
            };
            for r in 0..batch.num_rows() {
                problems.push(Problem {
                    id: ids.value(r),
                    family: families.value(r).to_string(),
                    level: levels.map(|l| l.value(r).to_string()),
                    question: questions.value(r).to_string(),
                    solution: solutions.map(|s| s.value(r).to_string()),
                    gold: answers.value(r).to_string(),
                });
            }
        }
        if params.limit > 0 {
            problems.truncate(params.limit);
        }
        let prompts: Vec<String> = problems
            .iter()
            .map(|p| {
                let mut messages = Vec::new();
                if !params.system.is_empty() {
                    messages.push(Message::new("system", &params.system));
                }
                messages.push(Message::new("user", &p.question));
                params.template.prompt(&messages)
            })
            .collect();
        let (texts, unfinished, mean_tokens) = match params.outputs {
            Outputs::Model => generate_outputs(params, ctx, &prompts)?,
            Outputs::Solutions => {
                ctx.progress().start(problems.len() as u64, "problems");
                ctx.progress().advance(problems.len() as u64);
                (problems.iter().map(|p| p.solution.clone().unwrap_or_default()).collect(), 0, 0.0)
            }
        };

        let format = params.format;
        let strict: Vec<Option<String>> = texts.iter().map(|t| format.extract(t)).collect();
        let flexible: Vec<Option<String>> = texts.iter().map(|t| format.extract_flexible(t)).collect();
        let judge = |extracted: &[Option<String>]| -> Vec<bool> {
            extracted
                .iter()
                .zip(&problems)
                .map(|(e, p)| e.as_deref().is_some_and(|e| format.same(e, &p.gold)))
                .collect()
        };
        let (correct, correct_flexible) = (judge(&strict), judge(&flexible));

        let mut writer = ctx.write_table("predictions")?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(problems.iter().map(|p| p.id))),
            Arc::new(StringArray::from_iter_values(problems.iter().map(|p| &p.family))),
            Arc::new(StringArray::from(problems.iter().map(|p| p.level.clone()).collect::<Vec<_>>())),
            Arc::new(StringArray::from_iter_values(&prompts)),
            Arc::new(StringArray::from_iter_values(&texts)),
            Arc::new(StringArray::from(strict.clone())),
            Arc::new(StringArray::from(flexible)),
            Arc::new(StringArray::from_iter_values(problems.iter().map(|p| &p.gold))),
            Arc::new(BooleanArray::from(correct.clone())),
            Arc::new(BooleanArray::from(correct_flexible.clone())),
        ];
        writer.write_columns(columns)?;
        writer.finish()?;

        let n = problems.len().max(1) as f64;
        let accuracy = correct.iter().filter(|&&c| c).count() as f64 / n;
        let accuracy_flexible = correct_flexible.iter().filter(|&&c| c).count() as f64 / n;
        let per_family = accuracy_by(problems.iter().map(|p| p.family.as_str()), &correct);
        let per_level = accuracy_by(problems.iter().filter_map(|p| p.level.as_deref()), &correct);
        let families: Vec<String> = per_family.iter().map(|(f, a)| format!("{f} {}", percent(*a))).collect();
        let mut report = StageReport::default()
            .metric("format", format.name())
            .metric("problems", problems.len())
            .metric("accuracy", accuracy)
            .metric("accuracy_flexible", accuracy_flexible)
            .metric("accuracy_per_family", &per_family)
            .metric("mean_new_tokens", mean_tokens)
            .metric("unfinished", unfinished);
        if !per_level.is_empty() {
            report = report.metric("accuracy_per_level", &per_level);
        }
        let scored = match params.outputs {
            Outputs::Model => "",
            Outputs::Solutions => " (the problems' own solutions)",
        };
        Ok(report.summary(format!(
            "accuracy {} on {} problems{scored} ({})",
            percent(accuracy),
            problems.len(),
            families.join(", ")
        )))
    }
}

/// Accuracy per group (family or level), the groups in order.
fn accuracy_by<'a>(groups: impl Iterator<Item = &'a str>, correct: &[bool]) -> BTreeMap<&'a str, f64> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (group, &c) in groups.zip(correct) {
        let entry = counts.entry(group).or_default();
        entry.0 += c as usize;
        entry.1 += 1;
    }
    counts.into_iter().map(|(g, (c, t))| (g, c as f64 / t as f64)).collect()
}

/// The model's greedy outputs for the prompts, how many ran out of tokens, and the mean
/// number of new tokens.
fn generate_outputs(params: &Params, ctx: &StageContext, prompts: &[String]) -> Result<(Vec<String>, usize, f64)> {
    let outputs = texts::generate_texts(
        ctx,
        params.template,
        prompts,
        &[],
        params.max_new_tokens,
        params.batch_size,
        Decoding::Greedy,
        &[],
    )?;
    let unfinished = outputs.iter().filter(|o| o.tokens >= params.max_new_tokens).count();
    let mean_tokens = outputs.iter().map(|o| o.tokens).sum::<usize>() as f64 / outputs.len().max(1) as f64;
    Ok((outputs.into_iter().map(|o| o.text).collect(), unfinished, mean_tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_named() {
        let p = Params { batch_size: 0, ..Params::default() };
        assert!(matches!(EvalMath::check(&p), Err(StageError::Param { path, .. }) if path == "batch_size"));
        let data = ("data".to_string(), Artifact::Table(standard::problems().clone()));
        let model =
            [("model".to_string(), Artifact::Files("model")), ("tokenizer".into(), Artifact::Files("tokenizer"))];
        let with_model: InputArtifacts = model.iter().cloned().chain([data.clone()]).collect();
        let p = Params { answer: "gold".into(), ..Params::default() };
        assert!(matches!(EvalMath::outputs(&p, &with_model), Err(StageError::Param { path, .. }) if path == "answer"));
        let without: InputArtifacts = [data].into_iter().collect();
        let is_outputs =
            |r: Result<Vec<OutputDecl>>| matches!(r, Err(StageError::Param { path, .. }) if path == "outputs");
        assert!(is_outputs(EvalMath::outputs(&Params::default(), &without)), "a model needs its inputs");
        let solutions = Params { outputs: Outputs::Solutions, ..Params::default() };
        assert!(is_outputs(EvalMath::outputs(&solutions, &with_model)), "solutions take no model");
        assert!(EvalMath::outputs(&solutions, &without).is_ok());
    }

    #[test]
    fn percentages_are_printed_alike() {
        assert_eq!(percent(0.003), "0.3%");
        assert_eq!(percent(0.883), "88.3%");
        assert_eq!(percent(1.0), "100.0%");
    }

    #[test]
    fn prompts_default_to_the_chat_format_system_message() {
        assert_eq!(Params::default().system, crate::template::MATH_SYSTEM);
    }
}
