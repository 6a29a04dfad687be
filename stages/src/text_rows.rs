//! What the stages that drop rows by their text share (`dedup`, `decontaminate`):
//! checking the compared columns, reading ids and texts, writing the rows kept.

use arrow::array::{BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::DataType;

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::table::Columns;

/// Checks that `columns` are string columns of `schema`; the error names `param`.
pub fn check_text_columns(columns: &[String], schema: &crate::schema::TableSchema, param: &str) -> Result<()> {
    for (i, column) in columns.iter().enumerate() {
        if schema.column(column).is_none_or(|c| c.ty.data != DataType::Utf8) {
            return Err(StageError::param(
                format!("{param}[{i}]"),
                format!("the input table `{}` has no string column `{column}`", schema.name),
            ));
        }
    }
    Ok(())
}

/// Writes the rows of `batches` but those at `removed` (row numbers across the batches)
/// to the output `kept`; returns how many it wrote.
pub fn write_kept(
    ctx: &StageContext,
    batches: &[RecordBatch],
    removed: impl IntoIterator<Item = usize>,
) -> Result<usize> {
    let mut dropped = vec![false; batches.iter().map(RecordBatch::num_rows).sum()];
    for row in removed {
        dropped[row] = true;
    }
    let mut writer = ctx.write_table("kept")?;
    let mut at = 0;
    for batch in batches {
        let keep: BooleanArray = (at..at + batch.num_rows()).map(|i| Some(!dropped[i])).collect();
        writer.write(&filter_record_batch(batch, &keep)?)?;
        at += batch.num_rows();
    }
    writer.finish()
}

/// Ids and the compared text (columns joined by newlines) of every row, in order.
pub fn ids_and_texts(batches: &[RecordBatch], columns: &[String]) -> Result<(Vec<i64>, Vec<String>)> {
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    for batch in batches {
        let cols = Columns::new(batch);
        let id = cols.i64s("id")?;
        let strings: Vec<&StringArray> = columns.iter().map(|c| cols.strings(c)).collect::<Result<_>>()?;
        for i in 0..batch.num_rows() {
            ids.push(id.value(i));
            texts.push(strings.iter().map(|s| s.value(i)).collect::<Vec<_>>().join("\n"));
        }
    }
    Ok((ids, texts))
}
