//! `kiln query PIPELINE "SQL"`: DataFusion over the cached outputs of a pipeline's
//! stages, read in place. Each stage is a table named after it (its first output); each
//! output of a stage with several is also `stage_output`. Only the tables the query
//! names are opened, so a stage that is not cached is an error only when it is asked for.
//! `--run a=RUN` adds the outputs of a recorded run as `a.stage`, so two runs can be
//! joined: which problems did the new model get wrong that the old one got right?

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use clap::ValueEnum;
use kiln_stages::sql::engine;
use kiln_stages::stage::Artifact;

use super::Failure;
use super::text_table::TextTable;
use crate::exec::{self, Status};
use crate::plan::Plan;
use crate::runs::{Manifest, StageStatus};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table, long cells shortened (the default).
    Table,
    Csv,
    /// One JSON object per line.
    Json,
    /// Parquet, zstd-compressed (needs `--output`).
    Parquet,
}

/// The table names of one stage, given its table outputs in declaration order: the
/// stage's name for the first, and `stage_output` for each when it has several outputs.
fn stage_tables<'o>(stage: &str, outputs: &[&'o str], several: bool) -> Vec<(String, &'o str)> {
    let mut out: Vec<(String, &str)> = outputs.first().map(|&o| (stage.to_string(), o)).into_iter().collect();
    if several {
        out.extend(outputs.iter().map(|&o| (format!("{stage}_{o}"), o)));
    }
    out
}

/// The table names of a plan: `(name, stage index, output)`.
fn tables(plan: &Plan) -> Vec<(String, usize, &'static str)> {
    let mut out = Vec::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        let outputs: Vec<&'static str> =
            stage.outputs.iter().filter(|o| matches!(o.artifact, Artifact::Table(_))).map(|o| o.name).collect();
        let several = stage.outputs.len() > 1;
        out.extend(stage_tables(&stage.name, &outputs, several).into_iter().map(|(n, o)| (n, i, o)));
    }
    out
}

/// The tables of a recorded run: `(name, key, output)` of each table output of a stage
/// the run computed or found cached, named as [`tables`] names them; outputs are in the
/// plan's declaration order when the plan has the stage, else in name order.
fn run_tables(plan: &Plan, run: &Manifest) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for stage in run.stages.iter().filter(|s| matches!(s.status, StageStatus::Cached | StageStatus::Ran)) {
        let Some(key) = &stage.key else { continue };
        let mut outputs: Vec<&str> =
            stage.outputs.iter().filter(|(_, o)| o.artifact.starts_with("table")).map(|(n, _)| n.as_str()).collect();
        if let Some(i) = plan.index(&stage.name) {
            let declared = |name: &str| plan.stages[i].outputs.iter().position(|o| o.name == name);
            outputs.sort_by_key(|name| declared(name).unwrap_or(usize::MAX));
        }
        let several = stage.outputs.len() > 1;
        out.extend(
            stage_tables(&stage.name, &outputs, several).into_iter().map(|(n, o)| (n, key.to_string(), o.into())),
        );
    }
    out
}

/// Runs the query; returns what to print (nothing when written to `output`). `runs`
/// names recorded runs whose outputs the query reads as `name.stage`.
pub fn query(
    plan: &Plan,
    store: &Store,
    sql: &str,
    runs: &[(String, Manifest)],
    format: Format,
    output: Option<&Path>,
) -> Result<String, Failure> {
    let names = engine::table_names(sql).map_err(|e| Failure::usage(format!("error: {e}")))?;
    let known = tables(plan);
    let statuses = exec::status(plan, store, &[]);
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    for name in names {
        if let Some((alias, table)) = name.split_once('.') {
            let Some((_, run)) = runs.iter().find(|(a, _)| a == alias) else {
                return Err(Failure::usage(format!(
                    "error: no run named `{alias}`: name one with `--run {alias}=RUN`\n  in the query: {sql}"
                )));
            };
            let tables = run_tables(plan, run);
            let Some((_, key, output)) = tables.iter().find(|(n, _, _)| n == table) else {
                return Err(Failure::usage(format!(
                    "error: run {} (`{alias}`) has no table `{table}`; it has {}{}\n  in the query: {sql}",
                    run.id,
                    tables.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>().join(", "),
                    crate::diagnostic::suggestion(table, tables.iter().map(|(n, _, _)| n.as_str()))
                )));
            };
            if store.meta(key).is_none() {
                return Err(Failure::failed(format!(
                    "error: the `{table}` of run {} is no longer cached (removed by `kiln gc`?); `kiln rerun {}` \
                     computes it again",
                    run.id, run.id
                )));
            }
            dirs.push((name.clone(), store.entry_dir(key).join(output)));
            continue;
        }
        let Some((_, index, output)) = known.iter().find(|(n, _, _)| *n == name) else {
            return Err(Failure::usage(format!(
                "error: no table `{name}`: the tables are the stages of `{}` ({}){}\n  in the query: {sql}",
                plan.spec.name,
                known.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>().join(", "),
                crate::diagnostic::suggestion(&name, known.iter().map(|(n, _, _)| n.as_str()))
            )));
        };
        let stage = &plan.stages[*index].name;
        let Status::Cached { key, .. } = &statuses[*index] else {
            return Err(super::not_cached(plan, stage, &statuses[*index]));
        };
        dirs.push((name.clone(), store.entry_dir(key).join(output)));
    }
    let tables: Vec<(String, &Path)> = dirs.iter().map(|(n, d)| (n.clone(), d.as_path())).collect();
    let (schema, batches) = engine::execute(sql, &tables).map_err(|e| Failure::usage(format!("error: {e}")))?;
    let failed = |e: &dyn std::fmt::Display| Failure::failed(format!("error: writing the result: {e}"));
    match (format, output) {
        (Format::Table, None) => {
            let mut table = TextTable::for_schema(&schema);
            for batch in &batches {
                table.push_batch(batch, usize::MAX).map_err(|e| failed(&e))?;
            }
            let rows = table.len();
            Ok(format!("{}({rows} row{})\n", table.render(), if rows == 1 { "" } else { "s" }))
        }
        (Format::Table, Some(_)) => Err(Failure::usage("error: --output needs --format csv, json or parquet")),
        (Format::Parquet, None) => {
            Err(Failure::usage("error: --format parquet needs --output FILE (Parquet is not for a terminal)"))
        }
        (format, Some(path)) => {
            let file = std::fs::File::create(path)
                .map_err(|e| Failure::failed(format!("error: cannot create {}: {e}", path.display())))?;
            write(format, &schema, &batches, std::io::BufWriter::new(file)).map_err(|e| failed(&e))?;
            Ok(String::new())
        }
        (format, None) => {
            let mut bytes = Vec::new();
            write(format, &schema, &batches, &mut bytes).map_err(|e| failed(&e))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

fn write(format: Format, schema: &SchemaRef, batches: &[RecordBatch], mut to: impl Write + Send) -> anyhow::Result<()> {
    match format {
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut to);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut to);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        Format::Parquet => {
            let properties = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut to, schema.clone(), Some(properties))?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close()?;
        }
        Format::Table => unreachable!("tables are rendered, not written"),
    }
    to.flush()?;
    Ok(())
}
