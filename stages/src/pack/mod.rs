//! `pack`: token sequences packed into rows of exactly `seq_len` tokens.
//!
//! Invariants: no sequence crosses a row; position ids restart at 0 in each document;
//! the label of each document's first token is -100 (it must not be predicted from the
//! previous document); padding sits at the end of a row, is labelled -100 and is
//! counted. An overlong sequence follows the declared policy and is counted, never cut
//! silently.

mod bins;

use arrow::array::ArrayRef;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use bins::{Algorithm, pack_lengths};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::{Columns, build};

pub struct Pack;

/// Label value ignored by the loss (Hugging Face and PyTorch convention).
pub const IGNORE: i32 = -100;

/// What to do with a sequence longer than `seq_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Fail the stage, naming the sequence.
    Error,
    /// Leave it out (counted).
    Drop,
    /// Keep its first `seq_len` tokens (counted).
    Truncate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub seq_len: usize,
    pub algorithm: Algorithm,
    pub overlong: Overlong,
    /// Token id written into padding (its label is always -100).
    pub pad_id: i32,
    /// Shuffle the rows after packing (seeded).
    pub shuffle: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seq_len: 1024,
            algorithm: Algorithm::BestFitDecreasing,
            overlong: Overlong::Error,
            pad_id: 0,
            shuffle: true,
        }
    }
}

struct Sequence {
    id: i64,
    ids: Vec<i32>,
    mask: Vec<bool>,
}

impl Stage for Pack {
    type Params = Params;
    const KIND: &'static str = "pack";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "pack token sequences into fixed-length rows (best-fit-decreasing by default)";
    const RANDOM: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[("id", "int64"), ("input_ids", "list<int32>"), ("loss_mask", "list<bool>")]),
            about: "tokenized sequences",
        }]
    }

    fn check(params: &Params) -> Result<()> {
        if params.seq_len < 2 {
            return Err(StageError::param("seq_len", "must be at least 2"));
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::table("packed", standard::packed())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let input = ctx.table("data")?;
        let origin = ctx.input("data")?.origin.clone();
        let mut sequences = Vec::new();
        let (mut truncated, mut dropped) = (0usize, 0usize);
        for batch in input.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, tokens, masks) = (cols.i64s("id")?, cols.lists("input_ids")?, cols.lists("loss_mask")?);
            for row in 0..batch.num_rows() {
                let mut seq = Sequence {
                    id: ids.value(row),
                    ids: crate::table::list_i32(tokens, row)?,
                    mask: masks
                        .value(row)
                        .as_any()
                        .downcast_ref::<arrow::array::BooleanArray>()
                        .ok_or_else(|| StageError::Internal("loss_mask is not list<bool>".into()))?
                        .values()
                        .iter()
                        .collect(),
                };
                if seq.ids.len() > params.seq_len {
                    match params.overlong {
                        Overlong::Error => {
                            return Err(StageError::data(
                                format!("{origin}: id {}", seq.id),
                                format!(
                                    "sequence of {} tokens is longer than seq_len {}; set `overlong: drop` or `overlong: truncate`",
                                    seq.ids.len(),
                                    params.seq_len
                                ),
                            ));
                        }
                        Overlong::Drop => {
                            dropped += 1;
                            continue;
                        }
                        Overlong::Truncate => {
                            truncated += 1;
                            seq.ids.truncate(params.seq_len);
                            seq.mask.truncate(params.seq_len);
                        }
                    }
                }
                if !seq.ids.is_empty() {
                    sequences.push(seq);
                }
            }
        }
        ctx.progress().start(sequences.len() as u64, "sequences");
        let lengths: Vec<usize> = sequences.iter().map(|s| s.ids.len()).collect();
        let mut rows = pack_lengths(&lengths, params.seq_len, params.algorithm);
        if params.shuffle {
            rows.shuffle(&mut ChaCha8Rng::seed_from_u64(ctx.seed));
        }

        let mut writer = ctx.write_table("packed")?;
        let real: usize = lengths.iter().sum();
        for chunk in rows.chunks(1024) {
            let mut cols: [Vec<Vec<i32>>; 4] = Default::default();
            let mut doc_ids: Vec<Vec<i64>> = Vec::with_capacity(chunk.len());
            for row in chunk {
                let mut input_ids = Vec::with_capacity(params.seq_len);
                let mut labels = Vec::with_capacity(params.seq_len);
                let mut positions = Vec::with_capacity(params.seq_len);
                let mut seq_lens = Vec::with_capacity(row.len());
                let mut docs = Vec::with_capacity(row.len());
                for &s in row {
                    let seq = &sequences[s];
                    for (i, (&t, &m)) in seq.ids.iter().zip(&seq.mask).enumerate() {
                        input_ids.push(t);
                        labels.push(if m && i > 0 { t } else { IGNORE });
                        positions.push(i as i32);
                    }
                    seq_lens.push(seq.ids.len() as i32);
                    docs.push(seq.id);
                }
                let pad = params.seq_len - input_ids.len();
                input_ids.extend(std::iter::repeat_n(params.pad_id, pad));
                labels.extend(std::iter::repeat_n(IGNORE, pad));
                positions.extend(std::iter::repeat_n(0, pad));
                for (col, v) in cols.iter_mut().zip([input_ids, labels, positions, seq_lens]) {
                    col.push(v);
                }
                doc_ids.push(docs);
                ctx.progress().advance(row.len() as u64);
            }
            let mut columns: Vec<ArrayRef> =
                cols.iter().map(|c| build::list_i32(c.iter().map(Vec::as_slice))).collect();
            columns.push(build::list_i64(doc_ids.iter().map(Vec::as_slice)));
            writer.write_columns(columns)?;
        }
        writer.finish()?;

        let capacity = rows.len() * params.seq_len;
        let efficiency = real as f64 / capacity.max(1) as f64;
        let lower_bound = real.div_ceil(params.seq_len);
        Ok(StageReport::default()
            .metric("sequences", sequences.len())
            .metric("rows", rows.len())
            .metric("tokens", real)
            .metric("padding", capacity - real)
            .metric("efficiency", efficiency)
            .metric("lower_bound_rows", lower_bound)
            .metric("truncated", truncated)
            .metric("dropped", dropped)
            .summary(format!(
                "{} sequences in {} rows (lower bound {lower_bound}), efficiency {:.2}%",
                sequences.len(),
                rows.len(),
                100.0 * efficiency
            )))
    }
}
