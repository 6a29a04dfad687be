//! `kiln inspect PIPELINE STAGE[.OUTPUT]`: what a cached stage produced — schema, rows,
//! bytes and the first rows of each table; the files of each folder artifact.

use arrow::util::display::{ArrayFormatter, FormatOptions};
use kiln_stages::stage::Artifact;
use kiln_stages::table::TableReader;

use super::Failure;
use super::text_table::TextTable;
use crate::exec::{self, Status};
use crate::plan::Plan;
use crate::store::Store;

const CELL_WIDTH: usize = 48;

pub fn inspect(plan: &Plan, store: &Store, target: &str, rows: usize) -> Result<String, Failure> {
    let (name, output) = match target.split_once('.') {
        Some((s, o)) => (s, Some(o)),
        None => (target, None),
    };
    let Some(index) = plan.index(name) else {
        let names = plan.stages.iter().map(|s| s.name.as_str());
        return Err(Failure::usage(format!(
            "error: no stage `{name}` in pipeline `{}`{}",
            plan.spec.name,
            crate::diagnostic::suggestion(name, names)
        )));
    };
    let stage = &plan.stages[index];
    let statuses = exec::status(plan, store, &[]);
    let Status::Cached { key, meta } = &statuses[index] else {
        return Err(Failure::failed(format!(
            "error: stage `{name}` is not cached yet; build it with `kiln run {} --until {name}`",
            plan.spec.path.display()
        )));
    };
    let outputs: Vec<_> = match output {
        None => stage.outputs.iter().collect(),
        Some(o) => match stage.outputs.iter().find(|d| d.name == o) {
            Some(d) => vec![d],
            None => {
                let names: Vec<&str> = stage.outputs.iter().map(|d| d.name).collect();
                return Err(Failure::usage(format!(
                    "error: stage `{name}` has no output `{o}`; its outputs are {}",
                    names.join(", ")
                )));
            }
        },
    };
    let dir = store.entry_dir(key);
    let mut out = format!("stage {name} ({}), key {key}\nentry {}\n", stage.kind.kind(), dir.display());
    if let Some(summary) = &meta.summary {
        out.push_str(&format!("result {summary}\n"));
    }
    for decl in outputs {
        let recorded = meta.outputs.get(decl.name);
        let bytes = recorded.map_or(0, |r| r.bytes);
        let output_dir = dir.join(decl.name);
        match &decl.artifact {
            Artifact::Table(schema) => {
                let reader = TableReader::open(&output_dir).map_err(|e| Failure::failed(format!("error: {e}")))?;
                let total = recorded.and_then(|r| r.rows).unwrap_or(0);
                out.push_str(&format!(
                    "\noutput {}: table `{}`, {total} rows, {bytes} bytes\n",
                    decl.name, schema.name
                ));
                let mut table = TextTable::new(&["column", "type", "about"]);
                for c in &schema.columns {
                    table.row(vec![c.name.clone(), c.ty.to_string(), c.about.clone()]);
                }
                out.push_str(&table.render());
                out.push('\n');
                out.push_str(&first_rows(&reader, rows).map_err(|e| Failure::failed(format!("error: {e}")))?);
            }
            Artifact::Files(kind) => {
                out.push_str(&format!("\noutput {}: {kind}, {bytes} bytes\n", decl.name));
                for file in recorded.map(|r| r.files.clone()).unwrap_or_default() {
                    let size = std::fs::metadata(output_dir.join(&file)).map(|m| m.len()).unwrap_or(0);
                    out.push_str(&format!("  {file}  {size} bytes\n"));
                }
                if let Ok(config) = std::fs::read_to_string(output_dir.join("config.json")) {
                    out.push_str(&format!("config.json:\n{config}\n"));
                }
            }
        }
    }
    Ok(out)
}

fn first_rows(reader: &TableReader, limit: usize) -> Result<String, kiln_stages::StageError> {
    let mut table: Option<TextTable> = None;
    let mut shown = 0;
    for batch in reader.batches() {
        let batch = batch?;
        let schema = batch.schema();
        let t = table.get_or_insert_with(|| {
            TextTable::new(&schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>())
        });
        let options = FormatOptions::default();
        let formatters: Vec<ArrayFormatter> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            if shown == limit {
                break;
            }
            t.row(formatters.iter().map(|f| cell(&f.value(row).to_string())).collect());
            shown += 1;
        }
        if shown == limit {
            break;
        }
    }
    Ok(table.map(|t| t.render()).unwrap_or_default())
}

/// One line, at most `CELL_WIDTH` characters.
fn cell(text: &str) -> String {
    let flat = text.replace('\n', "⏎");
    if flat.chars().count() <= CELL_WIDTH {
        flat
    } else {
        flat.chars().take(CELL_WIDTH - 1).collect::<String>() + "…"
    }
}
