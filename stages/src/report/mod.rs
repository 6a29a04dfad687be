//! `report`: one self-contained HTML page (inline SVG plots drawn with `plotters`, inline
//! CSS, no script, nothing fetched) of what a pipeline's artifacts say: the loss and
//! learning rate per step of each training input, the accuracy per problem family of
//! each evaluation input with its first wrong answers per family, the token-length histogram before packing and how full the
//! packed rows are. Every input is optional; the page has a section per input given.
//!
//! The page is a cached artifact like any other, so it depends only on its inputs: the
//! table of a run's stages (cache status, time) is not in it. Where that table goes the
//! page holds a marked placeholder, and each run writes its own copy of the page with
//! the table filled in (`.kiln/runs/<run>/<stage>.html`; see [`RUN_STAGES_BEGIN`]).

mod page;
mod plot;

pub use page::escape;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;

/// The file the report output holds.
pub const REPORT_FILE: &str = "report.html";
/// The placeholder for a run's stage table lies between these two lines.
pub const RUN_STAGES_BEGIN: &str = "<!-- kiln:run-stages:begin -->";
pub const RUN_STAGES_END: &str = "<!-- kiln:run-stages:end -->";

pub struct Report;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The page's title.
    pub title: String,
    /// Bars of the token-length histogram.
    pub bins: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params { title: "kiln report".into(), bins: 40 }
    }
}

/// One training stage's steps.
struct Curve {
    name: String,
    steps: Vec<f64>,
    loss: Vec<f64>,
    lr: Vec<f64>,
}

/// One evaluation's (correct, total) per family, and its first wrong answers.
struct Scores {
    name: String,
    families: BTreeMap<String, (usize, usize)>,
    /// Per difficulty level, where the problems have one (MATH).
    levels: BTreeMap<String, (usize, usize)>,
    wrong: Vec<Wrong>,
    /// Samples of `eval.code` by status (empty for answer evaluations).
    statuses: BTreeMap<String, usize>,
}

impl Scores {
    fn named(name: String) -> Self {
        Scores {
            name,
            families: BTreeMap::new(),
            levels: BTreeMap::new(),
            wrong: Vec::new(),
            statuses: BTreeMap::new(),
        }
    }

    /// Correct and total over every problem.
    fn overall(&self) -> (usize, usize) {
        self.families.values().fold((0, 0), |(a, b), &(c, t)| (a + c, b + t))
    }
}

/// A wrong answer, as the predictions table has it.
struct Wrong {
    id: i64,
    family: String,
    gold: String,
    extracted: Option<String>,
    output: String,
}

/// Wrong answers shown per family and evaluation: enough to see a pattern.
const WRONG_PER_FAMILY: usize = 3;

struct Packing {
    rows: usize,
    row_len: usize,
    documents: usize,
    tokens: u64,
    /// Fraction of each row holding document tokens.
    fills: Vec<f64>,
}

impl Stage for Report {
    type Params = Params;
    const KIND: &'static str = "report";
    const VERSION: u32 = 4;
    const ABOUT: &'static str = "a self-contained HTML page: loss and learning rate, evaluations side by side with \
         accuracy per family and level, token lengths, packing";

    fn inputs() -> &'static [InputDecl] {
        &[
            InputDecl {
                name: "training*",
                accepts: Accepts::Table(&[("step", "int64"), ("lr", "float64"), ("loss", "float64")]),
                about: "training metrics (a train stage)",
                optional: true,
            },
            InputDecl {
                name: "eval*",
                accepts: Accepts::Table(&[
                    ("id", "int64"),
                    ("family", "string"),
                    ("output", "string"),
                    ("gold", "string"),
                    ("extracted", "string"),
                    ("correct", "bool"),
                ]),
                about: "predictions (an eval stage)",
                optional: true,
            },
            InputDecl {
                name: "code*",
                accepts: Accepts::Table(&[
                    ("id", "int64"),
                    ("task_id", "string"),
                    ("family", "string"),
                    ("completion", "string"),
                    ("status", "string"),
                    ("stderr", "string"),
                ]),
                about: "executed code samples (an eval.code stage): pass@1 per family, statuses, first failures",
                optional: true,
            },
            InputDecl {
                name: "tokens",
                accepts: Accepts::Table(&[("n_tokens", "int32")]),
                about: "token sequences before packing (a tokenize stage)",
                optional: true,
            },
            InputDecl {
                name: "packed",
                accepts: Accepts::Table(&[("seq_lens", "list<int32>"), ("input_ids", "list<int32>")]),
                about: "packed rows (a pack stage)",
                optional: true,
            },
        ]
    }

    fn check(params: &Params) -> Result<()> {
        if params.bins == 0 {
            return Err(StageError::param("bins", "must be at least 1"));
        }
        Ok(())
    }

    fn outputs(_: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        if inputs.is_empty() {
            return Err(StageError::param(
                "",
                "a report needs at least one input: `from: { training: sft, eval: eval, tokens: tokens, packed: packed }`",
            ));
        }
        Ok(vec![OutputDecl::files("report", "report")])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let names = ctx.input_names();
        ctx.progress().start(names.len() as u64 + 1, "inputs");
        let mut curves = Vec::new();
        let mut scores = Vec::new();
        for name in &names {
            if name.starts_with("training") {
                curves.push(read_curve(ctx, name)?);
            } else if name.starts_with("eval") {
                scores.push(read_scores(ctx, name)?);
            } else if name.starts_with("code") {
                scores.push(read_code_scores(ctx, name)?);
            }
            ctx.progress().advance(1);
        }
        let lengths = if ctx.has_input("tokens") { Some(read_lengths(ctx)?) } else { None };
        let packing = if ctx.has_input("packed") { Some(read_packing(ctx)?) } else { None };

        let html = page::render(params, &curves, &scores, lengths.as_deref(), packing.as_ref())
            .map_err(|e| StageError::Internal(format!("drawing the report: {e}")))?;
        let dir = ctx.output_dir("report")?;
        let path = dir.join(REPORT_FILE);
        std::fs::write(&path, &html).map_err(|e| StageError::io(&path, e))?;
        ctx.progress().advance(1);
        let sections = curves.len() + scores.len() + usize::from(lengths.is_some()) + usize::from(packing.is_some());
        Ok(StageReport::default()
            .metric("bytes", html.len())
            .metric("sections", sections)
            .summary(format!("{sections} sections, {} KB", html.len().div_ceil(1000))))
    }
}

fn read_curve(ctx: &StageContext, name: &str) -> Result<Curve> {
    let mut curve = Curve { name: ctx.input(name)?.origin.clone(), steps: vec![], loss: vec![], lr: vec![] };
    for batch in ctx.table(name)?.batches() {
        let batch = batch?;
        let c = Columns::new(&batch);
        curve.steps.extend(c.i64s("step")?.values().iter().map(|&s| s as f64));
        curve.loss.extend(c.f64s("loss")?.values());
        curve.lr.extend(c.f64s("lr")?.values());
    }
    Ok(curve)
}

fn read_scores(ctx: &StageContext, name: &str) -> Result<Scores> {
    let mut scores = Scores::named(ctx.input(name)?.origin.clone());
    for batch in ctx.table(name)?.batches() {
        let batch = batch?;
        let c = Columns::new(&batch);
        let (ids, families, correct) = (c.i64s("id")?, c.strings("family")?, c.bools("correct")?);
        let (outputs, golds, extracted) = (c.strings("output")?, c.strings("gold")?, c.strings("extracted")?);
        let levels = c.strings("level").ok();
        for r in 0..batch.num_rows() {
            if let Some(level) = levels.filter(|l| arrow::array::Array::is_valid(*l, r)) {
                let entry = scores.levels.entry(level.value(r).to_string()).or_default();
                entry.0 += usize::from(correct.value(r));
                entry.1 += 1;
            }
            let family = families.value(r);
            let entry = scores.families.entry(family.to_string()).or_default();
            entry.0 += usize::from(correct.value(r));
            entry.1 += 1;
            let shown = scores.wrong.iter().filter(|w| w.family == family).count();
            if !correct.value(r) && shown < WRONG_PER_FAMILY {
                scores.wrong.push(Wrong {
                    id: ids.value(r),
                    family: family.to_string(),
                    gold: golds.value(r).to_string(),
                    extracted: arrow::array::Array::is_valid(extracted, r).then(|| extracted.value(r).to_string()),
                    output: outputs.value(r).to_string(),
                });
            }
        }
    }
    Ok(scores)
}

/// An `eval.code` input: a sample is right when it passed; a wrong one shows its task,
/// status, completion and the end of its stderr.
fn read_code_scores(ctx: &StageContext, name: &str) -> Result<Scores> {
    let mut scores = Scores::named(ctx.input(name)?.origin.clone());
    for batch in ctx.table(name)?.batches() {
        let batch = batch?;
        let c = Columns::new(&batch);
        let (ids, tasks, families) = (c.i64s("id")?, c.strings("task_id")?, c.strings("family")?);
        let (completions, statuses, stderr) = (c.strings("completion")?, c.strings("status")?, c.strings("stderr")?);
        for r in 0..batch.num_rows() {
            let (family, status) = (families.value(r), statuses.value(r));
            let passed = status == "passed";
            *scores.statuses.entry(status.to_string()).or_default() += 1;
            let entry = scores.families.entry(family.to_string()).or_default();
            entry.0 += usize::from(passed);
            entry.1 += 1;
            let shown = scores.wrong.iter().filter(|w| w.family == family).count();
            if !passed && shown < WRONG_PER_FAMILY {
                let err = stderr.value(r);
                let tail: String = err.chars().skip(err.chars().count().saturating_sub(300)).collect();
                scores.wrong.push(Wrong {
                    id: ids.value(r),
                    family: family.to_string(),
                    gold: tasks.value(r).to_string(),
                    extracted: Some(status.to_string()),
                    output: format!("{}\n--- stderr ---\n{tail}", completions.value(r)),
                });
            }
        }
    }
    Ok(scores)
}

fn read_lengths(ctx: &StageContext) -> Result<Vec<i32>> {
    let mut lengths = Vec::new();
    for batch in ctx.table("tokens")?.batches() {
        let batch = batch?;
        lengths.extend(Columns::new(&batch).i32s("n_tokens")?.values());
    }
    Ok(lengths)
}

fn read_packing(ctx: &StageContext) -> Result<Packing> {
    let mut packing = Packing { rows: 0, row_len: 0, documents: 0, tokens: 0, fills: Vec::new() };
    for batch in ctx.table("packed")?.batches() {
        let batch = batch?;
        let c = Columns::new(&batch);
        let (seq_lens, ids) = (c.lists("seq_lens")?, c.lists("input_ids")?);
        for r in 0..batch.num_rows() {
            let row_len = ids.value_length(r) as usize;
            let lens = crate::table::list_i32(seq_lens, r)?;
            let used: u64 = lens.iter().map(|&l| l as u64).sum();
            packing.row_len = packing.row_len.max(row_len);
            packing.rows += 1;
            packing.documents += lens.len();
            packing.tokens += used;
            packing.fills.push(if row_len == 0 { 0.0 } else { used as f64 / row_len as f64 });
        }
    }
    Ok(packing)
}

#[cfg(test)]
mod tests;
