//! `eval.math`: greedy decoding of a trained model on held-out problems, scored as
//! GSM8K is scored: exact match of the extracted answer, overall and per family.
//!
//! Prompts are rendered with the same template and system message as training chats
//! (the parameters default to `chat.format`'s). Batches decode in parallel; each batch
//! is deterministic, so the predictions are too.

pub mod extract;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
use arrow::datatypes::DataType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::model::{checkpoint, generate};
use crate::schema::standard;
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;
use crate::template::{Message, Template};
use crate::tokenizer_train::{self, tok_err};

pub struct EvalMath;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
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
            template: Template::Chatml,
            system: crate::chat_format::Params::default().system,
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
    question: String,
    gold: String,
}

impl Stage for EvalMath {
    type Params = Params;
    const KIND: &'static str = "eval.math";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "greedy decoding and GSM8K-style exact-match scoring, per family";
    const USES_DEVICE: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[
            InputDecl { name: "model", accepts: Accepts::Files("model"), about: "a trained model", optional: false },
            InputDecl {
                name: "tokenizer",
                accepts: Accepts::Files("tokenizer"),
                about: "its tokenizer",
                optional: false,
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
        if let Some(Artifact::Table(schema)) = inputs.get("data") {
            for (path, column) in [("question", &params.question), ("answer", &params.answer)] {
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
        let model = checkpoint::load(ctx.files("model")?)?;
        let tokenizer = tokenizer_train::load(ctx.files("tokenizer")?)?;
        let stop_token = params.template.end_of_turn();
        let stop = tokenizer
            .token_to_id(stop_token)
            .ok_or_else(|| StageError::Tokenizer(format!("the tokenizer has no `{stop_token}` token")))?;
        let mut problems = Vec::new();
        for batch in ctx.table("data")?.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, families) = (cols.i64s("id")?, cols.strings("family")?);
            let (questions, answers) = (cols.strings(&params.question)?, cols.strings(&params.answer)?);
            for r in 0..batch.num_rows() {
                problems.push(Problem {
                    id: ids.value(r),
                    family: families.value(r).to_string(),
                    question: questions.value(r).to_string(),
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
        let encoded: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| Ok(tokenizer.encode(p.as_str(), false).map_err(tok_err)?.get_ids().to_vec()))
            .collect::<Result<_>>()?;

        ctx.progress().start(problems.len() as u64, "problems");
        let progress = ctx.progress();
        let outputs: Vec<Vec<u32>> = encoded
            .par_chunks(params.batch_size)
            .map(|batch| {
                let out = generate::greedy(&model, batch, stop, params.max_new_tokens)?;
                progress.advance(batch.len() as u64);
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();

        let texts: Vec<String> =
            outputs.iter().map(|o| tokenizer.decode(o, false).map_err(tok_err)).collect::<Result<_>>()?;
        let strict: Vec<Option<String>> = texts.iter().map(|t| extract::strict(t)).collect();
        let flexible: Vec<Option<String>> = texts.iter().map(|t| extract::flexible(t)).collect();
        let correct: Vec<bool> = strict
            .iter()
            .zip(&problems)
            .map(|(e, p)| e.as_deref().is_some_and(|e| extract::same_answer(e, &p.gold)))
            .collect();
        let correct_flexible: Vec<bool> = flexible
            .iter()
            .zip(&problems)
            .map(|(e, p)| e.as_deref().is_some_and(|e| extract::same_answer(e, &p.gold)))
            .collect();

        let mut writer = ctx.write_table("predictions")?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(problems.iter().map(|p| p.id))),
            Arc::new(StringArray::from_iter_values(problems.iter().map(|p| &p.family))),
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
        let mut per_family: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (p, &c) in problems.iter().zip(&correct) {
            let entry = per_family.entry(&p.family).or_default();
            entry.0 += c as usize;
            entry.1 += 1;
        }
        let family_accuracy: BTreeMap<&str, f64> =
            per_family.iter().map(|(f, (c, t))| (*f, *c as f64 / *t as f64)).collect();
        let unfinished = outputs.iter().filter(|o| o.len() >= params.max_new_tokens).count();
        let mean_tokens = outputs.iter().map(Vec::len).sum::<usize>() as f64 / n;
        let families: Vec<String> = family_accuracy.iter().map(|(f, a)| format!("{f} {:.0}%", 100.0 * a)).collect();
        Ok(StageReport::default()
            .metric("problems", problems.len())
            .metric("accuracy", accuracy)
            .metric("accuracy_flexible", accuracy_flexible)
            .metric("accuracy_per_family", &family_accuracy)
            .metric("mean_new_tokens", mean_tokens)
            .metric("unfinished", unfinished)
            .summary(format!(
                "accuracy {:.1}% on {} problems ({})",
                100.0 * accuracy,
                problems.len(),
                families.join(", ")
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_named() {
        let p = Params { batch_size: 0, ..Params::default() };
        assert!(matches!(EvalMath::check(&p), Err(StageError::Param { path, .. }) if path == "batch_size"));
        let inputs = [("data".to_string(), Artifact::Table(standard::problems().clone()))].into_iter().collect();
        let p = Params { answer: "gold".into(), ..Params::default() };
        assert!(matches!(EvalMath::outputs(&p, &inputs), Err(StageError::Param { path, .. }) if path == "answer"));
    }

    #[test]
    fn prompts_default_to_the_chat_format_system_message() {
        assert_eq!(Params::default().system, crate::chat_format::Params::default().system);
    }
}
