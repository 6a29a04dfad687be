//! `source.jsonl`: records from a JSON Lines file, one object per line, mapped to
//! string columns by a declared field mapping (`fields: { question: question }`; a
//! dotted name reaches into nested objects). Read line by line, so any size streams;
//! a line that is not UTF-8 or longer than 64 MiB is a bad record like invalid JSON,
//! and a file without records is an error unless `allow_empty`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::records::{RecordLines, Skipped, SourceParams};
use crate::stage::{ExternalFile, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct SourceJsonl;

pub type Params = SourceParams;

const BATCH: usize = 8192;

impl Stage for SourceJsonl {
    type Params = Params;
    const KIND: &'static str = "source.jsonl";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "records from a JSON Lines file, with a declared field mapping";

    fn inputs() -> &'static [InputDecl] {
        &[]
    }

    fn check(params: &Params) -> Result<()> {
        params.check()
    }

    fn outputs(params: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(params.outputs())
    }

    fn external_files(params: &Params) -> Vec<ExternalFile> {
        params.external_files()
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let mut lines = RecordLines::open(&params.path)?;
        let size = std::fs::metadata(&params.path).map_or(0, |m| m.len());
        ctx.progress().start(size, "bytes");
        let mut writer = ctx.write_table("records")?;
        let mut skipped = Skipped::default();
        let mut ids: Vec<i64> = Vec::with_capacity(BATCH);
        let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(BATCH); params.fields.len()];
        let mut read = 0u64;
        let flush = |ids: &mut Vec<i64>, columns: &mut Vec<Vec<String>>, writer: &mut crate::table::TableWriter| {
            let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(std::mem::take(ids)))];
            arrays.extend(columns.iter_mut().map(|c| Arc::new(StringArray::from(std::mem::take(c))) as ArrayRef));
            writer.write_columns(arrays)
        };
        while let Some((number, line)) = lines.next_line()? {
            ctx.progress().advance(line.as_ref().map_or(0, |l| l.len() as u64 + 1));
            if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
                continue;
            }
            if params.limit > 0 && read == params.limit {
                break;
            }
            let origin = format!("{}: line {number}", params.path);
            let value = line.and_then(|l| serde_json::from_str(l).map_err(|e| format!("invalid JSON: {e}")));
            match value.and_then(|v| crate::records::mapped_fields(&v, &params.fields)) {
                Ok(values) => {
                    ids.push(number as i64);
                    for (column, value) in columns.iter_mut().zip(values) {
                        column.push(value);
                    }
                    read += 1;
                }
                Err(message) => skipped.bad(params.on_bad_record, StageError::data(origin, message))?,
            }
            if ids.len() == BATCH {
                flush(&mut ids, &mut columns, &mut writer)?;
            }
        }
        params.check_not_empty(read, &skipped)?;
        if !ids.is_empty() || read == 0 {
            flush(&mut ids, &mut columns, &mut writer)?;
        }
        writer.finish()?;
        Ok(skipped.report(read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Columns;
    use crate::testing;

    fn run(dir: &std::path::Path, lines: &str, with: &str) -> Result<StageReport> {
        let path = dir.join("data.jsonl");
        std::fs::write(&path, lines).unwrap();
        let with = with.replace("PATH", &path.display().to_string());
        testing::run::<SourceJsonl>(&with, vec![], &dir.join("out"), 0)
    }

    const FIELDS: &str = "{ path: PATH, fields: { question: question, answer: meta.answer } }";

    #[test]
    fn fields_are_mapped_and_lines_numbered() {
        let dir = tempfile::tempdir().unwrap();
        let lines = "{\"question\": \"Q1\", \"meta\": {\"answer\": \"#### 4\"}}\n\n{\"question\": \"Q2\", \"meta\": {\"answer\": 7}}\n";
        let report = run(dir.path(), lines, FIELDS).unwrap();
        assert_eq!(report.metrics["records"], 2);
        let batches = testing::read(&dir.path().join("out/records"));
        let c = Columns::new(&batches[0]);
        assert_eq!(c.i64s("id").unwrap().values().to_vec(), [1, 3]);
        assert_eq!(c.strings("question").unwrap().value(1), "Q2");
        assert_eq!(c.strings("answer").unwrap().value(1), "7");
    }

    #[test]
    fn a_malformed_record_names_file_line_and_field_or_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let lines = "{\"question\": \"Q1\", \"meta\": {\"answer\": \"4\"}}\n{\"question\": [1], \"meta\": {\"answer\": \"4\"}}\nnot json\n";
        let err = run(dir.path(), lines, FIELDS).unwrap_err().to_string();
        assert!(err.contains("data.jsonl: line 2: field `question`: expected a string, got an array"), "{err}");
        let report = run(dir.path(), lines, &FIELDS.replace("} }", "}, on_bad_record: skip }")).unwrap();
        assert_eq!((report.metrics["records"].as_u64(), report.metrics["skipped"].as_u64()), (Some(1), Some(2)));
        assert!(report.metrics["skipped_examples"][1].as_str().unwrap().contains("line 3: invalid JSON"));
    }

    /// Hostile files: each a located error or, with `skip`, a counted skip; never a
    /// panic, a hang or an unbounded buffer.
    #[test]
    fn hostile_files_are_located_errors_or_counted_skips() {
        let dir = tempfile::tempdir().unwrap();
        let good = "{\"question\": \"Q\", \"meta\": {\"answer\": \"4\"}}\n";
        let skip = FIELDS.replace("} }", "}, on_bad_record: skip }");
        // Not UTF-8 on line 2: named, and skipped when asked.
        let mut bytes = good.as_bytes().to_vec();
        bytes.extend_from_slice(b"{\"question\": \"caf\xe9\"}\n");
        bytes.extend_from_slice(good.as_bytes());
        let err = run(dir.path(), "", FIELDS).unwrap_err().to_string();
        assert!(err.contains("no records: the file holds none; set `allow_empty: true`"), "{err}");
        std::fs::write(dir.path().join("data.jsonl"), &bytes).unwrap();
        let with = FIELDS.replace("PATH", &dir.path().join("data.jsonl").display().to_string());
        let err = testing::run::<SourceJsonl>(&with, vec![], &dir.path().join("out"), 0).unwrap_err().to_string();
        assert!(err.contains("data.jsonl: line 2: not UTF-8 (a bad byte at column 18)"), "{err}");
        let with = skip.replace("PATH", &dir.path().join("data.jsonl").display().to_string());
        let report = testing::run::<SourceJsonl>(&with, vec![], &dir.path().join("out2"), 0).unwrap();
        assert_eq!((report.metrics["records"].as_u64(), report.metrics["skipped"].as_u64()), (Some(2), Some(1)));
        // Truncated JSON on the last line.
        let err = run(dir.path(), &format!("{good}{{\"question\": \"Q"), FIELDS).unwrap_err().to_string();
        assert!(err.contains("line 2: invalid JSON: EOF while parsing"), "{err}");
        // A 100 MB line is read past (at most 64 MiB of it held), the next line still read.
        let long = format!("{{\"question\": \"{}\"}}\n", "x".repeat(100 << 20));
        let report = run(dir.path(), &format!("{long}{good}"), &skip).unwrap();
        assert_eq!((report.metrics["records"].as_u64(), report.metrics["skipped"].as_u64()), (Some(1), Some(1)));
        assert!(report.metrics["skipped_examples"][0].as_str().unwrap().contains("line 1: a line longer than 64 MiB"));
        // Every line bad: no records is an error, saying why; allowed when asked.
        let err = run(dir.path(), "nope\n", &skip).unwrap_err().to_string();
        assert!(err.contains("no records: all 1 records were skipped as bad (the first: "), "{err}");
        let report = run(dir.path(), "", &FIELDS.replace("} }", "}, allow_empty: true }")).unwrap();
        assert_eq!(report.metrics["records"], 0);
        // A folder and a FIFO are refused without being opened.
        for (path, what) in [(dir.path().to_path_buf(), "a folder"), (dir.path().join("fifo"), "not a regular file")] {
            if what != "a folder" {
                assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
            }
            let with = FIELDS.replace("PATH", &path.display().to_string());
            let err = testing::run::<SourceJsonl>(&with, vec![], &dir.path().join("out3"), 0).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
    }

    #[test]
    fn bad_mappings_are_named() {
        let p = Params { path: "x".into(), ..Params::default() };
        assert!(matches!(SourceJsonl::check(&p), Err(StageError::Param { path, .. }) if path == "fields"));
        let p = Params { fields: [("q".to_string(), "q".to_string())].into_iter().collect(), ..Params::default() };
        assert!(matches!(SourceJsonl::check(&p), Err(StageError::Param { path, .. }) if path == "path"));
    }
}
