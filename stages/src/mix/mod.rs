//! `mix`: a weighted mixture of several tables of one schema, for multi-stage SFT data.
//! Each input contributes its weight's share of `count` rows (largest remainders settle
//! the rounding), drawn without replacement unless `replace: true`; the mixture is
//! shuffled. Draws come from the seed and each input's name, so they are reproducible.

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use indexmap::IndexMap;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::stage::{ANY_INPUTS, Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct Mix;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Weight per input (by its key in `from:`); equal weights if empty.
    pub weights: IndexMap<String, f64>,
    /// Rows of the mixture (0: as many as the inputs hold together).
    pub count: u64,
    /// Draw with replacement (an input may then give more rows than it has).
    pub replace: bool,
}

/// How many rows each input gives: shares of `count` by weight, largest remainders first.
pub fn quotas(weights: &[f64], count: u64) -> Vec<u64> {
    let total: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| count as f64 * w / total).collect();
    let mut quotas: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = count - quotas.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        quotas[i] += 1;
        left -= 1;
    }
    quotas
}

impl Stage for Mix {
    type Params = Params;
    const KIND: &'static str = "mix";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "weighted mixture of several tables of one schema (with or without replacement)";
    const RANDOM: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: ANY_INPUTS,
            accepts: Accepts::Table(&[]),
            about: "tables of one schema, named by their keys",
            optional: false,
        }]
    }

    fn check(params: &Params) -> Result<()> {
        for (name, w) in &params.weights {
            if !(w.is_finite() && *w >= 0.0) {
                return Err(StageError::param(format!("weights.{name}"), "must be a non-negative number"));
            }
        }
        if !params.weights.is_empty() && params.weights.values().sum::<f64>() <= 0.0 {
            return Err(StageError::param("weights", "at least one weight must be positive"));
        }
        Ok(())
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        let mut first: Option<(&String, &crate::schema::TableSchema)> = None;
        for (name, artifact) in inputs {
            let Artifact::Table(schema) = artifact else {
                return Err(StageError::Internal(format!("input `{name}` of mix is not a table")));
            };
            match first {
                None => first = Some((name, schema)),
                Some((first_name, first_schema)) if first_schema.describe() != schema.describe() => {
                    return Err(StageError::param(
                        "",
                        format!(
                            "inputs `{first_name}` and `{name}` have different schemas:\n{}vs\n{}",
                            first_schema.describe(),
                            schema.describe()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        for name in params.weights.keys() {
            if !inputs.contains_key(name) {
                let names = inputs.keys().map(String::as_str);
                return Err(StageError::param(
                    format!("weights.{name}"),
                    format!("no input `{name}`{}", crate::names::suggestion(name, names)),
                ));
            }
        }
        if !params.weights.is_empty()
            && let Some(missing) = inputs.keys().find(|n| !params.weights.contains_key(*n))
        {
            return Err(StageError::param("weights", format!("give input `{missing}` a weight too")));
        }
        let (_, schema) = first.ok_or_else(|| StageError::param("", "mix needs at least one input"))?;
        Ok(vec![OutputDecl::table("mixed", schema)])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let names = ctx.input_names();
        let mut tables: Vec<RecordBatch> = Vec::new();
        for name in &names {
            let batches = ctx.table(name)?.read_all()?;
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => ctx.write_table("mixed")?.schema().clone(),
            };
            tables.push(concat_batches(&schema, &batches)?);
        }
        let weights: Vec<f64> = names.iter().map(|n| params.weights.get(n).copied().unwrap_or(1.0)).collect();
        let available: u64 = tables.iter().map(|t| t.num_rows() as u64).sum();
        let count = if params.count == 0 { available } else { params.count };
        let quotas = quotas(&weights, count);
        let mut parts = Vec::new();
        let mut report = StageReport::default();
        for ((name, table), &quota) in names.iter().zip(&tables).zip(&quotas) {
            let rows = table.num_rows();
            if quota > rows as u64 && !params.replace {
                return Err(StageError::param(
                    "count",
                    format!(
                        "input `{name}` has {rows} rows but its share of the mixture is {quota}; set `replace: true` or lower `count` or its weight"
                    ),
                ));
            }
            let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ crate::text::hash(name));
            let picked: Vec<u32> = if params.replace {
                (0..quota).map(|_| rng.random_range(0..rows.max(1)) as u32).filter(|_| rows > 0).collect()
            } else {
                let mut all: Vec<u32> = (0..rows as u32).collect();
                all.shuffle(&mut rng);
                all.truncate(quota as usize);
                all
            };
            parts.push(take_record_batch(table, &UInt32Array::from(picked))?);
            report = report.metric(&format!("rows_from_{name}"), quota);
        }
        let schema = ctx.write_table("mixed")?.schema().clone();
        let mixed = concat_batches(&schema, &parts)?;
        let mut order: Vec<u32> = (0..mixed.num_rows() as u32).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(ctx.seed));
        let mixed = take_record_batch(&mixed, &UInt32Array::from(order))?;
        let mut writer = ctx.write_table("mixed")?;
        for start in (0..mixed.num_rows()).step_by(8192) {
            writer.write(&mixed.slice(start, 8192.min(mixed.num_rows() - start)))?;
        }
        let rows = writer.finish()?;
        Ok(report.metric("rows", rows).summary(format!("{rows} rows from {} inputs", names.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::standard;
    use crate::table::Columns;
    use crate::testing;

    fn problems(dir: &std::path::Path, family: &str, n: i64) -> crate::context::Slot {
        let texts: Vec<[String; 3]> = (0..n).map(|i| [format!("q{i}"), format!("s{i}"), format!("a{i}")]).collect();
        let rows: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, [q, s, a])| (i as i64, family, q.as_str(), s.as_str(), a.as_str()))
            .collect();
        testing::problems(dir, &rows)
    }

    #[test]
    fn shares_follow_the_weights() {
        assert_eq!(quotas(&[0.7, 0.3], 10), [7, 3]);
        assert_eq!(quotas(&[1.0, 1.0, 1.0], 10), [4, 3, 3]);
        assert_eq!(quotas(&[2.0, 1.0], 0), [0, 0]);
    }

    #[test]
    fn a_mixture_draws_its_shares_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let a = problems(&dir.path().join("a"), "add", 20);
        let b = problems(&dir.path().join("b"), "mul", 5);
        let with = "{ weights: { a: 3, b: 1 }, count: 12 }";
        testing::run::<Mix>(with, vec![("a", a.clone()), ("b", b.clone())], &dir.path().join("o1"), 4).unwrap();
        testing::run::<Mix>(with, vec![("a", a.clone()), ("b", b.clone())], &dir.path().join("o2"), 4).unwrap();
        let read = |o: &str| std::fs::read(dir.path().join(o).join("mixed/part-00000.parquet")).unwrap();
        assert_eq!(read("o1"), read("o2"));
        let batches = testing::read(&dir.path().join("o1/mixed"));
        let families =
            Columns::new(&batches[0]).strings("family").unwrap().iter().flatten().filter(|f| *f == "mul").count();
        assert_eq!((batches[0].num_rows(), families), (12, 3));
        // b holds 5 rows; a share of 10 needs replacement
        let err = testing::run::<Mix>(
            "{ weights: { a: 1, b: 1 }, count: 20 }",
            vec![("a", a.clone()), ("b", b.clone())],
            &dir.path().join("o3"),
            4,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`b` has 5 rows"), "{err}");
        testing::run::<Mix>(
            "{ weights: { a: 1, b: 1 }, count: 20, replace: true }",
            vec![("a", a), ("b", b)],
            &dir.path().join("o4"),
            4,
        )
        .unwrap();
    }

    #[test]
    fn weights_must_name_inputs() {
        let inputs = [
            ("a".to_string(), Artifact::Table(standard::problems().clone())),
            ("b".to_string(), Artifact::Table(standard::problems().clone())),
        ]
        .into_iter()
        .collect();
        let p = Params {
            weights: [("aa".to_string(), 1.0), ("b".to_string(), 1.0)].into_iter().collect(),
            ..Params::default()
        };
        match Mix::outputs(&p, &inputs) {
            Err(StageError::Param { path, message }) => {
                assert!(path == "weights.aa" && message.contains("Did you mean `a`?"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let other = [
            ("a".to_string(), Artifact::Table(standard::problems().clone())),
            ("t".to_string(), Artifact::Table(standard::tokens().clone())),
        ]
        .into_iter()
        .collect();
        assert!(Mix::outputs(&Params::default(), &other).unwrap_err().to_string().contains("different schemas"));
    }
}
