//! `source.json`: records from JSON that is not one object per line: a file holding an
//! array of objects, a file of objects written one after another (pretty-printed over
//! several lines each, as Math23K's file is; JSON Lines is the one-line case), or a
//! folder of `.json` files with one object each (MATH's layout, `test/algebra/1.json`),
//! read in path order. Fields are mapped as `source.jsonl` maps them.
//!
//! The file is read whole (a folder file by file). A record that does not fit the mapping
//! is an error naming the file and the line it starts on, or with `on_bad_record: skip` a
//! counted skip; text that is not JSON is always an error, since no record after it can
//! be found with certainty.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::records::{Skipped, SourceParams, files_under, mapped_fields, values};
use crate::stage::{ExternalFile, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct SourceJson;

pub type Params = SourceParams;

impl Stage for SourceJson {
    type Params = Params;
    const KIND: &'static str = "source.json";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "records from a JSON array, objects written one after another, or a folder of .json files";

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
        params.external_files().into_iter().map(|f| ExternalFile { folder: true, ..f }).collect()
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let root = Path::new(&params.path);
        let files = if root.is_dir() {
            let all = files_under(root).map_err(|e| StageError::io(root, e))?;
            all.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")).collect()
        } else {
            vec![root.to_path_buf()]
        };
        ctx.progress().start(files.len() as u64, "files");
        let mut writer = ctx.write_table("records")?;
        let mut skipped = Skipped::default();
        let mut ids: Vec<i64> = Vec::new();
        let mut columns: Vec<Vec<String>> = vec![Vec::new(); params.fields.len()];
        let mut read = 0u64;
        let mut number = 0i64;
        'files: for file in &files {
            let shown = file.display().to_string();
            let text = read_text(&shown)?;
            let located = values(&text).map_err(|e| StageError::data(&shown, e))?;
            for record in located {
                if params.limit > 0 && read == params.limit {
                    break 'files;
                }
                number += 1;
                let origin = if root.is_dir() { shown.clone() } else { format!("{shown}: line {}", record.line) };
                match mapped_fields(&record.value, &params.fields) {
                    Ok(values) => {
                        ids.push(number);
                        for (column, value) in columns.iter_mut().zip(values) {
                            column.push(value);
                        }
                        read += 1;
                    }
                    Err(message) => skipped.bad(params.on_bad_record, StageError::data(origin, message))?,
                }
            }
            ctx.progress().advance(1);
        }
        params.check_not_empty(read, &skipped)?;
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids))];
        arrays.extend(columns.into_iter().map(|c| Arc::new(StringArray::from(c)) as ArrayRef));
        writer.write_columns(arrays)?;
        writer.finish()?;
        Ok(skipped.report(read))
    }
}

/// A whole JSON file as text (a regular file, perhaps gzip-compressed); bytes that are
/// not UTF-8 are named by line and column.
fn read_text(path: &str) -> Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    crate::records::open_maybe_gzip(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| StageError::data(path, e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = std::str::from_utf8(&e.as_bytes()[..e.utf8_error().valid_up_to()]).expect("valid up to here");
        let line = good.matches('\n').count() + 1;
        let column = good.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        StageError::data(format!("{path}: line {line}"), format!("not UTF-8 (a bad byte at column {column})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Located;

    fn lines(values: &[Located]) -> Vec<usize> {
        values.iter().map(|v| v.line).collect()
    }

    #[test]
    fn arrays_streams_and_pretty_printed_objects_are_read_with_their_lines() {
        let stream = "{\n    \"id\":\"1\",\n    \"ans\":\"3\"\n}\n{\n    \"id\":\"2\",\n    \"ans\":\"80%\"\n}\n";
        let v = values(stream).unwrap();
        assert_eq!(lines(&v), [1, 5]);
        assert_eq!(v[1].value["ans"], "80%");
        let array = "[\n  {\"a\": 1},\n  {\"a\": 2}\n]\n";
        assert_eq!(lines(&values(array).unwrap()), [2, 3]);
        assert_eq!(lines(&values("{\"a\":1}\n{\"a\":2}\n").unwrap()), [1, 2]);
        assert!(values("[]").unwrap().is_empty() && values("  \n").unwrap().is_empty());
    }

    #[test]
    fn a_path_and_a_mapping_are_required_and_a_folder_is_accepted() {
        let named = |p: &Params, path: &str| matches!(SourceJson::check(p), Err(StageError::Param { path: at, .. }) if at == path);
        assert!(named(&Params::default(), "path"));
        let fields = [("question".to_string(), "q".to_string())].into_iter().collect();
        let p = Params { path: "data".into(), fields, ..Params::default() };
        assert!(SourceJson::check(&p).is_ok());
        assert!(SourceJson::external_files(&p)[0].folder, "a folder of .json files is a source");
        assert!(named(&Params { fields: Default::default(), ..p }, "fields"));
    }

    #[test]
    fn text_that_is_not_json_is_located() {
        let err = values("{\"a\": 1}\n{\"a\": 2,,}\n").unwrap_err();
        assert!(err.starts_with("line 2, column"), "{err}");
        let err = values("[{\"a\": 1} {\"a\": 2}]").unwrap_err();
        assert!(err.contains("expected `,` or `]`"), "{err}");
        let err = values("[{\"a\": 1},").unwrap_err();
        assert!(err.contains("not closed") || err.contains("not JSON"), "{err}");
    }
}
