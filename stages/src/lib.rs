//! kiln-stages: the `Stage` trait, dataset I/O and every built-in stage kind.
//!
//! A stage kind is one folder here and one line in [`registry::BUILTIN`]. It knows
//! nothing about caching, ordering or the command line: it reads its inputs from the
//! context it is handed, writes its outputs through it, and is deterministic given its
//! parameters, inputs and seed.

pub mod code;
pub mod context;
pub mod device;
pub mod error;
pub mod math;
pub mod model;
pub mod names;
pub mod records;
pub mod registry;
pub mod schema;
pub mod stage;
pub mod table;
pub mod template;
pub mod testing;
pub mod text;
pub mod text_rows;
pub mod tokenizer_file;

pub mod chat_format;
pub mod code_generate;
pub mod decontaminate;
pub mod dedup;
pub mod eval_code;
pub mod eval_math;
pub mod math_augment;
pub mod math_generate;
pub mod math_parse;
pub mod mix;
pub mod model_load;
pub mod pack;
pub mod report;
pub mod source_code;
pub mod source_json;
pub mod source_jsonl;
pub mod source_parquet;
pub mod split;
pub mod sql;
pub mod tokenize;
pub mod tokenizer_load;
pub mod tokenizer_train;
pub mod train;

pub use context::{NoProgress, Progress, Slot, StageContext};
pub use error::{Result, StageError};
pub use registry::Registry;
pub use stage::{
    Accepts, Artifact, ConfiguredStage, ExternalFile, InputArtifacts, InputDecl, KindOf, OutputDecl, Stage, StageKind,
    StageReport,
};
