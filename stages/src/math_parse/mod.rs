//! `math.parse`: records holding a question and a GSM8K-format solution become problems
//! (the standard `problems` table): the final answer is read from `#### N`, and the
//! calculator annotations are checked and counted.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::math::gsm8k;
use crate::records::{OnBadRecord, Skipped};
use crate::schema::standard;
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;

pub struct MathParse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Step-by-step prose with `<<a*b=c>>` annotations and a last line `#### N`.
    #[default]
    Gsm8k,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub format: Format,
    /// The column holding the question.
    pub question: String,
    /// The column holding the solution.
    pub solution: String,
    /// The family every problem gets.
    pub family: String,
    pub on_bad_record: OnBadRecord,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            format: Format::Gsm8k,
            question: "question".into(),
            solution: "answer".into(),
            family: "gsm8k".into(),
            on_bad_record: OnBadRecord::Error,
        }
    }
}

impl Stage for MathParse {
    type Params = Params;
    const KIND: &'static str = "math.parse";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "question and GSM8K-format solution -> problems (final answer from #### N)";

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[("id", "int64")]),
            about: "records with a question and a solution column",
            optional: false,
        }]
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        if let Some(Artifact::Table(schema)) = inputs.get("data") {
            for (path, column) in [("question", &params.question), ("solution", &params.solution)] {
                if schema.column(column).is_none_or(|c| c.ty.data != DataType::Utf8) {
                    return Err(StageError::param(
                        path,
                        format!("the input table `{}` has no string column `{column}`", schema.name),
                    ));
                }
            }
        }
        Ok(vec![OutputDecl::table("problems", standard::problems())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let input = ctx.table("data")?;
        let origin = ctx.input("data")?.origin.clone();
        ctx.progress().start(input.num_rows()? as u64, "records");
        let mut writer = ctx.write_table("problems")?;
        let mut skipped = Skipped::default();
        let (mut problems, mut annotated, mut annotations, mut verified, mut all_verified) = (0, 0, 0, 0, 0);
        for batch in input.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, questions, solutions) =
                (cols.i64s("id")?, cols.strings(&params.question)?, cols.strings(&params.solution)?);
            let mut keep = Vec::new();
            for i in 0..batch.num_rows() {
                match gsm8k::parse(solutions.value(i)) {
                    Ok(parsed) => {
                        let ok = parsed.annotations.iter().filter(|a| a.verifies()).count();
                        annotated += !parsed.annotations.is_empty() as usize;
                        annotations += parsed.annotations.len();
                        verified += ok;
                        all_verified += (!parsed.annotations.is_empty() && ok == parsed.annotations.len()) as usize;
                        keep.push((i, parsed.answer.value.to_decimal()));
                    }
                    Err(e) => skipped.bad(
                        params.on_bad_record,
                        StageError::data(
                            format!("{origin}: id {}", ids.value(i)),
                            format!("field `{}`: {e}", params.solution),
                        ),
                    )?,
                }
            }
            problems += keep.len();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(keep.iter().map(|&(i, _)| ids.value(i)))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|_| params.family.as_str()))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|&(i, _)| questions.value(i)))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|&(i, _)| solutions.value(i)))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|(_, a)| a.as_str()))),
            ];
            writer.write_columns(columns)?;
            ctx.progress().advance(batch.num_rows() as u64);
        }
        writer.finish()?;
        Ok(StageReport::default()
            .metric("problems", problems)
            .metric("skipped", skipped.count)
            .metric("skipped_examples", &skipped.examples)
            .metric("with_annotations", annotated)
            .metric("annotations", annotations)
            .metric("annotations_verified", verified)
            .metric("fully_verified", all_verified)
            .summary(format!(
                "{problems} problems ({} skipped), {annotated} annotated, {verified} of {annotations} annotations verify",
                skipped.count
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records;
    use crate::testing;

    #[test]
    fn solutions_give_final_answers_and_bad_ones_follow_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let fields =
            [("question".to_string(), "q".to_string()), ("answer".to_string(), "a".to_string())].into_iter().collect();
        let input = testing::write_table(
            &dir.path().join("in"),
            &records::schema(&fields),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["Q1", "Q2", "Q3"])),
                Arc::new(StringArray::from(vec!["2*3=<<2*3=6>>6\n#### 6", "no answer here", "<<1+1=3>>3\n#### 1,003"])),
            ],
        );
        let err = testing::run::<MathParse>("", vec![("data", input.clone())], &dir.path().join("a"), 0).unwrap_err();
        assert!(err.to_string().contains("id 2: field `answer`: no final answer"), "{err}");
        let report =
            testing::run::<MathParse>("{ on_bad_record: skip }", vec![("data", input)], &dir.path().join("b"), 0)
                .unwrap();
        assert_eq!(report.metrics["problems"], 2);
        assert_eq!(
            (report.metrics["annotations"].as_u64(), report.metrics["annotations_verified"].as_u64()),
            (Some(2), Some(1))
        );
        let batches = testing::read(&dir.path().join("b/problems"));
        let c = Columns::new(&batches[0]);
        assert_eq!(c.strings("answer").unwrap().value(1), "1003");
        assert_eq!(c.strings("family").unwrap().value(0), "gsm8k");
    }
}
