//! Records read from outside: the table a source writes (an `id` and one string column
//! per mapped field) and what to do with a record that does not fit.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};
use crate::schema::{Column, ColumnType, TableSchema};
use crate::stage::{ExternalFile, OutputDecl, StageReport};

/// The parameters of a file source (`source.jsonl`, `source.parquet`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceParams {
    /// The file, relative to the current directory.
    pub path: String,
    /// Output column -> field of each record (a JSON key, dotted to reach into nested
    /// objects; a Parquet column, cast to text).
    pub fields: IndexMap<String, String>,
    pub on_bad_record: OnBadRecord,
    /// Read only the first N records (0: all).
    pub limit: u64,
}

impl SourceParams {
    pub fn check(&self) -> Result<()> {
        if self.path.is_empty() {
            return Err(StageError::param("path", "give the file to read (`--set stage.with.path=...`)"));
        }
        check_fields(&self.fields)
    }

    /// The one output, `records`.
    pub fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::table("records", &schema(&self.fields))]
    }

    /// The file, whose content digest is part of the key.
    pub fn external_files(&self) -> Vec<ExternalFile> {
        vec![ExternalFile { param: "path".into(), path: self.path.clone().into(), folder: false }]
    }
}

/// What to do with a malformed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadRecord {
    /// Fail the stage, naming the file, the line and the field.
    #[default]
    Error,
    /// Leave it out, count it, and report the count and the first few in the metrics.
    Skip,
}

/// The schema of a source's output: `id` (the record's line or row, from 1) then the
/// mapped fields in declaration order.
pub fn schema(fields: &IndexMap<String, String>) -> TableSchema {
    let mut columns = vec![Column {
        name: "id".into(),
        ty: ColumnType::parse("int64").expect("valid"),
        about: "line (or row) of the record in its file, from 1".into(),
    }];
    for (name, from) in fields {
        columns.push(Column {
            name: name.clone(),
            ty: ColumnType::parse("string").expect("valid"),
            about: format!("field `{from}` of the record"),
        });
    }
    TableSchema { name: "records".into(), about: "records read from a file".into(), columns }
}

/// Checks a field mapping: at least one field, no column named `id`, plain names.
fn check_fields(fields: &IndexMap<String, String>) -> Result<()> {
    if fields.is_empty() {
        return Err(StageError::param("fields", "map at least one column, e.g. `fields: { question: question }`"));
    }
    for (name, from) in fields {
        if name == "id" {
            return Err(StageError::param("fields.id", "`id` is the record's line; name the column otherwise"));
        }
        if name.is_empty() || from.is_empty() {
            return Err(StageError::param(format!("fields.{name}"), "column and field names cannot be empty"));
        }
    }
    Ok(())
}

/// Counts skipped records and remembers the first few reasons.
#[derive(Debug, Default)]
pub struct Skipped {
    pub count: usize,
    pub examples: Vec<String>,
}

impl Skipped {
    /// Applies the policy to a bad record: an error, or a counted skip.
    pub fn bad(&mut self, policy: OnBadRecord, error: StageError) -> Result<()> {
        match policy {
            OnBadRecord::Error => Err(error),
            OnBadRecord::Skip => {
                self.count += 1;
                if self.examples.len() < 5 {
                    self.examples.push(error.to_string());
                }
                Ok(())
            }
        }
    }

    /// A source's report: records read and skipped, the first reasons.
    pub fn report(&self, read: u64) -> StageReport {
        StageReport::default()
            .metric("records", read)
            .metric("skipped", self.count)
            .metric("skipped_examples", &self.examples)
            .summary(format!("{read} records, {} skipped", self.count))
    }
}
/// The mapped fields of one record (a JSON object), or why it does not fit: a dotted
/// name reaches into nested objects; numbers and booleans are written as text.
pub fn mapped_fields(
    value: &serde_json::Value,
    fields: &IndexMap<String, String>,
) -> std::result::Result<Vec<String>, String> {
    if !value.is_object() {
        return Err("expected a JSON object".into());
    }
    fields
        .values()
        .map(|field| {
            let found = field.split('.').try_fold(value, |v, key| v.get(key));
            match found {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Ok(b.to_string()),
                Some(serde_json::Value::Null) | None => Err(format!("no field `{field}`")),
                Some(serde_json::Value::Array(_)) => Err(format!("field `{field}`: expected a string, got an array")),
                Some(serde_json::Value::Object(_)) => Err(format!("field `{field}`: expected a string, got an object")),
            }
        })
        .collect()
}
/// Every file under a folder, its subfolders' included, in path order.
pub fn files_under(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    Ok(files)
}
