//! `kiln inspect PIPELINE STAGE[.OUTPUT]`: what a cached stage produced — schema, rows,
//! bytes and the first rows of each table; the files of each folder artifact.

use kiln_stages::stage::Artifact;
use kiln_stages::table::{Columns, TableReader, list_i32};

use super::Failure;
use super::text_table::TextTable;
use crate::exec::{self, Status};
use crate::plan::Plan;
use crate::store::{EntryMeta, Store};

/// How `--row` marks trained tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marking {
    /// ANSI colours: trained tokens green, the rest grey; neighbouring tokens alternate in
    /// brightness so their boundaries show.
    Colour,
    /// Plain text: tokens separated by `|`, runs of trained tokens inside `⟦ ⟧`.
    Plain,
}

/// The stage index and its cache entry, or why there is none.
fn cached_stage<'p>(
    plan: &Plan,
    name: &str,
    statuses: &'p [Status],
) -> Result<(usize, &'p str, &'p EntryMeta), Failure> {
    let Some(index) = plan.index(name) else {
        let names = plan.stages.iter().map(|s| s.name.as_str());
        return Err(Failure::usage(format!(
            "error: no stage `{name}` in pipeline `{}`{}",
            plan.spec.name,
            crate::diagnostic::suggestion(name, names)
        )));
    };
    let Status::Cached { key, meta } = &statuses[index] else {
        return Err(super::not_cached(plan, name, &statuses[index]));
    };
    Ok((index, &key[..], meta))
}

/// `--row N` of a token table (`tokenize`'s or `pack`'s): the row decoded token by
/// token with the trained tokens marked, its documents and their position ids.
pub fn show_row(plan: &Plan, store: &Store, target: &str, row: usize, marking: Marking) -> Result<String, Failure> {
    let (name, output) = target.split_once('.').unwrap_or((target, ""));
    let statuses = exec::status(plan, store, &[]);
    let (index, key, _) = cached_stage(plan, name, &statuses)?;
    let stage = &plan.stages[index];
    let decl = stage
        .outputs
        .iter()
        .find(|d| {
            (output.is_empty() || d.name == output)
                && matches!(&d.artifact, Artifact::Table(s) if s.column("input_ids").is_some())
        })
        .ok_or_else(|| {
            Failure::usage(format!("error: `{target}` has no table of token ids (`input_ids`) to show by row"))
        })?;
    let tokenizer_stage = upstream_tokenizer(plan, index)
        .ok_or_else(|| Failure::usage(format!("error: no tokenizer upstream of `{name}` to decode its tokens with")))?;
    let (_, tokenizer_key, _) = cached_stage(plan, &plan.stages[tokenizer_stage].name, &statuses)?;
    let tokenizer_dir = store.entry_dir(tokenizer_key).join(
        plan.stages[tokenizer_stage]
            .outputs
            .iter()
            .find(|o| matches!(o.artifact, Artifact::Files("tokenizer")))
            .map_or("tokenizer", |o| o.name),
    );
    let tokenizer =
        kiln_stages::tokenizer_file::load(&tokenizer_dir).map_err(|e| Failure::failed(format!("error: {e}")))?;
    let reader =
        TableReader::open(&store.entry_dir(key).join(decl.name)).map_err(|e| Failure::failed(format!("error: {e}")))?;
    let failed = |e: kiln_stages::StageError| Failure::failed(format!("error: {e}"));
    let mut seen = 0;
    for batch in reader.batches() {
        let batch = batch.map_err(failed)?;
        if row >= seen + batch.num_rows() {
            seen += batch.num_rows();
            continue;
        }
        let r = row - seen;
        let cols = Columns::new(&batch);
        let ids = list_i32(cols.lists("input_ids").map_err(failed)?, r).map_err(failed)?;
        let token_row = TokenRow::read(&cols, r, ids).map_err(failed)?;
        let decode = |id: i32| tokenizer.decode(&[id as u32], false).unwrap_or_else(|_| format!("<{id}>"));
        return Ok(token_row.render(&format!("{name}.{}", decl.name), row, &decode, marking));
    }
    Err(Failure::usage(format!("error: `{name}.{}` has {seen} rows; row {row} is past the end", decl.name)))
}

/// The nearest stage upstream of `index` (itself included) with a tokenizer output.
fn upstream_tokenizer(plan: &Plan, index: usize) -> Option<usize> {
    let mut queue = std::collections::VecDeque::from([index]);
    let mut seen = std::collections::HashSet::new();
    while let Some(i) = queue.pop_front() {
        if !seen.insert(i) {
            continue;
        }
        let stage = &plan.stages[i];
        if stage.outputs.iter().any(|o| matches!(o.artifact, Artifact::Files("tokenizer"))) {
            return Some(i);
        }
        queue.extend(stage.inputs.iter().map(|input| input.stage));
    }
    None
}

/// One row of tokens: which are trained, where documents start, their positions.
struct TokenRow {
    ids: Vec<i32>,
    trained: Vec<bool>,
    /// (source id, start, length) per document; padding after the last.
    documents: Vec<(Option<i64>, usize, usize)>,
    positions: Option<Vec<i32>>,
}

impl TokenRow {
    /// A `tokens` row (one document, `loss_mask`) or a `packed` row (`labels`, `seq_lens`,
    /// `position_ids`, `doc_ids`).
    fn read(cols: &Columns, r: usize, ids: Vec<i32>) -> Result<Self, kiln_stages::StageError> {
        if let Ok(labels) = cols.lists("labels") {
            let labels = list_i32(labels, r)?;
            let seq_lens = list_i32(cols.lists("seq_lens")?, r)?;
            let docs: Vec<Option<i64>> = match cols.lists("doc_ids") {
                Ok(list) => {
                    let v = list.value(r);
                    let v = v.as_any().downcast_ref::<arrow::array::Int64Array>().map(|a| a.values().to_vec());
                    v.unwrap_or_default().into_iter().map(Some).collect()
                }
                Err(_) => Vec::new(),
            };
            let mut at = 0;
            let mut documents = Vec::new();
            for (d, &len) in seq_lens.iter().enumerate() {
                documents.push((docs.get(d).copied().flatten(), at, len as usize));
                at += len as usize;
            }
            let positions = Some(list_i32(cols.lists("position_ids")?, r)?);
            // Labels are not shifted (Hugging Face): a position is trained when its label is set.
            let trained = labels.iter().map(|&l| l != -100).collect();
            return Ok(TokenRow { ids, trained, documents, positions });
        }
        let mask = cols.lists("loss_mask")?.value(r);
        let mask = mask.as_any().downcast_ref::<arrow::array::BooleanArray>().map(|m| m.values().iter().collect());
        let id = cols.i64s("id").ok().map(|a| a.value(r));
        let n = ids.len();
        Ok(TokenRow {
            ids,
            trained: mask.unwrap_or_else(|| vec![false; n]),
            documents: vec![(id, 0, n)],
            positions: None,
        })
    }

    fn render(&self, table: &str, row: usize, decode: &dyn Fn(i32) -> String, marking: Marking) -> String {
        let used: usize = self.documents.iter().map(|d| d.2).sum();
        let trained = self.trained.iter().filter(|&&t| t).count();
        let mut out = format!(
            "{table} row {row}: {} tokens, {} documents, {trained} trained, {} padding\n",
            self.ids.len(),
            self.documents.len(),
            self.ids.len() - used
        );
        out.push_str(match marking {
            Marking::Colour => "trained tokens in green\n",
            Marking::Plain => "tokens separated by |, trained tokens inside ⟦ ⟧\n",
        });
        for (d, &(id, start, len)) in self.documents.iter().enumerate() {
            let id = id.map_or(String::new(), |id| format!(" (id {id})"));
            let positions = match &self.positions {
                Some(p) if len > 0 => format!(", positions {}..={}", p[start], p[start + len - 1]),
                _ => String::new(),
            };
            out.push_str(&format!("\n── document {}{id}: tokens {start}..{}{positions} ──\n", d + 1, start + len));
            out.push_str(&self.tokens(start..start + len, decode, marking));
            out.push('\n');
        }
        if used < self.ids.len() {
            out.push_str(&format!("\n── padding: {} tokens ──\n", self.ids.len() - used));
        }
        out
    }

    fn tokens(&self, range: std::ops::Range<usize>, decode: &dyn Fn(i32) -> String, marking: Marking) -> String {
        let mut out = String::new();
        let mut open = false;
        for i in range {
            let decoded = decode(self.ids[i]);
            let text = decoded.replace('\n', "⏎");
            let newline = if decoded.ends_with('\n') { "\n" } else { "" };
            match marking {
                Marking::Colour => {
                    let colour = match (self.trained[i], i % 2 == 0) {
                        (true, true) => "\x1b[32m",
                        (true, false) => "\x1b[92m",
                        (false, true) => "\x1b[90m",
                        (false, false) => "\x1b[37m",
                    };
                    out.push_str(colour);
                    out.push_str(&text);
                    out.push_str("\x1b[0m");
                    out.push_str(newline);
                }
                Marking::Plain => {
                    if self.trained[i] && !open {
                        out.push('⟦');
                        open = true;
                    } else if !self.trained[i] && open {
                        out.push('⟧');
                        open = false;
                    }
                    out.push_str(&text);
                    out.push('|');
                    out.push_str(newline);
                }
            }
        }
        if open {
            out.push('⟧');
        }
        out
    }
}

pub fn inspect(plan: &Plan, store: &Store, target: &str, rows: usize) -> Result<String, Failure> {
    let (name, output) = match target.split_once('.') {
        Some((s, o)) => (s, Some(o)),
        None => (target, None),
    };
    let statuses = exec::status(plan, store, &[]);
    let (index, key, meta) = cached_stage(plan, name, &statuses)?;
    let stage = &plan.stages[index];
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
    for batch in reader.batches() {
        let batch = batch?;
        let t = table.get_or_insert_with(|| TextTable::for_schema(&batch.schema()));
        t.push_batch(&batch, limit)?;
        if t.len() >= limit {
            break;
        }
    }
    Ok(table.map(|t| t.render()).unwrap_or_default())
}
