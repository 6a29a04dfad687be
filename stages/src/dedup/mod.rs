//! `dedup`: exact duplicates (same text after NFKC, lowercasing and whitespace folding)
//! and near duplicates (MinHash over word n-grams, LSH banding, union-find clusters)
//! removed; of each cluster the row with the smallest id is kept. Every removal is
//! listed with the row it duplicates.
//!
//! Candidates that share an LSH bucket are confirmed by their signatures' estimated
//! similarity before they are joined, so banding's false positives do not merge
//! unrelated rows. Deterministic for a seed: hashes are xxh3, permutations come from the
//! seed, buckets are visited in sorted order.

pub mod minhash;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::DataType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;
use crate::text;
use minhash::{MinHasher, UnionFind, optimal_bands, similarity};

pub struct Dedup;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// The text columns compared (joined with a newline).
    pub columns: Vec<String>,
    /// Remove exact duplicates.
    pub exact: bool,
    /// Remove near duplicates.
    pub near: bool,
    /// Words per shingle.
    pub ngram: usize,
    pub permutations: usize,
    /// Estimated Jaccard similarity at which two rows are near duplicates.
    pub threshold: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            columns: vec!["question".into()],
            exact: true,
            near: true,
            ngram: 5,
            permutations: 256,
            threshold: 0.7,
        }
    }
}

/// Why a row was removed: the row kept in its place, how, and how similar.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    pub row: usize,
    pub kept: usize,
    pub kind: &'static str,
    pub similarity: f64,
}

impl Stage for Dedup {
    type Params = Params;
    const KIND: &'static str = "dedup";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "remove exact and MinHash-LSH near duplicates (the smallest id of a cluster is kept)";
    const RANDOM: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[("id", "int64")]),
            about: "rows with text columns",
            optional: false,
        }]
    }

    fn check(params: &Params) -> Result<()> {
        if params.columns.is_empty() {
            return Err(StageError::param("columns", "name at least one text column"));
        }
        if !(params.threshold > 0.0 && params.threshold <= 1.0) {
            return Err(StageError::param("threshold", "must be in (0, 1]"));
        }
        if params.ngram == 0 || params.permutations == 0 {
            let path = if params.ngram == 0 { "ngram" } else { "permutations" };
            return Err(StageError::param(path, "must be at least 1"));
        }
        Ok(())
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        let Some(Artifact::Table(schema)) = inputs.get("data") else {
            return Err(StageError::Internal("dedup reads a table".into()));
        };
        check_text_columns(&params.columns, schema, "columns")?;
        Ok(vec![OutputDecl::table("kept", schema), OutputDecl::report("duplicates", standard::duplicates())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let batches = ctx.table("data")?.read_all()?;
        let (ids, texts) = ids_and_texts(&batches, &params.columns)?;
        ctx.progress().start(texts.len() as u64, "rows");
        let removals = find_duplicates(&ids, &texts, params, ctx.seed);
        ctx.progress().advance(texts.len() as u64);

        let kept = write_kept(ctx, &batches, removals.iter().map(|r| r.row))?;
        let mut dups = ctx.write_table("duplicates")?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(removals.iter().map(|r| ids[r.row]))),
            Arc::new(Int64Array::from_iter_values(removals.iter().map(|r| ids[r.kept]))),
            Arc::new(StringArray::from_iter_values(removals.iter().map(|r| r.kind))),
            Arc::new(Float64Array::from_iter_values(removals.iter().map(|r| r.similarity))),
        ];
        dups.write_columns(columns)?;
        dups.finish()?;
        let exact = removals.iter().filter(|r| r.kind == "exact").count();
        let near = removals.len() - exact;
        let (bands, rows) = optimal_bands(params.threshold, params.permutations);
        Ok(StageReport::default()
            .metric("rows", ids.len())
            .metric("kept", kept)
            .metric("exact_duplicates", exact)
            .metric("near_duplicates", near)
            .metric("bands", bands)
            .metric("rows_per_band", rows)
            .summary(format!("kept {kept} of {}: {exact} exact and {near} near duplicates removed", ids.len())))
    }
}

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

/// The rows to remove, in row order.
pub fn find_duplicates(ids: &[i64], texts: &[String], params: &Params, seed: u64) -> Vec<Removal> {
    let n = texts.len();
    // Rows ordered by id: the first of a cluster in this order is the one kept.
    let mut by_id: Vec<usize> = (0..n).collect();
    by_id.sort_by_key(|&i| (ids[i], i));
    let mut removals: Vec<Option<Removal>> = vec![None; n];

    let mut first_of: HashMap<String, usize> = HashMap::new();
    let mut representatives = Vec::with_capacity(n);
    for &i in &by_id {
        let key = if params.exact { text::normalize(&texts[i]) } else { i.to_string() };
        match first_of.get(&key) {
            Some(&kept) => removals[i] = Some(Removal { row: i, kept, kind: "exact", similarity: 1.0 }),
            None => {
                first_of.insert(key, i);
                representatives.push(i);
            }
        }
    }

    if params.near {
        let hasher = MinHasher::new(params.permutations, seed);
        let signatures: Vec<Vec<u32>> = representatives
            .par_iter()
            .map(|&i| hasher.signature(&text::ngram_hashes(&text::words(&texts[i]), params.ngram)))
            .collect();
        let (bands, rows) = optimal_bands(params.threshold, params.permutations);
        let m = representatives.len();
        let mut clusters = UnionFind::new(m);
        let mut best: Vec<(usize, f64)> = vec![(usize::MAX, 0.0); m];
        for band in 0..bands {
            let mut keys: Vec<(u64, usize)> = (0..m)
                .filter(|&r| signatures[r][0] != u32::MAX)
                .map(|r| {
                    let part = &signatures[r][band * rows..(band + 1) * rows];
                    let bytes: Vec<u8> = part.iter().flat_map(|v| v.to_le_bytes()).collect();
                    (xxhash_rust::xxh3::xxh3_64(&bytes), r)
                })
                .collect();
            keys.sort_unstable();
            for group in keys.chunk_by(|a, b| a.0 == b.0) {
                let head = group[0].1;
                for &(_, r) in &group[1..] {
                    let s = similarity(&signatures[head], &signatures[r]);
                    if s >= params.threshold {
                        clusters.union(head, r);
                        if best[r].0 == usize::MAX || s > best[r].1 {
                            best[r] = (head, s);
                        }
                    }
                }
            }
        }
        for r in 0..m {
            let root = clusters.find(r);
            if root != r {
                let row = representatives[r];
                let similarity = if best[r].0 == usize::MAX { params.threshold } else { best[r].1 };
                removals[row] = Some(Removal { row, kept: representatives[root], kind: "near", similarity });
            }
        }
    }
    removals.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::default()
    }

    #[test]
    fn exact_and_near_duplicates_keep_the_smallest_id() {
        let base = "the quick brown fox jumps over the lazy dog while the farmer watches from the old red barn";
        let texts: Vec<String> = vec![
            base.to_string(), // id 10
            format!("  THE quick   brown fox jumps over the lazy dog while the farmer watches from the old red barn"), // exact of 10
            base.replace("old red", "old blue"), // near of 10
            "an entirely different sentence about arithmetic and apples and many other things".into(),
            base.to_string(), // id 3: exact, smaller id: kept instead
        ];
        let ids = [10, 11, 12, 13, 3];
        let removals = find_duplicates(&ids, &texts, &params(), 1);
        let described: Vec<(i64, i64, &str)> = removals.iter().map(|r| (ids[r.row], ids[r.kept], r.kind)).collect();
        assert_eq!(described, [(10, 3, "exact"), (11, 3, "exact"), (12, 3, "near")]);
        assert!(removals[2].similarity >= 0.7 && removals[2].similarity < 1.0);
    }

    #[test]
    fn dissimilar_rows_stay_and_the_result_is_deterministic() {
        let texts: Vec<String> = (0..300)
            .map(|i| format!("problem {i}: tom has {} apples and buys {} more apples at the store", i * 7, i * 3))
            .collect();
        let ids: Vec<i64> = (0..300).collect();
        let a = find_duplicates(&ids, &texts, &params(), 5);
        let b = find_duplicates(&ids, &texts, &params(), 5);
        assert_eq!(a, b);
        // They share most words but every 5-gram window around the numbers differs.
        assert!(a.len() < 30, "{} removed", a.len());
    }

    #[test]
    fn bad_parameters_are_named() {
        let p = Params { threshold: 1.5, ..params() };
        assert!(matches!(Dedup::check(&p), Err(StageError::Param { path, .. }) if path == "threshold"));
        let inputs = [("data".to_string(), Artifact::Table(standard::problems().clone()))].into_iter().collect();
        let p = Params { columns: vec!["question".into(), "body".into()], ..params() };
        assert!(matches!(Dedup::outputs(&p, &inputs), Err(StageError::Param { path, .. }) if path == "columns[1]"));
    }
}
