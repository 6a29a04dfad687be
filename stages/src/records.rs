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
    /// Accept a file without records (by default an error: an empty or wholly skipped
    /// file would otherwise fail much later, or score 0% on nothing).
    pub allow_empty: bool,
}

impl SourceParams {
    pub fn check(&self) -> Result<()> {
        if self.path.is_empty() {
            return Err(StageError::param("path", "give the file to read (`--set stage.with.path=...`)"));
        }
        check_fields(&self.fields)
    }

    /// The error for a file that gave no records, unless they are allowed.
    pub fn check_not_empty(&self, read: u64, skipped: &Skipped) -> Result<()> {
        if read > 0 || self.allow_empty {
            return Ok(());
        }
        let why = if skipped.count > 0 {
            format!("all {} records were skipped as bad (the first: {})", skipped.count, skipped.examples[0])
        } else {
            "the file holds none".to_string()
        };
        Err(StageError::data(&self.path, format!("no records: {why}; set `allow_empty: true` if that is expected")))
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
/// The longest line a line-oriented source holds in memory; a longer one is a bad record,
/// read past without being kept.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// The lines of a record file (JSON Lines, plain or gzip-compressed, told by its first
/// bytes), streamed: each line is UTF-8 text or why it is not a record (not UTF-8,
/// longer than [`MAX_LINE_BYTES`]), so a bad line is an error or a counted skip like
/// any bad record. Only a regular file is opened (a FIFO would block, a device never
/// end); a gzip stream cut short is an error naming the file.
pub struct RecordLines {
    path: String,
    reader: Box<dyn std::io::BufRead>,
    number: u64,
    buf: Vec<u8>,
}

/// One line: its 1-based number and its text, or why it is not text.
pub type Line<'a> = (u64, std::result::Result<&'a str, String>);

impl RecordLines {
    pub fn open(path: &str) -> Result<RecordLines> {
        Ok(RecordLines { path: path.to_string(), reader: open_maybe_gzip(path)?, number: 0, buf: Vec::new() })
    }

    /// The next line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        self.buf.clear();
        let (mut any, mut too_long) = (false, false);
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) => return Err(read_error(&self.path, self.number, e)),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long && self.buf.len() + take > MAX_LINE_BYTES {
                too_long = true;
                self.buf = Vec::new();
            }
            if !too_long {
                self.buf.extend_from_slice(&chunk[..take]);
            }
            self.reader.consume(take);
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.number += 1;
        if too_long {
            return Ok(Some((self.number, Err(format!("a line longer than {} MiB", MAX_LINE_BYTES >> 20)))));
        }
        let mut line = &self.buf[..];
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|e| {
            let column = std::str::from_utf8(&line[..e.valid_up_to()]).map_or(0, |t| t.chars().count()) + 1;
            format!("not UTF-8 (a bad byte at column {column})")
        });
        Ok(Some((self.number, text)))
    }
}

/// A regular file for reading, decompressed when it starts with gzip's magic number
/// (whatever its name says). A folder, FIFO or device is refused before it is opened.
pub fn open_maybe_gzip(path: &str) -> Result<Box<dyn std::io::BufRead>> {
    use std::io::{BufRead, BufReader};
    let meta = std::fs::metadata(path).map_err(|e| StageError::io(path, e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a folder" } else { "not a regular file (a device, FIFO or socket)" };
        return Err(StageError::data(path, format!("it is {what}; give a file of records")));
    }
    let file = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let gzip = reader.fill_buf().map_err(|e| StageError::io(path, e))?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(1 << 16, flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    })
}

/// A failed read of a record file: a broken gzip stream is bad data, the rest I/O.
fn read_error(path: &str, lines: u64, e: std::io::Error) -> StageError {
    if matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput | std::io::ErrorKind::UnexpectedEof
    ) {
        StageError::data(path, format!("not a valid gzip file (after line {lines}): {e}"))
    } else {
        StageError::io(path, e)
    }
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

/// One JSON value of a file, and the line it starts on (from 1).
#[derive(Debug)]
pub struct Located {
    pub value: serde_json::Value,
    pub line: usize,
}

/// The values of a JSON text: the elements of a top-level array, or every value of a
/// sequence of values separated by whitespace. `Err` names the line and column of the
/// first text that is not JSON.
pub fn values(text: &str) -> std::result::Result<Vec<Located>, String> {
    // Lines are counted as the reading goes forward, never from the start again.
    let mut counted = (0usize, 1usize);
    let mut line_of = |offset: usize| {
        let (from, line) = counted;
        let line = line + text[from..offset].bytes().filter(|&b| b == b'\n').count();
        counted = (offset, line);
        line
    };
    let skip_space = |at: usize| at + text[at..].len() - text[at..].trim_start().len();
    let mut out = Vec::new();
    let mut at = skip_space(0);
    let array = text[at..].starts_with('[');
    if array {
        at = skip_space(at + 1);
        if text[at..].starts_with(']') {
            return Ok(out);
        }
    }
    while at < text.len() {
        let mut stream = serde_json::Deserializer::from_str(&text[at..]).into_iter::<serde_json::Value>();
        let line = line_of(at);
        match stream.next() {
            Some(Ok(value)) => out.push(Located { value, line }),
            Some(Err(e)) => {
                let column = if e.line() == 1 { at - line_start(text, at) + e.column() } else { e.column() };
                return Err(format!("line {}, column {column}: not JSON: {e}", line + e.line() - 1));
            }
            None => break,
        }
        at = skip_space(at + stream.byte_offset());
        if array {
            match text[at..].chars().next() {
                Some(',') => at = skip_space(at + 1),
                Some(']') => {
                    at = skip_space(at + 1);
                    if at < text.len() {
                        return Err(format!("line {}: text after the closing `]`", line_of(at)));
                    }
                    return Ok(out);
                }
                _ => return Err(format!("line {}: expected `,` or `]` after an array element", line_of(at))),
            }
        }
    }
    if array {
        return Err(format!("line {}: the array is not closed with `]`", line_of(text.len())));
    }
    Ok(out)
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}
