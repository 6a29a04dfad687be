//! DataFusion over kiln's table artifacts: the `sql` stage kind and `kiln query` share it.
//!
//! A query's output schema is found by planning it over empty tables of the inputs'
//! declared schemas, so a bad query or a missing column is a plan error before anything
//! runs. Execution registers each artifact folder as a Parquet table (no copy) and reads
//! strings as plain Utf8, the type kiln's schemas declare.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::prelude::{ParquetReadOptions, SessionConfig};

use crate::schema::{Column, ColumnType, TableSchema, type_name};

fn session() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(rayon::current_num_threads().max(1))
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false);
    SessionContext::new_with_config(config)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().build().map_err(|e| format!("starting the query runtime: {e}"))
}

/// The message of a failed query: DataFusion's, with the query shown.
fn failed(query: &str, e: impl std::fmt::Display) -> String {
    format!("{e}\n  in the query: {query}")
}

/// A query as a data frame, if it only reads: DDL (`CREATE EXTERNAL TABLE`), DML
/// (`INSERT`, `COPY ... TO`, which would write files) and statements (`SET`) are refused.
async fn read_only(ctx: &SessionContext, query: &str) -> Result<datafusion::dataframe::DataFrame, String> {
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    ctx.sql_with_options(query, options).await.map_err(|e| {
        let message = e.to_string();
        if message.contains("not supported") {
            failed(query, format!("queries only read: {message}"))
        } else {
            failed(query, message)
        }
    })
}

/// The schema a query's result will have, given its tables' schemas.
pub fn plan_schema(query: &str, tables: &[(String, SchemaRef)]) -> Result<SchemaRef, String> {
    let ctx = session();
    for (name, schema) in tables {
        let table = MemTable::try_new(schema.clone(), vec![vec![]]).map_err(|e| e.to_string())?;
        ctx.register_table(name.as_str(), Arc::new(table)).map_err(|e| e.to_string())?;
    }
    let frame = runtime()?.block_on(read_only(&ctx, query))?;
    Ok(Arc::new(frame.schema().as_arrow().clone()))
}

/// The tables a query reads, as DataFusion resolves them (names of its own `WITH`
/// tables left out): `table`, or `schema.table` written with a schema. A query that does
/// not parse is an error with DataFusion's message.
pub fn table_names(query: &str) -> Result<Vec<String>, String> {
    let state = session().state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(query, &dialect).map_err(|e| failed(query, e))?;
    let references = state.resolve_table_references(&statement).map_err(|e| failed(query, e))?;
    let mut names: Vec<String> = references
        .iter()
        .map(|r| match r.schema() {
            Some(schema) => format!("{schema}.{}", r.table()),
            None => r.table().to_string(),
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Runs a query over table folders (each a folder of Parquet parts). A name
/// `schema.table` registers the table in that schema, created if needed.
pub fn execute(query: &str, tables: &[(String, &Path)]) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let ctx = session();
    let rt = runtime()?;
    rt.block_on(async {
        for (name, dir) in tables {
            if let Some((schema, _)) = name.split_once('.') {
                let catalog = ctx.catalog("datafusion").ok_or("the query engine has no default catalog")?;
                if catalog.schema(schema).is_none() {
                    catalog
                        .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
                        .map_err(|e| format!("schema `{schema}`: {e}"))?;
                }
            }
            let options = ParquetReadOptions::default().file_extension(".parquet");
            ctx.register_parquet(name.as_str(), dir.to_string_lossy().as_ref(), options)
                .await
                .map_err(|e| format!("table `{name}`: {e}"))?;
        }
        let frame = read_only(&ctx, query).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(|e| failed(query, e))?;
        Ok((schema, batches))
    })
}

/// The kiln type of an Arrow type: string views and large strings are strings, lists
/// and structs map their items; other types kiln tables do not hold.
fn kiln_type(data: &DataType) -> Option<DataType> {
    Some(match data {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => data.clone(),
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) => {
            DataType::List(Arc::new(Field::new("item", kiln_type(item.data_type())?, true)))
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Some(Field::new(f.name(), kiln_type(f.data_type())?, false)))
                .collect::<Option<Vec<_>>>()?
                .into(),
        ),
        _ => return None,
    })
}

/// A query result's schema as a kiln table schema, or which column kiln cannot hold.
pub fn table_schema(name: &str, schema: &Schema) -> Result<TableSchema, String> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let data = kiln_type(f.data_type()).ok_or_else(|| {
                format!(
                    "column `{}` has type {}, which kiln tables do not hold; cast it in the query",
                    f.name(),
                    type_name(f.data_type())
                )
            })?;
            Ok(Column {
                name: f.name().clone(),
                ty: ColumnType { data, nullable: f.is_nullable() },
                about: String::new(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(TableSchema { name: name.into(), about: "the result of a SQL query".into(), columns })
}
