//! Table artifacts on disk: Parquet parts (zstd) written and read as Arrow batches.
//!
//! A table artifact is a folder of `part-NNNNN.parquet` files read in name order. The
//! writer checks every batch against the declared schema, so a stage cannot write what
//! its declaration does not promise; it writes no timestamps, so the same batches give
//! the same bytes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray,
};
use arrow::datatypes::Schema;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Result, StageError};
use crate::schema::TableSchema;

/// Rows per Parquet row group: small enough that a reader streams, large enough that
/// column chunks compress well.
const ROW_GROUP_ROWS: usize = 8192;

/// Writes one table artifact.
pub struct TableWriter {
    schema: Arc<Schema>,
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: usize,
}

impl TableWriter {
    pub fn create(dir: &Path, schema: &TableSchema) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StageError::io(dir, e))?;
        let path = dir.join("part-00000.parquet");
        let file = File::create(&path).map_err(|e| StageError::io(&path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("kiln {}", env!("CARGO_PKG_VERSION")))
            .build();
        let arrow_schema = schema.arrow();
        let writer = ArrowWriter::try_new(file, arrow_schema.clone(), Some(props))?;
        Ok(TableWriter { schema: arrow_schema, path, writer, rows: 0 })
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Builds a batch of the declared schema from columns in declaration order.
    pub fn batch(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(StageError::Internal(format!(
                "{}: batch schema {:?} differs from the declared {:?}",
                self.path.display(),
                batch.schema().fields(),
                self.schema.fields()
            )));
        }
        self.rows += batch.num_rows();
        self.writer.write(batch)?;
        Ok(())
    }

    /// Writes columns given in declaration order.
    pub fn write_columns(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        let batch = self.batch(columns)?;
        self.write(&batch)
    }

    /// Flushes and closes the file; returns the number of rows written.
    pub fn finish(self) -> Result<usize> {
        let file = self.writer.into_inner()?;
        file.sync_all().map_err(|e| StageError::io(&self.path, e))?;
        Ok(self.rows)
    }
}

/// Reads one table artifact.
#[derive(Debug, Clone)]
pub struct TableReader {
    parts: Vec<PathBuf>,
}

impl TableReader {
    pub fn open(dir: &Path) -> Result<Self> {
        let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| StageError::io(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        parts.sort();
        Ok(TableReader { parts })
    }

    pub fn parts(&self) -> &[PathBuf] {
        &self.parts
    }

    /// Rows of the table, from the Parquet footers alone.
    pub fn num_rows(&self) -> Result<usize> {
        let mut rows = 0;
        for part in &self.parts {
            let file = File::open(part).map_err(|e| StageError::io(part, e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
            rows += builder.metadata().file_metadata().num_rows() as usize;
        }
        Ok(rows)
    }

    /// Streams the table's batches in order.
    pub fn batches(&self) -> impl Iterator<Item = Result<RecordBatch>> + '_ {
        self.parts.iter().flat_map(|part| {
            let reader = File::open(part).map_err(|e| StageError::io(part, e)).and_then(|file| {
                Ok(ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(ROW_GROUP_ROWS).build()?)
            });
            let iter: Box<dyn Iterator<Item = Result<RecordBatch>>> = match reader {
                Ok(reader) => Box::new(reader.map(|b| b.map_err(StageError::from))),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            iter
        })
    }

    /// Reads the whole table into memory.
    pub fn read_all(&self) -> Result<Vec<RecordBatch>> {
        self.batches().collect()
    }
}

/// Typed access to a batch's columns by name, with errors that name the column.
pub struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    pub fn new(batch: &'a RecordBatch) -> Self {
        Columns { batch }
    }

    fn get<T: 'static>(&self, name: &str) -> Result<&'a T> {
        let column = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| StageError::Internal(format!("input has no column `{name}`")))?;
        column.as_any().downcast_ref::<T>().ok_or_else(|| {
            StageError::Internal(format!("column `{name}` has type {}, not the declared one", column.data_type()))
        })
    }

    pub fn strings(&self, name: &str) -> Result<&'a StringArray> {
        self.get(name)
    }
    pub fn i64s(&self, name: &str) -> Result<&'a Int64Array> {
        self.get(name)
    }
    pub fn i32s(&self, name: &str) -> Result<&'a Int32Array> {
        self.get(name)
    }
    pub fn f64s(&self, name: &str) -> Result<&'a Float64Array> {
        self.get(name)
    }
    pub fn bools(&self, name: &str) -> Result<&'a BooleanArray> {
        self.get(name)
    }
    pub fn lists(&self, name: &str) -> Result<&'a ListArray> {
        self.get(name)
    }
    pub fn structs(&self, name: &str) -> Result<&'a StructArray> {
        self.get(name)
    }
}

/// The values of row `row` of a `list<int32>` column.
pub fn list_i32(list: &ListArray, row: usize) -> Result<Vec<i32>> {
    let values = list.value(row);
    let values = values
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| StageError::Internal("expected list<int32>".into()))?;
    Ok(values.values().to_vec())
}

/// Builders for the list columns kiln writes most.
pub mod build {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    };
    use arrow::datatypes::{DataType, Field, Fields};

    pub fn list_i32<'a>(rows: impl IntoIterator<Item = &'a [i32]>) -> ArrayRef {
        let mut builder = ListBuilder::new(Int32Builder::new());
        for row in rows {
            builder.values().append_slice(row);
            builder.append(true);
        }
        Arc::new(builder.finish())
    }

    pub fn list_i64<'a>(rows: impl IntoIterator<Item = &'a [i64]>) -> ArrayRef {
        let mut builder = ListBuilder::new(Int64Builder::new());
        for row in rows {
            builder.values().append_slice(row);
            builder.append(true);
        }
        Arc::new(builder.finish())
    }

    pub fn list_bool<'a>(rows: impl IntoIterator<Item = &'a [bool]>) -> ArrayRef {
        let mut builder = ListBuilder::new(BooleanBuilder::new());
        for row in rows {
            builder.values().append_slice(row);
            builder.append(true);
        }
        Arc::new(builder.finish())
    }

    /// A `list<struct<...>>` column whose struct fields are all strings or int32s, given
    /// per row as a list of records (one `Vec<Value>` per struct, in field order).
    pub fn list_struct(fields: &[(&str, DataType)], rows: &[Vec<Vec<Value>>]) -> ArrayRef {
        let arrow_fields: Fields = fields.iter().map(|(name, ty)| Field::new(*name, ty.clone(), false)).collect();
        let mut builder = ListBuilder::new(StructBuilder::from_fields(arrow_fields, 0));
        for row in rows {
            let structs = builder.values();
            for record in row {
                for (i, value) in record.iter().enumerate() {
                    match value {
                        Value::Str(s) => {
                            structs.field_builder::<StringBuilder>(i).expect("string field").append_value(s)
                        }
                        Value::I32(v) => {
                            structs.field_builder::<Int32Builder>(i).expect("int32 field").append_value(*v)
                        }
                    }
                }
                structs.append(true);
            }
            builder.append(true);
        }
        Arc::new(builder.finish())
    }

    #[derive(Debug, Clone)]
    pub enum Value {
        Str(String),
        I32(i32),
    }
}
