//! `source.parquet`: records from a Parquet file (or a folder of parts), mapped to string
//! columns by a declared field mapping. Read a row group at a time, so any size streams.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::records::{Skipped, SourceParams};
use crate::stage::{ExternalFile, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct SourceParquet;

pub type Params = SourceParams;

impl Stage for SourceParquet {
    type Params = Params;
    const KIND: &'static str = "source.parquet";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "records from a Parquet file, with a declared field mapping";

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
        let path = PathBuf::from(&params.path);
        let file = File::open(&path).map_err(|e| StageError::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| StageError::data(params.path.clone(), format!("not a Parquet file: {e}")))?;
        let schema = builder.schema().clone();
        for (column, field) in &params.fields {
            if schema.field_with_name(field).is_err() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(StageError::data(
                    params.path.clone(),
                    format!("no column `{field}` (for `{column}`); the file has {}", names.join(", ")),
                ));
            }
        }
        let total = builder.metadata().file_metadata().num_rows() as u64;
        ctx.progress().start(total, "rows");
        let reader = builder.with_batch_size(8192).build()?;
        let mut writer = ctx.write_table("records")?;
        let mut skipped = Skipped::default();
        let (mut row, mut read) = (0u64, 0u64);
        for batch in reader {
            let batch = batch?;
            let strings: Vec<ArrayRef> = params
                .fields
                .values()
                .map(|field| as_strings(&params.path, field, batch.column_by_name(field).expect("checked above")))
                .collect::<Result<_>>()?;
            let strings: Vec<&StringArray> =
                strings.iter().map(|a| a.as_any().downcast_ref::<StringArray>().expect("cast to utf8")).collect();
            let mut keep = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                row += 1;
                if params.limit > 0 && read == params.limit {
                    break;
                }
                let null = params.fields.values().zip(&strings).find(|(_, s)| s.is_null(i));
                match null {
                    Some((field, _)) => skipped.bad(
                        params.on_bad_record,
                        StageError::data(format!("{}: row {row}", params.path), format!("field `{field}` is null")),
                    )?,
                    None => {
                        keep.push((row as i64, i));
                        read += 1;
                    }
                }
            }
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(keep.iter().map(|k| k.0)))];
            for s in &strings {
                columns.push(Arc::new(StringArray::from_iter_values(keep.iter().map(|&(_, i)| s.value(i)))));
            }
            writer.write_columns(columns)?;
            ctx.progress().advance(batch.num_rows() as u64);
            if params.limit > 0 && read == params.limit {
                break;
            }
        }
        params.check_not_empty(read, &skipped)?;
        writer.finish()?;
        Ok(skipped.report(read))
    }
}

fn as_strings(path: &str, field: &str, column: &ArrayRef) -> Result<ArrayRef> {
    if column.data_type() == &DataType::Utf8 {
        return Ok(column.clone());
    }
    cast(column, &DataType::Utf8).map_err(|e| {
        StageError::data(
            path.to_string(),
            format!("column `{field}` ({}) cannot be read as text: {e}", column.data_type()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableSchema;
    use crate::table::{Columns, TableWriter};
    use crate::testing;

    #[test]
    fn columns_are_mapped_cast_and_nulls_follow_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let schema = TableSchema::from_json(
            "t",
            r#"{"name": "t", "about": "", "fields": [{"name": "q", "type": "string?"}, {"name": "n", "type": "int64"}]}"#,
        )
        .unwrap();
        let mut w = TableWriter::create(&dir.path().join("in"), &schema).unwrap();
        w.write_columns(vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        ])
        .unwrap();
        w.finish().unwrap();
        let file = dir.path().join("in/part-00000.parquet").display().to_string();
        let with = format!("{{ path: {file}, fields: {{ question: q, number: n }} }}");
        let err = testing::run::<SourceParquet>(&with, vec![], &dir.path().join("o1"), 0).unwrap_err().to_string();
        assert!(err.contains("row 2: field `q` is null"), "{err}");
        let with = format!("{{ path: {file}, fields: {{ question: q, number: n }}, on_bad_record: skip }}");
        let report = testing::run::<SourceParquet>(&with, vec![], &dir.path().join("o2"), 0).unwrap();
        assert_eq!(report.metrics["skipped"], 1);
        let batches = testing::read(&dir.path().join("o2/records"));
        let c = Columns::new(&batches[0]);
        assert_eq!(c.i64s("id").unwrap().values().to_vec(), [1, 3]);
        assert_eq!(c.strings("number").unwrap().value(1), "3");
        let with = format!("{{ path: {file}, fields: {{ question: nope }} }}");
        let err = testing::run::<SourceParquet>(&with, vec![], &dir.path().join("o3"), 0).unwrap_err().to_string();
        assert!(err.contains("no column `nope`") && err.contains("the file has q, n"), "{err}");
    }
}
