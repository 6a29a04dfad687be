//! `tokenize`: token ids and a per-token loss mask derived from the conversation's roles.
//!
//! The mask comes from byte offsets: a token is trained when it starts inside the span of
//! a turn whose role is in `train_on` (the span is the content and the end-of-turn token,
//! see `template`). Turns are never tokenized separately, which would split tokens
//! differently at their boundaries than the model will see them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, StructArray};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::{Columns, build};
use crate::tokenizer_train::{self, tok_err};

pub struct Tokenize;

/// What to do with a conversation in which no token is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Untrained {
    /// Fail the stage, naming the conversation.
    Error,
    /// Leave it out and count it in the stage's metrics.
    Drop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Roles whose turns carry loss; the report's recipe masks system and user.
    pub train_on: Vec<String>,
    pub untrained: Untrained,
}

impl Default for Params {
    fn default() -> Self {
        Params { train_on: vec!["assistant".into()], untrained: Untrained::Error }
    }
}

impl Stage for Tokenize {
    type Params = Params;
    const KIND: &'static str = "tokenize";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "token ids and a loss mask by role (train_on: [assistant])";

    fn inputs() -> &'static [InputDecl] {
        &[
            InputDecl {
                name: "data",
                accepts: Accepts::Table(&[
                    ("id", "int64"),
                    ("text", "string"),
                    ("turns", "list<struct<role:string,start:int32,end:int32>>"),
                ]),
                about: "conversations from chat.format",
            },
            InputDecl { name: "tokenizer", accepts: Accepts::Files("tokenizer"), about: "the tokenizer" },
        ]
    }

    fn check(params: &Params) -> Result<()> {
        if params.train_on.is_empty() {
            return Err(StageError::param("train_on", "name at least one role to train on"));
        }
        for (i, role) in params.train_on.iter().enumerate() {
            if !["system", "user", "assistant"].contains(&role.as_str()) {
                return Err(StageError::param(
                    format!("train_on[{i}]"),
                    format!("unknown role `{role}`; roles are system, user, assistant"),
                ));
            }
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::table("tokens", standard::tokens())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let tokenizer = tokenizer_train::load(ctx.files("tokenizer")?)?;
        let input = ctx.table("data")?;
        let origin = ctx.input("data")?.origin.clone();
        ctx.progress().start(input.num_rows()? as u64, "rows");
        let mut writer = ctx.write_table("tokens")?;
        let (mut rows, mut dropped, mut tokens, mut trained) = (0usize, 0usize, 0usize, 0usize);
        for batch in input.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, texts, turns) = (cols.i64s("id")?, cols.strings("text")?, cols.lists("turns")?);
            let encoded: Vec<(Vec<i32>, Vec<bool>)> = (0..batch.num_rows())
                .into_par_iter()
                .map(|i| {
                    let spans = trained_spans(&turns.value(i), &params.train_on)?;
                    let enc = tokenizer.encode(texts.value(i), false).map_err(tok_err)?;
                    let ids: Vec<i32> = enc.get_ids().iter().map(|&t| t as i32).collect();
                    let mask: Vec<bool> = enc
                        .get_offsets()
                        .iter()
                        .map(|&(start, _)| spans.iter().any(|&(s, e)| start >= s && start < e))
                        .collect();
                    Ok((ids, mask))
                })
                .collect::<Result<_>>()?;
            let mut keep = Vec::with_capacity(encoded.len());
            for (i, (_, mask)) in encoded.iter().enumerate() {
                let ok = mask.iter().any(|&m| m);
                if !ok && params.untrained == Untrained::Error {
                    return Err(StageError::data(
                        format!("{origin}: id {}", ids.value(i)),
                        format!(
                            "no token is trained (train_on: {:?}); set `untrained: drop` to leave such conversations out",
                            params.train_on
                        ),
                    ));
                }
                keep.push(ok);
            }
            let kept: Vec<usize> = (0..encoded.len()).filter(|&i| keep[i]).collect();
            dropped += encoded.len() - kept.len();
            let n_tokens: Vec<i32> = kept.iter().map(|&i| encoded[i].0.len() as i32).collect();
            let n_trained: Vec<i32> =
                kept.iter().map(|&i| encoded[i].1.iter().filter(|&&m| m).count() as i32).collect();
            tokens += n_tokens.iter().map(|&n| n as usize).sum::<usize>();
            trained += n_trained.iter().map(|&n| n as usize).sum::<usize>();
            rows += kept.len();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(kept.iter().map(|&i| ids.value(i)))),
                build::list_i32(kept.iter().map(|&i| encoded[i].0.as_slice())),
                build::list_bool(kept.iter().map(|&i| encoded[i].1.as_slice())),
                Arc::new(Int32Array::from(n_tokens)),
                Arc::new(Int32Array::from(n_trained)),
            ];
            writer.write_columns(columns)?;
            ctx.progress().advance(batch.num_rows() as u64);
        }
        writer.finish()?;
        Ok(StageReport::default()
            .metric("sequences", rows)
            .metric("dropped_untrained", dropped)
            .metric("tokens", tokens)
            .metric("trained_tokens", trained)
            .summary(format!(
                "{rows} sequences, {tokens} tokens ({:.1}% trained)",
                100.0 * trained as f64 / tokens.max(1) as f64
            )))
    }
}

/// The byte ranges of the turns whose role is trained.
fn trained_spans(turns: &Arc<dyn Array>, train_on: &[String]) -> Result<Vec<(usize, usize)>> {
    let turns = turns
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| StageError::Internal("turns is not a list of structs".into()))?;
    let cols = |name: &str| turns.column_by_name(name).cloned();
    let roles = cols("role").ok_or_else(|| StageError::Internal("turns has no role".into()))?;
    let roles = roles.as_any().downcast_ref::<arrow::array::StringArray>().expect("declared string");
    let starts = cols("start").ok_or_else(|| StageError::Internal("turns has no start".into()))?;
    let starts = starts.as_any().downcast_ref::<Int32Array>().expect("declared int32");
    let ends = cols("end").ok_or_else(|| StageError::Internal("turns has no end".into()))?;
    let ends = ends.as_any().downcast_ref::<Int32Array>().expect("declared int32");
    Ok((0..turns.len())
        .filter(|&i| train_on.iter().any(|r| r == roles.value(i)))
        .map(|i| (starts.value(i) as usize, ends.value(i) as usize))
        .collect())
}
