//! Errors of stage kinds, grouped by whose fault they are: the user's parameters, the
//! data a stage reads, the machine (I/O), or kiln itself.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A parameter is invalid; `path` is its dotted path under `with`, so the orchestrator
    /// can point at it in the pipeline file.
    #[error("{message}")]
    Param { path: String, message: String },

    /// The data a stage reads is not what it needs; `origin` says where (file, line, row).
    #[error("{origin}: {message}")]
    Data { origin: String, message: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Training produced a non-finite loss.
    #[error("loss diverged at step {step}: {value}; lower the learning rate or check the data")]
    Diverged { step: u64, value: f64 },

    /// A broken invariant: a bug in kiln.
    #[error("internal error (this is a bug in kiln, please report it): {0}")]
    Internal(String),
}

impl StageError {
    pub fn param(path: impl Into<String>, message: impl Into<String>) -> Self {
        StageError::Param { path: path.into(), message: message.into() }
    }

    pub fn data(origin: impl Into<String>, message: impl Into<String>) -> Self {
        StageError::Data { origin: origin.into(), message: message.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io { path: path.into(), source }
    }
}

pub type Result<T, E = StageError> = std::result::Result<T, E>;
