//! Helpers for stage tests: write an input table, run a stage kind on it, read its
//! outputs back.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{ArrayRef, RecordBatch};

use crate::context::{NoProgress, Slot, StageContext};
use crate::error::Result;
use crate::schema::TableSchema;
use crate::stage::{Artifact, InputArtifacts, KindOf, Stage, StageKind, StageReport};
use crate::table::{TableReader, TableWriter};

/// Writes `columns` (in the schema's order) as a table artifact in `dir`.
pub fn write_table(dir: &Path, schema: &TableSchema, columns: Vec<ArrayRef>) -> Slot {
    let mut writer = TableWriter::create(dir, schema).unwrap();
    writer.write_columns(columns).unwrap();
    writer.finish().unwrap();
    Slot { dir: dir.to_path_buf(), artifact: Artifact::Table(schema.clone()), origin: "test.input".into() }
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
    let artifacts: InputArtifacts = inputs.iter().map(|(n, s)| (n.to_string(), s.artifact.clone())).collect();
    let outputs: BTreeMap<String, Slot> = configured
        .outputs(&artifacts)?
        .into_iter()
        .map(|o| {
            let slot = Slot { dir: out.join(o.name), artifact: o.artifact, origin: format!("test.{}", o.name) };
            (o.name.to_string(), slot)
        })
        .collect();
    let inputs: BTreeMap<String, Slot> = inputs.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
    let mut ctx = StageContext::new("test", seed, inputs, outputs, out.join("scratch"), &NoProgress);
    configured.run(&mut ctx)
}

/// The batches of an output table.
pub fn read(dir: &Path) -> Vec<RecordBatch> {
    TableReader::open(dir).unwrap().read_all().unwrap()
}
