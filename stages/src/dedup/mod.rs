//! `dedup`: exact duplicates (same text after NFKC, lowercasing and whitespace folding)
//! and near duplicates (MinHash over word n-grams, LSH banding) removed. Rows are taken
//! in id order, and a row is removed when it duplicates a row already kept, so the
//! smallest id of a set of duplicates stays, and a row is never removed because of a
//! row that was removed itself. Every removal is listed with the kept row it duplicates.
//!
//! Rows of one group (`group`, by default the `source_id` that `math.augment` writes)
//! are never duplicates of each other: the variants of one problem differ in their
//! numbers, which is their point, while a variant that duplicates another source's row
//! is still found.
//!
//! Candidates that share an LSH bucket are confirmed by their signatures' estimated
//! similarity before a row is removed, so banding's false positives remove nothing.
//! Deterministic for a seed: hashes are xxh3, permutations come from the seed, and rows
//! are visited in id order.

pub mod minhash;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;
use crate::text;
use crate::text_rows::{check_text_columns, ids_and_texts, write_kept};
use minhash::{MinHasher, optimal_bands, similarity};

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
    /// A column whose rows of equal value are never duplicates of each other (the
    /// variants of one source); `auto`: `source_id` when the input has it; `none`: no
    /// groups.
    pub group: String,
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
            group: "auto".into(),
        }
    }
}

impl Params {
    /// The group column of an input table that has the columns `has` says it has.
    fn group_column(&self, has: impl Fn(&str) -> bool) -> Option<String> {
        match self.group.as_str() {
            "none" => None,
            "auto" => has("source_id").then(|| "source_id".to_string()),
            column => Some(column.to_string()),
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
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "remove exact and MinHash-LSH near duplicates of kept rows (smallest id first; rows of one group never)";
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
        if let Some(group) = params.group_column(|c| schema.column(c).is_some()) {
            let ty = schema.column(&group).map(|c| c.ty.data.clone());
            if !matches!(ty, Some(DataType::Int64 | DataType::Utf8)) {
                return Err(StageError::param(
                    "group",
                    format!("the input table `{}` has no int64 or string column `{group}`", schema.name),
                ));
            }
        }
        Ok(vec![OutputDecl::table("kept", schema), OutputDecl::report("duplicates", standard::duplicates())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let batches = ctx.table("data")?.read_all()?;
        let group_column =
            params.group_column(|c| batches.first().is_some_and(|b| b.schema().column_with_name(c).is_some()));
        let (ids, texts) = ids_and_texts(&batches, &params.columns)?;
        let groups = match &group_column {
            Some(column) => Some(group_keys(&batches, column)?),
            None => None,
        };
        ctx.progress().start(texts.len() as u64, "rows");
        let removals = find_duplicates(&ids, &texts, groups.as_deref(), params, ctx.seed);
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
            .metric("group", group_column.as_deref().unwrap_or("none"))
            .summary(format!("kept {kept} of {}: {exact} exact and {near} near duplicates removed", ids.len())))
    }
}

/// A key per row of a group column: rows of equal value have equal keys; a row whose
/// value is null is a group of its own.
pub fn group_keys(batches: &[RecordBatch], column: &str) -> Result<Vec<u64>> {
    let mut keys = Vec::new();
    for batch in batches {
        let cols = Columns::new(batch);
        let hashed: Vec<Option<u64>> = match cols.i64s(column) {
            Ok(values) => values.iter().map(|v| v.map(|v| xxhash_rust::xxh3::xxh3_64(&v.to_le_bytes()))).collect(),
            Err(_) => {
                cols.strings(column)?.iter().map(|v| v.map(|v| xxhash_rust::xxh3::xxh3_64(v.as_bytes()))).collect()
            }
        };
        for key in hashed {
            let row = keys.len() as u64;
            keys.push(key.unwrap_or(u64::MAX - row));
        }
    }
    Ok(keys)
}

/// The rows to remove, in row order. Rows are visited in id order; a row is removed when
/// it duplicates (exactly, or at the threshold) a row already kept of another group
/// (`groups`: one key per row; without it every row is its own group).
pub fn find_duplicates(
    ids: &[i64],
    texts: &[String],
    groups: Option<&[u64]>,
    params: &Params,
    seed: u64,
) -> Vec<Removal> {
    let n = texts.len();
    let group = |i: usize| groups.map_or(i as u64, |g| g[i]);
    let mut by_id: Vec<usize> = (0..n).collect();
    by_id.sort_by_key(|&i| (ids[i], i));
    let mut removals: Vec<Option<Removal>> = vec![None; n];

    if params.exact {
        let mut kept_with: HashMap<String, Vec<usize>> = HashMap::new();
        for &i in &by_id {
            let kept = kept_with.entry(text::normalize(&texts[i])).or_default();
            match kept.iter().find(|&&k| group(k) != group(i)) {
                Some(&k) => removals[i] = Some(Removal { row: i, kept: k, kind: "exact", similarity: 1.0 }),
                None => kept.push(i),
            }
        }
    }

    if params.near {
        let hasher = MinHasher::new(params.permutations, seed);
        let candidates: Vec<usize> = by_id.iter().copied().filter(|&i| removals[i].is_none()).collect();
        let signatures: Vec<Vec<u32>> = candidates
            .par_iter()
            .map(|&i| hasher.signature(&text::ngram_hashes(&text::words(&texts[i]), params.ngram)))
            .collect();
        let (bands, rows) = optimal_bands(params.threshold, params.permutations);
        // (band, hash of the band's values) -> kept candidates, by position in `candidates`.
        let mut buckets: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
        for (c, &row) in candidates.iter().enumerate() {
            let signature = &signatures[c];
            if signature[0] == u32::MAX {
                continue;
            }
            let keys: Vec<(usize, u64)> = (0..bands)
                .map(|band| {
                    let part = &signature[band * rows..(band + 1) * rows];
                    let bytes: Vec<u8> = part.iter().flat_map(|v| v.to_le_bytes()).collect();
                    (band, xxhash_rust::xxh3::xxh3_64(&bytes))
                })
                .collect();
            let mut best: Option<(usize, f64)> = None;
            for key in &keys {
                for &k in buckets.get(key).into_iter().flatten() {
                    if group(candidates[k]) == group(row) {
                        continue;
                    }
                    let s = similarity(&signatures[k], signature);
                    if s >= params.threshold && best.is_none_or(|(b, bs)| s > bs || (s == bs && k < b)) {
                        best = Some((k, s));
                    }
                }
            }
            match best {
                Some((k, similarity)) => {
                    removals[row] = Some(Removal { row, kept: candidates[k], kind: "near", similarity })
                }
                None => {
                    for key in keys {
                        buckets.entry(key).or_default().push(c);
                    }
                }
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
        let removals = find_duplicates(&ids, &texts, None, &params(), 1);
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
        let a = find_duplicates(&ids, &texts, None, &params(), 5);
        let b = find_duplicates(&ids, &texts, None, &params(), 5);
        assert_eq!(a, b);
        // They share most words but every 5-gram window around the numbers differs.
        assert!(a.len() < 30, "{} removed", a.len());
    }

    /// Variants of one source differ in their numbers, which is their point: none is
    /// removed because of another of its source, while a variant that duplicates a row of
    /// another source still is.
    #[test]
    fn rows_of_one_group_are_never_duplicates_of_each_other() {
        let base = "a farmer has 24 cows and buys 12 more cows at the market on a sunny morning before noon \
                    then he walks them home along the river past the mill and the old stone bridge where the \
                    children fish every summer until the long evening comes and the lamps are lit on monday";
        let texts: Vec<String> = vec![
            base.to_string(),                        // id 1, source 1
            base.replace("24 cows", "30 cows"),      // id 2, variant of source 1
            base.replace("12 more", "16 more"),      // id 3, variant of source 1
            base.to_string(),                        // id 4, source 4: exact of id 1
            base.replace("on monday", "on tuesday"), // id 5, source 5: near id 1
            "something else entirely about trains leaving a station at noon and arriving at dusk".into(), // id 6
        ];
        let ids = [1, 2, 3, 4, 5, 6];
        let groups = [1, 1, 1, 4, 5, 6];
        let removals = find_duplicates(&ids, &texts, Some(&groups), &params(), 1);
        let described: Vec<(i64, i64, &str)> = removals.iter().map(|r| (ids[r.row], ids[r.kept], r.kind)).collect();
        assert_eq!(described, [(4, 1, "exact"), (5, 1, "near")]);
        // Without groups the variants go too.
        let removals = find_duplicates(&ids, &texts, None, &params(), 1);
        assert!(removals.iter().any(|r| ids[r.row] == 2) && removals.iter().any(|r| ids[r.row] == 3));
    }

    /// A row is removed only for a row that is kept: with A ~ B and B ~ C but A and C
    /// apart, C stays once B is gone.
    #[test]
    fn a_removed_row_removes_nothing() {
        let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        let window = |from: usize| words[from..from + 30].join(" ");
        // Jaccard of 5-grams: A-B and B-C 24/28 = 0.86, A-C 22/30 = 0.73.
        let texts = vec![window(0), window(2), window(4)];
        let p = Params { threshold: 0.8, ..params() };
        let removals = find_duplicates(&[1, 2, 3], &texts, None, &p, 3);
        let removed: Vec<usize> = removals.iter().map(|r| r.row).collect();
        assert!(removed.contains(&1), "{removals:?}");
        assert!(!removed.contains(&2), "C is not a duplicate of A: {removals:?}");
    }

    #[test]
    fn bad_parameters_are_named() {
        let p = Params { threshold: 1.5, ..params() };
        assert!(matches!(Dedup::check(&p), Err(StageError::Param { path, .. }) if path == "threshold"));
        let inputs = [("data".to_string(), Artifact::Table(standard::problems().clone()))].into_iter().collect();
        let p = Params { columns: vec!["question".into(), "body".into()], ..params() };
        assert!(matches!(Dedup::outputs(&p, &inputs), Err(StageError::Param { path, .. }) if path == "columns[1]"));
        let p = Params { group: "source".into(), ..params() };
        assert!(matches!(Dedup::outputs(&p, &inputs), Err(StageError::Param { path, .. }) if path == "group"));
        let p = Params { group: "auto".into(), ..params() };
        assert!(Dedup::outputs(&p, &inputs).is_ok(), "auto without source_id: no groups");
    }
}
