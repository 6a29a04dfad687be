//! Helpers for stage tests and benchmarks: write an input table, run a stage kind on
//! it, read its outputs back.

use std::collections::BTreeMap;
use std::path::Path;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;

use crate::context::{NoProgress, Slot, StageContext};
use crate::error::Result;
use crate::schema::{TableSchema, standard};
use crate::stage::{Artifact, InputArtifacts, KindOf, OutputDecl, Stage, StageKind, StageReport};
use crate::table::{TableReader, TableWriter};
use crate::template::{Message, Template};

/// Writes `columns` (in the schema's order) as a table artifact in `dir`.
pub fn write_table(dir: &Path, schema: &TableSchema, columns: Vec<ArrayRef>) -> Slot {
    let mut writer = TableWriter::create(dir, schema).unwrap();
    writer.write_columns(columns).unwrap();
    writer.finish().unwrap();
    Slot { dir: dir.to_path_buf(), artifact: Artifact::Table(schema.clone()), origin: "test.input".into() }
}

/// A `problems` table of (id, family, question, solution, answer) rows.
pub fn problems(dir: &Path, rows: &[(i64, &str, &str, &str, &str)]) -> Slot {
    type Row<'a> = (i64, &'a str, &'a str, &'a str, &'a str);
    let text = |pick: for<'r> fn(&Row<'r>) -> &'r str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(pick)))
    };
    write_table(
        dir,
        standard::problems(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            text(|r| r.1),
            text(|r| r.2),
            text(|r| r.3),
            text(|r| r.4),
        ],
    )
}

/// Conversations as `chat.format` writes them (ChatML), ids from 0.
pub fn chats(dir: &Path, conversations: &[Vec<Message>]) -> Slot {
    use crate::table::build::{self, Value};
    let rendered: Vec<_> = conversations.iter().map(|c| Template::Chatml.render(c)).collect();
    let messages: Vec<Vec<Vec<Value>>> = conversations
        .iter()
        .map(|c| c.iter().map(|m| vec![Value::Str(m.role.clone()), Value::Str(m.content.clone())]).collect())
        .collect();
    let turns: Vec<Vec<Vec<Value>>> = rendered
        .iter()
        .map(|r| {
            r.turns
                .iter()
                .map(|t| vec![Value::Str(t.role.into()), Value::I32(t.start as i32), Value::I32(t.end as i32)])
                .collect()
        })
        .collect();
    let n = conversations.len();
    write_table(
        dir,
        standard::chats(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n("f", n))),
            build::list_struct(&[("role", DataType::Utf8), ("content", DataType::Utf8)], &messages),
            Arc::new(StringArray::from_iter_values(rendered.iter().map(|r| r.text.as_str()))),
            build::list_struct(
                &[("role", DataType::Utf8), ("start", DataType::Int32), ("end", DataType::Int32)],
                &turns,
            ),
        ],
    )
}

/// A files artifact (`tokenizer`, `model`) in `dir`.
pub fn files(dir: &Path, kind: &'static str) -> Slot {
    Slot { dir: dir.to_path_buf(), artifact: Artifact::Files(kind), origin: format!("test.{kind}") }
}

/// Configures `S` from YAML text and runs it on `inputs`, writing outputs under `out`.
pub fn run<S: Stage>(with: &str, inputs: Vec<(&str, Slot)>, out: &Path, seed: u64) -> Result<StageReport> {
    let kind = KindOf::<S>::new();
    let with: serde_json::Value = serde_yaml::from_str(if with.trim().is_empty() { "{}" } else { with }).unwrap();
    let configured = kind.configure(&with)?;
    run_in(inputs, out, seed, |artifacts| configured.outputs(artifacts), |ctx| configured.run(ctx))
}

/// Runs `S` with `params` as given, without its parameter check: for testing what the
/// stage does with values the check refuses (a guard behind the guard).
pub fn run_unchecked<S: Stage>(
    params: &S::Params,
    inputs: Vec<(&str, Slot)>,
    out: &Path,
    seed: u64,
) -> Result<StageReport> {
    run_in(inputs, out, seed, |artifacts| S::outputs(params, artifacts), |ctx| S::run(params, ctx))
}

/// A test context for `inputs` with the declared outputs under `out`, and a run in it.
fn run_in(
    inputs: Vec<(&str, Slot)>,
    out: &Path,
    seed: u64,
    outputs: impl FnOnce(&InputArtifacts) -> Result<Vec<OutputDecl>>,
    run: impl FnOnce(&mut StageContext) -> Result<StageReport>,
) -> Result<StageReport> {
    let artifacts: InputArtifacts = inputs.iter().map(|(n, s)| (n.to_string(), s.artifact.clone())).collect();
    let outputs: BTreeMap<String, Slot> = outputs(&artifacts)?
        .into_iter()
        .map(|o| {
            let slot = Slot { dir: out.join(o.name), artifact: o.artifact, origin: format!("test.{}", o.name) };
            (o.name.to_string(), slot)
        })
        .collect();
    let inputs: BTreeMap<String, Slot> = inputs.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
    let mut ctx = StageContext::new("test", seed, inputs, outputs, out.join("scratch"), &NoProgress);
    run(&mut ctx)
}

/// The batches of an output table.
pub fn read(dir: &Path) -> Vec<RecordBatch> {
    TableReader::open(dir).unwrap().read_all().unwrap()
}
