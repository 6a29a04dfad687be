//! Table schemas: the declared shape of every table artifact.
//!
//! The standard schemas live as JSON files in the repository's `schemas/` folder and are
//! compiled in from there, so the file a user reads is the schema kiln enforces. A type is
//! written compactly (`int64`, `list<int32>`, `list<struct<role:string,content:string>>`,
//! a trailing `?` for nullable); the same string is what `kiln inspect` prints and what
//! the pyarrow conformance test compares against.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use serde::Deserialize;

use crate::error::StageError;

/// The label of a position that is not trained, in the `labels` of token tables (the
/// Hugging Face and PyTorch convention).
pub const IGNORE: i32 = -100;

/// A named table schema with a description of each column.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub name: String,
    pub about: String,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub about: String,
}

/// The column types kiln's artifacts use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub data: DataType,
    pub nullable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: String,
    about: String,
    fields: Vec<FieldFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    about: String,
}

impl TableSchema {
    /// Parses a schema file's JSON text. `origin` names the file in errors.
    pub fn from_json(origin: &str, text: &str) -> Result<Self, StageError> {
        let file: SchemaFile =
            serde_json::from_str(text).map_err(|e| StageError::Internal(format!("{origin}: {e}")))?;
        let columns = file
            .fields
            .into_iter()
            .map(|f| {
                let ty = ColumnType::parse(&f.ty)
                    .map_err(|e| StageError::Internal(format!("{origin}: field `{}`: {e}", f.name)))?;
                Ok(Column { name: f.name, ty, about: f.about })
            })
            .collect::<Result<_, StageError>>()?;
        Ok(TableSchema { name: file.name, about: file.about, columns })
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn arrow(&self) -> Arc<Schema> {
        Arc::new(Schema::new(
            self.columns.iter().map(|c| Field::new(&c.name, c.ty.data.clone(), c.ty.nullable)).collect::<Vec<_>>(),
        ))
    }

    /// One line per column, `name: type`, as printed by `kiln inspect` and hashed into keys.
    pub fn describe(&self) -> String {
        self.columns.iter().map(|c| format!("{}: {}\n", c.name, c.ty)).collect()
    }
}

impl ColumnType {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (body, nullable) = match text.strip_suffix('?') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let mut parser = TypeParser { text: body, pos: 0 };
        let data = parser.data_type()?;
        if parser.pos != body.len() {
            return Err(format!("unexpected `{}` in type `{text}`", &body[parser.pos..]));
        }
        Ok(ColumnType { data, nullable })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", type_name(&self.data), if self.nullable { "?" } else { "" })
    }
}

/// The compact name of an Arrow type, the inverse of `ColumnType::parse`.
pub fn type_name(data: &DataType) -> String {
    match data {
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::List(item) | DataType::LargeList(item) => {
            format!("list<{}>", type_name(item.data_type()))
        }
        DataType::Struct(fields) => {
            let inner: Vec<String> =
                fields.iter().map(|f| format!("{}:{}", f.name(), type_name(f.data_type()))).collect();
            format!("struct<{}>", inner.join(","))
        }
        other => format!("{other}"),
    }
}

struct TypeParser<'a> {
    text: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    fn data_type(&mut self) -> Result<DataType, String> {
        let word = self.word();
        match word {
            "bool" => Ok(DataType::Boolean),
            "int8" => Ok(DataType::Int8),
            "int16" => Ok(DataType::Int16),
            "int32" => Ok(DataType::Int32),
            "int64" => Ok(DataType::Int64),
            "uint32" => Ok(DataType::UInt32),
            "uint64" => Ok(DataType::UInt64),
            "float32" => Ok(DataType::Float32),
            "float64" => Ok(DataType::Float64),
            "string" => Ok(DataType::Utf8),
            "list" => {
                self.expect('<')?;
                let item = self.data_type()?;
                self.expect('>')?;
                // Lists of structs hold non-null structs; lists of scalars follow Arrow's
                // default (nullable items), which is what pyarrow and polars write too.
                Ok(DataType::List(Arc::new(Field::new("item", item, true))))
            }
            "struct" => {
                self.expect('<')?;
                let mut fields = Vec::new();
                loop {
                    let name = self.word().to_string();
                    if name.is_empty() {
                        return Err("expected a field name in struct<...>".into());
                    }
                    self.expect(':')?;
                    let ty = self.data_type()?;
                    fields.push(Field::new(name, ty, false));
                    if self.peek() == Some(',') {
                        self.pos += 1;
                        continue;
                    }
                    self.expect('>')?;
                    break;
                }
                Ok(DataType::Struct(Fields::from(fields)))
            }
            "" => Err(format!("expected a type at `{}`", &self.text[self.pos..])),
            other => Err(format!("unknown type `{other}`")),
        }
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                self.pos += 1;
            } else {
                break;
            }
        }
        &self.text[start..self.pos]
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{c}` at `{}`", &self.text[self.pos..]))
        }
    }
}

/// The standard schemas of `schemas/`, compiled in.
pub mod standard {
    use super::TableSchema;
    use std::sync::LazyLock;

    macro_rules! standard_schema {
        ($fn_name:ident, $file:literal) => {
            pub fn $fn_name() -> &'static TableSchema {
                static SCHEMA: LazyLock<TableSchema> = LazyLock::new(|| {
                    TableSchema::from_json(concat!("schemas/", $file), include_str!(concat!("../../schemas/", $file)))
                        .expect("the standard schemas parse (tested)")
                });
                &SCHEMA
            }
        };
    }

    standard_schema!(problems, "problems.json");
    standard_schema!(chats, "chats.json");
    standard_schema!(tokens, "tokens.json");
    standard_schema!(packed, "packed.json");
    standard_schema!(train_metrics, "train_metrics.json");
    standard_schema!(predictions, "predictions.json");
    standard_schema!(duplicates, "duplicates.json");
    standard_schema!(contamination, "contamination.json");
    standard_schema!(augmented, "augmented.json");
    standard_schema!(math_problems, "math_problems.json");
    standard_schema!(code_problems, "code_problems.json");
    standard_schema!(code_samples, "code_samples.json");

    /// Every standard schema, for `kiln schema` listings and conformance tests.
    pub fn all() -> Vec<&'static TableSchema> {
        vec![
            problems(),
            chats(),
            tokens(),
            packed(),
            train_metrics(),
            predictions(),
            duplicates(),
            contamination(),
            augmented(),
            math_problems(),
            code_problems(),
            code_samples(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_through_their_names() {
        for text in [
            "int64",
            "string?",
            "list<int32>",
            "list<bool>",
            "list<struct<role:string,content:string>>",
            "struct<a:int32,b:list<float64>>",
        ] {
            let ty = ColumnType::parse(text).unwrap();
            assert_eq!(ty.to_string(), text);
        }
    }

    #[test]
    fn bad_types_are_rejected_with_the_offending_text() {
        let err = ColumnType::parse("list<int33>").unwrap_err();
        assert!(err.contains("int33"), "{err}");
        let err = ColumnType::parse("list<int32").unwrap_err();
        assert!(err.contains("expected `>`"), "{err}");
    }

    #[test]
    fn every_standard_schema_parses() {
        let names: Vec<_> = standard::all().iter().map(|s| s.name.clone()).collect();
        assert_eq!(
            names,
            [
                "problems",
                "chats",
                "tokens",
                "packed",
                "train_metrics",
                "predictions",
                "duplicates",
                "contamination",
                "augmented",
                "math_problems",
                "code_problems",
                "code_samples"
            ]
        );
        assert!(standard::packed().column("seq_lens").is_some());
    }
}
