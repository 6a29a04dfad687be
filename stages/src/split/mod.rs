//! `split`: a deterministic train/eval split by hash of a key column.
//!
//! A row goes to `eval` when the hash of its key falls below `eval_fraction`, so the
//! same key lands on the same side in every run, at every dataset size, whatever the
//! seed: an eval item never leaks into training when the data grows.

use arrow::array::{Array, BooleanArray, Int64Array, StringArray};
use arrow::compute::{filter_record_batch, not};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct Split;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Share of rows that go to `eval`, in (0, 1).
    pub eval_fraction: f64,
    /// The column whose value decides the side (string or int64).
    pub by: String,
}

impl Default for Params {
    fn default() -> Self {
        Params { eval_fraction: 0.02, by: "question".into() }
    }
}

/// Whether a key falls on the eval side.
pub fn is_eval(key: &[u8], eval_fraction: f64) -> bool {
    let hash = blake3::hash(key);
    let head = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    (head as f64) < eval_fraction * (u64::MAX as f64)
}

impl Stage for Split {
    type Params = Params;
    const KIND: &'static str = "split";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "deterministic train/eval split by hash of a key column";

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl { name: "data", accepts: Accepts::Table(&[]), about: "the table to split", optional: false }]
    }

    fn check(params: &Params) -> Result<()> {
        if !(params.eval_fraction > 0.0 && params.eval_fraction < 1.0) {
            return Err(StageError::param(
                "eval_fraction",
                format!("must be between 0 and 1 (exclusive), got {}", params.eval_fraction),
            ));
        }
        Ok(())
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        let Some(Artifact::Table(schema)) = inputs.get("data") else {
            return Err(StageError::Internal("split has no table input".into()));
        };
        match schema.column(&params.by) {
            Some(c) if matches!(c.ty.data, DataType::Utf8 | DataType::Int64) => {}
            Some(c) => {
                return Err(StageError::param(
                    "by",
                    format!("column `{}` is {}; split by a string or int64 column", c.name, c.ty),
                ));
            }
            None => {
                let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
                return Err(StageError::param(
                    "by",
                    format!(
                        "the input table `{}` has no column `{}` (it has {})",
                        schema.name,
                        params.by,
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(vec![OutputDecl::table("train", schema), OutputDecl::table("eval", schema)])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let input = ctx.table("data")?;
        ctx.progress().start(input.num_rows()? as u64, "rows");
        let mut train = ctx.write_table("train")?;
        let mut eval = ctx.write_table("eval")?;
        for batch in input.batches() {
            let batch = batch?;
            let column = batch
                .column_by_name(&params.by)
                .ok_or_else(|| StageError::Internal(format!("no column `{}`", params.by)))?;
            let mask: BooleanArray = if let Some(s) = column.as_any().downcast_ref::<StringArray>() {
                s.iter().map(|v| Some(is_eval(v.unwrap_or("").as_bytes(), params.eval_fraction))).collect()
            } else if let Some(n) = column.as_any().downcast_ref::<Int64Array>() {
                n.iter().map(|v| Some(is_eval(v.unwrap_or(0).to_string().as_bytes(), params.eval_fraction))).collect()
            } else {
                return Err(StageError::Internal(format!("column `{}` has an unsupported type", params.by)));
            };
            eval.write(&filter_record_batch(&batch, &mask)?)?;
            train.write(&filter_record_batch(&batch, &not(&mask)?)?)?;
            ctx.progress().advance(batch.num_rows() as u64);
        }
        let (train_rows, eval_rows) = (train.finish()?, eval.finish()?);
        Ok(StageReport::default()
            .metric("train_rows", train_rows)
            .metric("eval_rows", eval_rows)
            .summary(format!("{train_rows} train, {eval_rows} eval")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eval_share_is_close_to_the_fraction() {
        let n = 20_000;
        let eval = (0..n).filter(|i| is_eval(format!("q{i}").as_bytes(), 0.1)).count();
        let share = eval as f64 / n as f64;
        assert!((share - 0.1).abs() < 0.01, "{share}");
    }

    #[test]
    fn a_fraction_outside_0_1_is_named() {
        let p = Params { eval_fraction: 1.5, ..Params::default() };
        match Split::check(&p) {
            Err(StageError::Param { path, .. }) => assert_eq!(path, "eval_fraction"),
            other => panic!("{other:?}"),
        }
    }
}
