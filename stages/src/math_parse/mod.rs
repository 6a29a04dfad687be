//! `math.parse`: records of a math benchmark, in its own format, become problems (the
//! standard `problems` table; MATH's keep their level): the question, a solution that ends
//! in the gold answer the way the format writes it, and the gold answer read as the
//! format's harness reads it. GSM8K: the answer after `#### `, every calculator
//! annotation read and checked (one kiln cannot evaluate is counted, never a reason to
//! drop the problem); MATH: the last `\boxed{}`; Math401: the response; Math23K: the
//! `ans`, with its equation evaluated and checked against it.
//!
//! A record whose gold answer cannot be read is an error naming its origin and field,
//! or with `on_bad_record: skip` a counted skip.

pub mod math401;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::math::expr::Expr;
use crate::math::format::{Format, MATH23K_TOLERANCE};
use crate::math::{answer, gsm8k, latex};
use crate::records::{OnBadRecord, Skipped};
use crate::schema::{TableSchema, standard};
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;

pub struct MathParse;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The format of the records; its fields must be columns of the input (map them in
    /// the source's `fields`): gsm8k `question`, `answer`; math `problem`, `solution`,
    /// `level`, `type`; math401 `query`, `response`; math23k `original_text`, `equation`,
    /// `ans`.
    pub format: Format,
    /// The family every problem gets; empty: the format's own (gsm8k: `gsm8k`; math: the
    /// subject; math401: the kind of expression; math23k: the number of operations).
    pub family: String,
    pub on_bad_record: OnBadRecord,
}

impl Default for Params {
    fn default() -> Self {
        Params { format: Format::Gsm8k, family: String::new(), on_bad_record: OnBadRecord::Error }
    }
}

/// One problem, in the output's columns.
struct Problem {
    id: i64,
    family: String,
    question: String,
    solution: String,
    answer: String,
    level: Option<String>,
}

/// What reading the records found, beyond the problems.
#[derive(Default)]
struct Counts {
    annotated: usize,
    annotations: usize,
    verified: usize,
    fully_verified: usize,
    unreadable: usize,
    unreadable_examples: Vec<String>,
    equations_verified: usize,
    equations_differ: Vec<String>,
}

fn schema(format: Format) -> &'static TableSchema {
    match format {
        Format::Math => standard::math_problems(),
        _ => standard::problems(),
    }
}

impl Stage for MathParse {
    type Params = Params;
    const KIND: &'static str = "math.parse";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "benchmark records (gsm8k, math, math401, math23k) -> problems with gold answers";

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[("id", "int64")]),
            about: "records with the format's fields as string columns",
            optional: false,
        }]
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        if let Some(Artifact::Table(schema)) = inputs.get("data") {
            for column in params.format.columns() {
                if schema.column(column).is_none_or(|c| c.ty.data != DataType::Utf8) {
                    return Err(StageError::param(
                        "format",
                        format!(
                            "the {} format reads the string column `{column}`, which the input table `{}` lacks \
                             (map it in the source's `fields`)",
                            params.format.name(),
                            schema.name
                        ),
                    ));
                }
            }
        }
        Ok(vec![OutputDecl::table("problems", schema(params.format))])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let input = ctx.table("data")?;
        let origin = ctx.input("data")?.origin.clone();
        ctx.progress().start(input.num_rows()? as u64, "records");
        let mut writer = ctx.write_table("problems")?;
        let mut skipped = Skipped::default();
        let mut counts = Counts::default();
        let mut problems = 0;
        for batch in input.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let ids = cols.i64s("id")?;
            let fields: Vec<&StringArray> =
                params.format.columns().iter().map(|c| cols.strings(c)).collect::<Result<_>>()?;
            let mut keep = Vec::new();
            for i in 0..batch.num_rows() {
                let record: Vec<&str> = fields.iter().map(|f| f.value(i)).collect();
                match problem(params, ids.value(i), &record, &mut counts) {
                    Ok(p) => keep.push(p),
                    Err((field, message)) => skipped.bad(
                        params.on_bad_record,
                        StageError::data(
                            format!("{origin}: id {}", ids.value(i)),
                            format!("field `{field}`: {message}"),
                        ),
                    )?,
                }
            }
            problems += keep.len();
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(keep.iter().map(|p| p.id))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|p| &p.family))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|p| &p.question))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|p| &p.solution))),
                Arc::new(StringArray::from_iter_values(keep.iter().map(|p| &p.answer))),
            ];
            if params.format == Format::Math {
                columns.push(Arc::new(StringArray::from_iter_values(
                    keep.iter().map(|p| p.level.as_deref().unwrap_or_default()),
                )));
            }
            writer.write_columns(columns)?;
            ctx.progress().advance(batch.num_rows() as u64);
        }
        writer.finish()?;
        let mut report = StageReport::default()
            .metric("problems", problems)
            .metric("skipped", skipped.count)
            .metric("skipped_examples", &skipped.examples);
        let detail = match params.format {
            Format::Gsm8k => {
                report = report
                    .metric("with_annotations", counts.annotated)
                    .metric("annotations", counts.annotations)
                    .metric("annotations_verified", counts.verified)
                    .metric("annotations_unreadable", counts.unreadable)
                    .metric("unreadable_examples", &counts.unreadable_examples)
                    .metric("fully_verified", counts.fully_verified);
                format!(
                    ", {} annotated, {} of {} annotations verify ({} unreadable)",
                    counts.annotated, counts.verified, counts.annotations, counts.unreadable
                )
            }
            Format::Math23k => {
                report = report
                    .metric("equations_verified", counts.equations_verified)
                    .metric("equations_differ_examples", &counts.equations_differ);
                format!(", {} of {problems} equations give their answer", counts.equations_verified)
            }
            Format::Math | Format::Math401 => String::new(),
        };
        Ok(report.summary(format!("{problems} problems ({} skipped){detail}", skipped.count)))
    }
}

/// One record (the format's fields, in order) as a problem, or the field at fault and why.
fn problem(
    params: &Params,
    id: i64,
    record: &[&str],
    counts: &mut Counts,
) -> std::result::Result<Problem, (&'static str, String)> {
    let family = |own: &str| if params.family.is_empty() { own.to_string() } else { params.family.clone() };
    match params.format {
        Format::Gsm8k => {
            let (question, solution) = (record[0], record[1]);
            let parsed = gsm8k::parse(solution).map_err(|e| ("answer", e.to_string()))?;
            let ok = parsed.annotations.iter().filter(|a| a.verifies()).count();
            let all = parsed.annotations.len() + parsed.unreadable.len();
            counts.annotated += (all > 0) as usize;
            counts.annotations += all;
            counts.verified += ok;
            counts.fully_verified += (all > 0 && ok == all) as usize;
            counts.unreadable += parsed.unreadable.len();
            for text in &parsed.unreadable {
                if counts.unreadable_examples.len() < 5 {
                    counts.unreadable_examples.push(format!("id {id}: <<{text}>>"));
                }
            }
            Ok(Problem {
                id,
                family: family("gsm8k"),
                question: question.to_string(),
                solution: solution.to_string(),
                answer: parsed.answer.value.to_decimal(),
                level: None,
            })
        }
        Format::Math => {
            let (problem, solution, level, subject) = (record[0], record[1], record[2], record[3]);
            let answer = latex::last_boxed(solution).ok_or(("solution", "no `\\boxed{...}` answer".to_string()))?;
            if answer.trim().is_empty() {
                return Err(("solution", "the last `\\boxed{}` is empty".into()));
            }
            Ok(Problem {
                id,
                family: family(subject),
                question: problem.to_string(),
                solution: solution.to_string(),
                answer,
                level: Some(level.to_string()),
            })
        }
        Format::Math401 => {
            let (query, response) = (record[0], record[1].trim());
            if answer::value(response).is_none() {
                return Err(("response", format!("`{response}` is not a number")));
            }
            Ok(Problem {
                id,
                family: family(math401::family(query)),
                question: query.to_string(),
                solution: format!("{query}{response}\n#### {response}"),
                answer: response.to_string(),
                level: None,
            })
        }
        Format::Math23k => {
            let (text, equation, ans) = (record[0], record[1].trim(), record[2].trim());
            let gold = answer::value(ans).ok_or(("ans", format!("`{ans}` is not a number, fraction or percentage")))?;
            let expression = equation.strip_prefix("x=").or_else(|| equation.strip_prefix("X=")).unwrap_or(equation);
            match Expr::parse(expression).and_then(|e| e.eval()) {
                Some(v) if answer::close(v, gold, 0.0, MATH23K_TOLERANCE) => counts.equations_verified += 1,
                other => {
                    if counts.equations_differ.len() < 5 {
                        let got = other.map_or("cannot be evaluated".to_string(), |v| format!("gives {v}"));
                        counts.equations_differ.push(format!("id {id}: {equation} {got}, ans {ans}"));
                    }
                }
            }
            let operations = expression.chars().filter(|c| "+-*/^×÷".contains(*c)).count();
            let own = match operations {
                0 | 1 => "ops_1",
                2 => "ops_2",
                3 => "ops_3",
                _ => "ops_4+",
            };
            Ok(Problem {
                id,
                family: family(own),
                question: text.to_string(),
                solution: format!("{equation}={ans}\n#### {}", answer::plain(ans)),
                answer: ans.to_string(),
                level: None,
            })
        }
    }
}

#[cfg(test)]
mod tests;
