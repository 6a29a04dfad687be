//! `pack`: token sequences packed into rows of exactly `seq_len` tokens.
//!
//! Invariants: no sequence crosses a row; position ids restart at 0 in each document;
//! the label of each document's first token is -100 (it must not be predicted from the
//! previous document); padding sits at the end of a row, is labelled -100 and is
//! counted. An overlong sequence follows the declared policy (error, drop, truncate, or
//! split into documents of `seq_len`) and is counted, never cut silently.
//!
//! `epochs` writes every sequence that many times; with `repack_each_epoch` each epoch is
//! packed from a differently shuffled order, so documents meet other neighbours.

mod bins;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, ListArray};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::Field;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use bins::{Algorithm, lower_bound, pack_lengths};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;

pub struct Pack;

use crate::schema::IGNORE;

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
    /// Cut it into pieces of `seq_len` tokens, each packed as its own document (counted).
    Split,
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
    /// Passes over the sequences written out: each sequence appears this many times.
    pub epochs: usize,
    /// Pack each epoch anew from a differently shuffled order, so a sequence meets other
    /// neighbours in each; otherwise later epochs repeat the first one's rows.
    pub repack_each_epoch: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seq_len: 1024,
            algorithm: Algorithm::BestFitDecreasing,
            overlong: Overlong::Error,
            pad_id: 0,
            shuffle: true,
            epochs: 1,
            repack_each_epoch: false,
        }
    }
}

/// One tokenized sequence to pack.
pub struct Sequence {
    pub id: i64,
    pub ids: Vec<i32>,
    pub mask: Vec<bool>,
}

/// Tokens per written batch (1024 rows of 1024): buffers small enough for the allocator
/// to reuse rather than map fresh pages for every batch.
const CHUNK_TOKENS: usize = 1 << 20;

/// Assembles the columns of all `rows`, batches of about `CHUNK_TOKENS` in parallel,
/// handing them to `sink` in order (memory holds a few batches, whatever the row count).
pub fn assemble_all(
    sequences: &[Sequence],
    rows: &[Vec<usize>],
    seq_len: usize,
    pad_id: i32,
    mut sink: impl FnMut(Vec<ArrayRef>, &[Vec<usize>]) -> Result<()>,
) -> Result<()> {
    let chunk_rows = (CHUNK_TOKENS / seq_len).max(1);
    let group = chunk_rows * rayon::current_num_threads().max(1);
    for rows in rows.chunks(group) {
        let batches: Vec<Vec<ArrayRef>> =
            rows.par_chunks(chunk_rows).map(|chunk| assemble(sequences, chunk, seq_len, pad_id)).collect();
        for (columns, chunk) in batches.into_iter().zip(rows.chunks(chunk_rows)) {
            sink(columns, chunk)?;
        }
    }
    Ok(())
}

/// The `packed` columns of some rows (indices into `sequences`), each row padded to
/// `seq_len`: input_ids, labels, position_ids, seq_lens, doc_ids.
pub fn assemble(sequences: &[Sequence], rows: &[Vec<usize>], seq_len: usize, pad_id: i32) -> Vec<ArrayRef> {
    let mut input_ids = Vec::with_capacity(rows.len() * seq_len);
    let mut labels = Vec::with_capacity(rows.len() * seq_len);
    let mut positions = Vec::with_capacity(rows.len() * seq_len);
    let mut seq_lens = Vec::new();
    let mut doc_ids = Vec::new();
    let mut doc_offsets = vec![0i32];
    for row in rows {
        for &s in row {
            let seq = &sequences[s];
            input_ids.extend_from_slice(&seq.ids);
            // Labels are the tokens themselves (not shifted); the first of a document
            // cannot be predicted from the previous one.
            labels.extend(
                seq.ids.iter().zip(&seq.mask).enumerate().map(|(i, (&t, &m))| if m && i > 0 { t } else { IGNORE }),
            );
            positions.extend(0..seq.ids.len() as i32);
            seq_lens.push(seq.ids.len() as i32);
            doc_ids.push(seq.id);
        }
        let pad = seq_len * doc_offsets.len() - input_ids.len();
        input_ids.extend(std::iter::repeat_n(pad_id, pad));
        labels.extend(std::iter::repeat_n(IGNORE, pad));
        positions.extend(std::iter::repeat_n(0, pad));
        doc_offsets.push(seq_lens.len() as i32);
    }
    let fixed = OffsetBuffer::from_lengths(std::iter::repeat_n(seq_len, rows.len()));
    let list = |values: ArrayRef, offsets: OffsetBuffer<i32>| -> ArrayRef {
        let field = Arc::new(Field::new("item", values.data_type().clone(), true));
        Arc::new(ListArray::new(field, offsets, values, None))
    };
    let docs = OffsetBuffer::new(ScalarBuffer::from(doc_offsets));
    vec![
        list(Arc::new(Int32Array::from(input_ids)), fixed.clone()),
        list(Arc::new(Int32Array::from(labels)), fixed.clone()),
        list(Arc::new(Int32Array::from(positions)), fixed),
        list(Arc::new(Int32Array::from(seq_lens)), docs.clone()),
        list(Arc::new(Int64Array::from(doc_ids)), docs),
    ]
}

impl Stage for Pack {
    type Params = Params;
    const KIND: &'static str = "pack";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "pack token sequences into fixed-length rows (best-fit-decreasing by default)";
    const RANDOM: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[("id", "int64"), ("input_ids", "list<int32>"), ("loss_mask", "list<bool>")]),
            about: "tokenized sequences",
            optional: false,
        }]
    }

    fn check(params: &Params) -> Result<()> {
        if params.seq_len < 2 {
            return Err(StageError::param("seq_len", "must be at least 2"));
        }
        if params.epochs == 0 {
            return Err(StageError::param("epochs", "must be at least 1"));
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
        let (mut truncated, mut dropped, mut split) = (0usize, 0usize, 0usize);
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
                                    "sequence of {} tokens is longer than seq_len {}; set `overlong:` to drop, truncate or split",
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
                        Overlong::Split => {
                            split += 1;
                            while seq.ids.len() > params.seq_len {
                                let ids = seq.ids.split_off(params.seq_len);
                                let mask = seq.mask.split_off(params.seq_len);
                                let id = seq.id;
                                let head = std::mem::replace(&mut seq, Sequence { id, ids, mask });
                                sequences.push(head);
                            }
                        }
                    }
                }
                if !seq.ids.is_empty() {
                    sequences.push(seq);
                }
            }
        }
        let lengths: Vec<usize> = sequences.iter().map(|s| s.ids.len()).collect();
        let first = pack_lengths(&lengths, params.seq_len, params.algorithm);
        let per_epoch = first.len();
        let mut rows = Vec::with_capacity(per_epoch * params.epochs);
        for epoch in 0..params.epochs {
            let seed = ctx.seed.wrapping_add(epoch as u64);
            let mut packed = if epoch > 0 && params.repack_each_epoch {
                let mut order: Vec<usize> = (0..lengths.len()).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_e90c));
                let shuffled: Vec<usize> = order.iter().map(|&i| lengths[i]).collect();
                let mut packed = pack_lengths(&shuffled, params.seq_len, params.algorithm);
                packed.iter_mut().flatten().for_each(|i| *i = order[*i]);
                packed
            } else {
                first.clone()
            };
            if params.shuffle {
                packed.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            }
            rows.extend(packed);
        }
        ctx.progress().start(rows.iter().map(Vec::len).sum::<usize>() as u64, "sequences");

        let mut writer = ctx.write_table("packed")?;
        let real: usize = lengths.iter().sum::<usize>() * params.epochs;
        let progress = ctx.progress();
        assemble_all(&sequences, &rows, params.seq_len, params.pad_id, |columns, chunk| {
            writer.write_columns(columns)?;
            progress.advance(chunk.iter().map(Vec::len).sum::<usize>() as u64);
            Ok(())
        })?;
        writer.finish()?;

        let capacity = rows.len() * params.seq_len;
        let efficiency = real as f64 / capacity.max(1) as f64;
        let lower_bound = bins::lower_bound(&lengths, params.seq_len) * params.epochs;
        Ok(StageReport::default()
            .metric("sequences", sequences.len())
            .metric("rows", rows.len())
            .metric("rows_per_epoch", per_epoch)
            .metric("epochs", params.epochs)
            .metric("tokens", real)
            .metric("padding", capacity - real)
            .metric("efficiency", efficiency)
            .metric("lower_bound_rows", lower_bound)
            .metric("truncated", truncated)
            .metric("dropped", dropped)
            .metric("split", split)
            .summary(format!(
                "{} sequences in {} rows (lower bound {lower_bound}), efficiency {:.2}%",
                sequences.len(),
                rows.len(),
                100.0 * efficiency
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use arrow::array::{Int32Array, Int64Array};
    use std::sync::Arc;

    /// Sequences of the given lengths; token t of sequence i is 100 i + t, trained when odd.
    fn tokens(dir: &std::path::Path, lengths: &[usize]) -> crate::context::Slot {
        let ids: Vec<Vec<i32>> =
            lengths.iter().enumerate().map(|(i, &n)| (0..n).map(|t| (100 * i + t) as i32).collect()).collect();
        let masks: Vec<Vec<bool>> = ids.iter().map(|s| s.iter().map(|t| t % 2 == 1).collect()).collect();
        testing::write_table(
            dir,
            standard::tokens(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..lengths.len() as i64)),
                crate::table::build::list_i32(ids.iter().map(Vec::as_slice)),
                crate::table::build::list_bool(masks.iter().map(Vec::as_slice)),
                Arc::new(Int32Array::from_iter_values(lengths.iter().map(|&n| n as i32))),
                Arc::new(Int32Array::from_iter_values(masks.iter().map(|m| m.iter().filter(|&&x| x).count() as i32))),
            ],
        )
    }

    fn rows(dir: &std::path::Path) -> Vec<[Vec<i32>; 4]> {
        let batches = testing::read(&dir.join("out/packed"));
        let mut out = Vec::new();
        for b in &batches {
            let c = Columns::new(b);
            for r in 0..b.num_rows() {
                let get = |n: &str| crate::table::list_i32(c.lists(n).unwrap(), r).unwrap();
                out.push([get("input_ids"), get("labels"), get("position_ids"), get("seq_lens")]);
            }
        }
        out
    }

    #[test]
    fn rows_keep_every_token_once_and_documents_apart() {
        let dir = tempfile::tempdir().unwrap();
        let lengths = [5, 16, 3, 9, 1, 7, 12, 2, 4];
        let input = tokens(&dir.path().join("in"), &lengths);
        let report =
            testing::run::<Pack>("{ seq_len: 16, pad_id: -1 }", vec![("data", input)], &dir.path().join("out"), 3)
                .unwrap();
        let rows = rows(dir.path());
        let mut seen = Vec::new();
        for [ids, labels, positions, seq_lens] in &rows {
            assert_eq!(ids.len(), 16);
            let mut at = 0;
            for &len in seq_lens {
                let doc = &ids[at..at + len as usize];
                let i = doc[0] / 100;
                assert_eq!(doc.len(), lengths[i as usize], "a document was cut");
                for (t, &token) in doc.iter().enumerate() {
                    assert_eq!(token, 100 * i + t as i32, "tokens of one document stay together and in order");
                    assert_eq!(positions[at + t], t as i32, "positions restart per document");
                    let trained = token % 2 == 1 && t > 0;
                    assert_eq!(labels[at + t], if trained { token } else { IGNORE }, "label of token {t} of doc {i}");
                }
                seen.push(i);
                at += len as usize;
            }
            assert!(ids[at..].iter().all(|&t| t == -1) && labels[at..].iter().all(|&l| l == IGNORE));
        }
        seen.sort();
        assert_eq!(seen, (0..lengths.len() as i32).collect::<Vec<_>>());
        let real: usize = lengths.iter().sum();
        assert_eq!(report.metrics["rows"], rows.len());
        assert_eq!(report.metrics["lower_bound_rows"], real.div_ceil(16));
        assert_eq!(report.metrics["padding"], rows.len() * 16 - real);
    }

    #[test]
    fn overlong_sequences_follow_the_declared_policy() {
        let dir = tempfile::tempdir().unwrap();
        let input = tokens(&dir.path().join("in"), &[4, 20, 6]);
        let err = testing::run::<Pack>("{ seq_len: 8 }", vec![("data", input.clone())], &dir.path().join("a"), 0)
            .unwrap_err();
        assert!(err.to_string().contains("id 1") && err.to_string().contains("20 tokens"), "{err}");
        let dropped = testing::run::<Pack>(
            "{ seq_len: 8, overlong: drop }",
            vec![("data", input.clone())],
            &dir.path().join("b"),
            0,
        )
        .unwrap();
        assert_eq!((dropped.metrics["dropped"].as_u64(), dropped.metrics["sequences"].as_u64()), (Some(1), Some(2)));
        let cut =
            testing::run::<Pack>("{ seq_len: 8, overlong: truncate }", vec![("data", input)], &dir.path().join("c"), 0)
                .unwrap();
        assert_eq!((cut.metrics["truncated"].as_u64(), cut.metrics["tokens"].as_u64()), (Some(1), Some(18)));
    }

    #[test]
    fn split_cuts_an_overlong_sequence_into_documents_and_loses_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let input = tokens(&dir.path().join("in"), &[4, 20, 6]);
        let report =
            testing::run::<Pack>("{ seq_len: 8, overlong: split }", vec![("data", input)], &dir.path().join("out"), 0)
                .unwrap();
        assert_eq!((report.metrics["split"].as_u64(), report.metrics["tokens"].as_u64()), (Some(1), Some(30)));
        let mut pieces: Vec<Vec<i32>> = Vec::new();
        for [ids, _, positions, seq_lens] in rows(dir.path()) {
            let mut at = 0;
            for &len in &seq_lens {
                assert_eq!(positions[at], 0, "each piece is a document of its own");
                pieces.push(ids[at..at + len as usize].to_vec());
                at += len as usize;
            }
        }
        pieces.sort();
        let long: Vec<i32> = pieces.iter().filter(|p| p[0] / 100 == 1).flatten().copied().collect();
        assert_eq!(long, (100..120).collect::<Vec<_>>());
        assert_eq!(pieces.iter().map(Vec::len).sum::<usize>(), 30);
    }

    #[test]
    fn each_epoch_holds_every_sequence_once_and_repacking_changes_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let lengths: Vec<usize> = (0..60).map(|i| 1 + (i * 7) % 5).collect();
        let input = tokens(&dir.path().join("in"), &lengths);
        let run = |with: &str, out: &str| {
            testing::run::<Pack>(with, vec![("data", input.clone())], &dir.path().join(out).join("out"), 1).unwrap();
            rows(&dir.path().join(out))
        };
        let again = run("{ seq_len: 16, epochs: 3 }", "same");
        let repacked = run("{ seq_len: 16, epochs: 3, repack_each_epoch: true }", "new");
        for rows in [&again, &repacked] {
            let per_epoch = rows.len() / 3;
            for epoch in rows.chunks(per_epoch) {
                let mut docs: Vec<i32> = epoch
                    .iter()
                    .flat_map(|[ids, _, _, seq_lens]| {
                        let mut at = 0;
                        seq_lens.iter().map(move |&l| {
                            let d = ids[at] / 100;
                            at += l as usize;
                            d
                        })
                    })
                    .collect();
                docs.sort();
                assert_eq!(docs, (0..60).collect::<Vec<_>>());
            }
        }
        let compositions = |rows: &[[Vec<i32>; 4]]| {
            let per_epoch = rows.len() / 3;
            rows.chunks(per_epoch)
                .map(|epoch| {
                    let mut c: Vec<Vec<i32>> = epoch.iter().map(|r| r[0].clone()).collect();
                    c.sort();
                    c
                })
                .collect::<Vec<_>>()
        };
        let same = compositions(&again);
        assert!(same[0] == same[1] && same[1] == same[2]);
        let new = compositions(&repacked);
        assert!(new[0] != new[1] && new[1] != new[2]);
    }

    #[test]
    fn a_row_shorter_than_two_tokens_is_refused() {
        let p = Params { seq_len: 1, ..Params::default() };
        assert!(matches!(Pack::check(&p), Err(StageError::Param { path, .. }) if path == "seq_len"));
    }
}
