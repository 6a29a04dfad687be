//! `math.augment`: LLM-free augmentation of problems whose solutions carry calculator
//! annotations (generated or GSM8K): number perturbation with the whole chain recomputed,
//! backward (FOBAR) questions solved exactly, and answer-format variants. Every produced
//! item is verified by recomputing its whole chain before it is written; an item that
//! cannot be made or verified is dropped and counted by reason. Each output row records
//! its source item, the operation and the seed of its draw.

pub mod backward;
pub mod chain;
pub mod perturb;
pub mod prose;
pub mod question;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::math::gsm8k;
use crate::math::number::Rational;
use crate::schema::standard;
use crate::stage::{Accepts, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};
use crate::table::Columns;
use perturb::Verdict;

pub struct MathAugment;

/// Ids of produced items start here: `BASE + 64 * source_id + n`.
pub const BASE: i64 = 1 << 40;
/// Source ids below this give products' ids above every source id, without overlap.
pub const MAX_SOURCE_ID: i64 = 1 << 34;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Perturbed variants per problem.
    pub perturbations: u32,
    /// Backward (FOBAR) questions per problem.
    pub backward: u32,
    /// Also emit each problem with its last line as `The answer is N.`
    pub answer_format: bool,
    /// Keep the original problems in the output.
    pub keep_original: bool,
    /// Draws tried per perturbation before giving up.
    pub attempts: u32,
    /// Numbers a solution may use that the question does not state (60 minutes, a dozen,
    /// 100 percent, half); they are never perturbed.
    pub constants: Vec<f64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            perturbations: 2,
            backward: 1,
            answer_format: false,
            keep_original: true,
            attempts: 50,
            constants: vec![1.0, 2.0, 3.0, 4.0, 7.0, 10.0, 12.0, 24.0, 30.0, 52.0, 60.0, 100.0, 365.0, 1000.0, 0.5],
        }
    }
}

/// One output row.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub family: String,
    pub question: String,
    pub solution: String,
    pub answer: String,
    pub source_id: i64,
    pub operation: &'static str,
    pub seed: i64,
}

/// Why a produced item failed verification; `None` if it passed. The arithmetic: every
/// annotation evaluates to its written result and the final answer is `answer`. The
/// prose: the expression before and the result after each annotation say what it
/// computes. For a perturbed item, the chain: traced anew from the new question, it
/// reads as the original's does (each variable used in the same places, as often; no
/// new value equal to another, to a constant or to a step).
pub fn verify(
    question: &str,
    solution: &str,
    answer: &Rational,
    original: Option<&chain::Flow>,
    constants: &[Rational],
) -> Option<&'static str> {
    let text = solution.replace("The answer is ", "#### ");
    let Ok(parsed) = gsm8k::parse(text.trim_end_matches('.')) else { return Some(ARITHMETIC) };
    if !parsed.unreadable.is_empty()
        || !parsed.annotations.iter().all(|a| a.verifies())
        || parsed.answer.value != *answer
    {
        return Some(ARITHMETIC);
    }
    if prose::check(&parsed).is_err() {
        return Some(PROSE);
    }
    let reads_alike =
        |flow: &chain::Flow| chain::trace(question, &parsed, constants).is_ok_and(|f| flow.reads_like(&f));
    if original.is_some_and(|flow| !reads_alike(flow)) {
        return Some(CHAIN);
    }
    None
}

pub const ARITHMETIC: &str = "verification: an annotation or the answer does not recompute";
pub const PROSE: &str = "verification: prose differs from an annotation";
pub const CHAIN: &str = "verification: the new values change how the chain reads";
pub const REPEATED: &str = "every draw repeated an item already produced";

/// What augmenting one problem gave: items, the reasons of its drops, and why stated
/// numbers were left alone.
#[derive(Debug, Default)]
pub struct Augmented {
    pub items: Vec<Item>,
    pub drops: Vec<String>,
    pub left_alone: BTreeMap<&'static str, usize>,
}

/// The products of one source problem, and the reasons of its drops.
pub fn augment_one(
    params: &Params,
    constants: &[Rational],
    seed: u64,
    (id, family, question, solution): (i64, &str, &str, &str),
) -> Augmented {
    let mut out = Augmented::default();
    let item_seed = seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id as u64);
    let push = |items: &mut Vec<Item>, op: &'static str, q: String, s: String, a: Rational| {
        let n = items.len() as i64;
        items.push(Item {
            id: BASE + 64 * id + n,
            family: family.to_string(),
            question: q,
            solution: s,
            answer: a.to_decimal(),
            source_id: id,
            operation: op,
            seed: item_seed as i64,
        });
    };
    let wanted = params.perturbations + params.backward + params.answer_format as u32;
    let mut parsed = match gsm8k::parse(solution) {
        Ok(p) => p,
        Err(_) => {
            out.drops.extend(std::iter::repeat_n("the solution has no final answer".to_string(), wanted as usize));
            return out;
        }
    };
    // `65+94 = <<159=159>>`: the annotation takes the expression the prose computes.
    if let Some(completed) = prose::complete(&parsed) {
        parsed = gsm8k::parse(&completed).expect("completing annotations keeps the final answer");
    }
    let solution = parsed.text.as_str();
    if let Err(why) = prose::check(&parsed) {
        out.drops.extend(std::iter::repeat_n(format!("original: {why}"), wanted as usize));
        return out;
    }
    if params.answer_format {
        let at = solution.rfind("####").expect("parsed: has ####");
        let line = format!("The answer is {}.", parsed.answer.value);
        let text = format!("{}{line}", &solution[..at]);
        match verify(question, &text, &parsed.answer.value, None, constants) {
            None => push(&mut out.items, "answer_format", question.to_string(), text, parsed.answer.value),
            Some(why) => out.drops.push(format!("answer_format: {why}")),
        }
    }
    let wanted = params.perturbations + params.backward;
    if wanted == 0 {
        return out;
    }
    let flow = match chain::trace(question, &parsed, constants) {
        Ok(flow) => flow,
        Err(why) => {
            out.drops.extend(std::iter::repeat_n(why.reason().to_string(), wanted as usize));
            return out;
        }
    };
    out.left_alone = flow.left_alone_by_reason();
    let seen = std::cell::RefCell::new(std::collections::HashSet::new());
    // A draw whose values collide (the chain then reads differently) or that repeats an
    // item is drawn again; one that fails the arithmetic or the prose is a bug, refused.
    let accept = |q: &str, s: &str, a: &Rational| match verify(q, s, a, Some(&flow), constants) {
        None if seen.borrow().contains(q) => Verdict::DrawAgain(REPEATED),
        None => Verdict::Take,
        Some(CHAIN) => Verdict::DrawAgain(CHAIN),
        Some(why) => Verdict::Refuse(why),
    };
    for _ in 0..params.perturbations {
        match perturb::perturb(question, &parsed, &flow, params.attempts, &mut rng, &accept) {
            Ok((q, s, a)) => {
                seen.borrow_mut().insert(q.clone());
                push(&mut out.items, "perturb", q, s, a);
            }
            Err(why) => out.drops.push(format!("perturb: {why}")),
        }
    }
    let mut seen = seen.into_inner();
    for _ in 0..params.backward {
        match backward::backward(question, &parsed, &flow, &mut rng) {
            Ok((q, _, _)) if !seen.insert(q.clone()) => {
                out.drops.push("backward: chose an unknown already used".into())
            }
            Ok((q, s, a)) => match verify(&q, &s, &a, None, constants) {
                None => push(&mut out.items, "backward", q, s, a),
                Some(why) => out.drops.push(format!("backward: {why}")),
            },
            Err(why) => out.drops.push(format!("backward: {why}")),
        }
    }
    out
}

impl Stage for MathAugment {
    type Params = Params;
    const KIND: &'static str = "math.augment";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "perturb numbers, ask backward (FOBAR), vary the answer format; every item verified";
    const RANDOM: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[
                ("id", "int64"),
                ("family", "string"),
                ("question", "string"),
                ("solution", "string"),
                ("answer", "string"),
            ]),
            about: "problems with annotated solutions",
            optional: false,
        }]
    }

    fn check(params: &Params) -> Result<()> {
        if params.perturbations + params.backward > 60 {
            return Err(StageError::param("perturbations", "at most 60 products per problem (with backward)"));
        }
        if params.attempts == 0 {
            return Err(StageError::param("attempts", "must be at least 1"));
        }
        for (i, c) in params.constants.iter().enumerate() {
            if Rational::parse(&c.to_string()).is_none() {
                return Err(StageError::param(format!("constants[{i}]"), format!("{c} is not a plain decimal number")));
            }
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::table("problems", standard::augmented())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let constants: Vec<Rational> =
            params.constants.iter().filter_map(|c| Rational::parse(&c.to_string())).collect();
        let input = ctx.table("data")?;
        let origin = ctx.input("data")?.origin.clone();
        ctx.progress().start(input.num_rows()? as u64, "problems");
        let mut writer = ctx.write_table("problems")?;
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut drops: BTreeMap<String, usize> = BTreeMap::new();
        let mut left_alone: BTreeMap<&'static str, usize> = BTreeMap::new();
        let (mut sources, mut annotated) = (0usize, 0usize);
        for batch in input.batches() {
            let batch = batch?;
            let cols = Columns::new(&batch);
            let (ids, families) = (cols.i64s("id")?, cols.strings("family")?);
            if let Some(id) = ids.values().iter().find(|&&id| !(0..MAX_SOURCE_ID).contains(&id)) {
                return Err(StageError::data(
                    &origin,
                    format!(
                        "id {id}: the problems augmented need ids from 0 to 2^34 (a product's id is 2^40 + 64 * id + n)"
                    ),
                ));
            }
            let (questions, solutions, answers) =
                (cols.strings("question")?, cols.strings("solution")?, cols.strings("answer")?);
            let produced: Vec<Augmented> = (0..batch.num_rows())
                .into_par_iter()
                .map(|i| {
                    augment_one(
                        params,
                        &constants,
                        ctx.seed,
                        (ids.value(i), families.value(i), questions.value(i), solutions.value(i)),
                    )
                })
                .collect();
            let mut rows: Vec<Item> = Vec::new();
            for (i, augmented) in produced.into_iter().enumerate() {
                sources += 1;
                annotated += solutions.value(i).contains("<<") as usize;
                if params.keep_original {
                    rows.push(Item {
                        id: ids.value(i),
                        family: families.value(i).to_string(),
                        question: questions.value(i).to_string(),
                        solution: solutions.value(i).to_string(),
                        answer: answers.value(i).to_string(),
                        source_id: ids.value(i),
                        operation: "original",
                        seed: ctx.seed as i64,
                    });
                }
                for item in augmented.items {
                    *counts.entry(item.operation).or_default() += 1;
                    rows.push(item);
                }
                for r in augmented.drops {
                    *drops.entry(r).or_default() += 1;
                }
                for (why, n) in augmented.left_alone {
                    *left_alone.entry(why).or_default() += n;
                }
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.family))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.question))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.solution))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.answer))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.source_id))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.operation))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seed))),
            ];
            writer.write_columns(columns)?;
            ctx.progress().advance(batch.num_rows() as u64);
        }
        let written = writer.finish()?;
        let produced: usize = counts.values().sum();
        let perturbed_sources = counts.get("perturb").copied().unwrap_or(0);
        let requested: BTreeMap<&str, usize> = [
            ("perturb", sources * params.perturbations as usize),
            ("backward", sources * params.backward as usize),
            ("answer_format", sources * params.answer_format as usize),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
        Ok(StageReport::default()
            .metric("sources", sources)
            .metric("sources_with_annotations", annotated)
            .metric("requested", &requested)
            .metric("produced", &counts)
            .metric("dropped", &drops)
            .metric("numbers_left_alone", &left_alone)
            .metric("rows", written)
            .metric("verified", produced)
            .summary(format!(
                "{produced} items from {sources} problems ({perturbed_sources} perturbed, {} backward), {} dropped",
                counts.get("backward").copied().unwrap_or(0),
                drops.values().sum::<usize>()
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures(text: &str) -> Vec<(String, String)> {
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["question"].as_str().unwrap().to_string(), v["answer"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn constants() -> Vec<Rational> {
        Params::default().constants.iter().filter_map(|c| Rational::parse(&c.to_string())).collect()
    }

    /// The numbers a question states, read independently of kiln's readers: digits and
    /// number words in order, `x` where a backward question masked one.
    fn numbers(question: &str) -> Vec<Option<f64>> {
        let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
        let re = regex::Regex::new(r"\d[\d,]*(?:\.\d+)?|[A-Za-z]+").unwrap();
        re.find_iter(question)
            .filter_map(|m| {
                let t = m.as_str();
                if t == "x" {
                    return Some(None);
                }
                if let Some(v) = words.iter().position(|w| t.eq_ignore_ascii_case(w)) {
                    return Some(Some(v as f64));
                }
                t.replace(',', "").parse::<f64>().ok().map(Some)
            })
            .collect()
    }

    /// The true answer of each trap of `gsm8k-traps.jsonl` from its question's numbers,
    /// worked out by hand: the meaning of each number, not kiln's chain.
    fn oracle(trap: usize, n: &[f64]) -> f64 {
        match trap {
            0 => n[0] * n[1] * 2.0 * 52.0,
            1 => n[1] / (n[0] * 60.0),
            2 => (n[0] - n[0] / 2.0) / n[1],
            3 => n[0] + n[1] + 2.0 * n[1],
            4 => n[0] * n[1] - n[2],
            5 => n[0] * n[1] * 7.0,
            6 => n[1] * 7.0,
            7 => n[0] * 7.0 * n[1] / 12.0,
            8 => n[0] - n[0] * n[1] / 100.0,
            9 => (n[0] - n[1] - n[2]) * n[3],
            10 => n[0] - n[0] * n[1] / n[2],
            11 => n[0] * (n[3] - n[1]),
            12 => (n[0] / n[1]).floor(),
            13 => n[1] + n[2] + n[3] + n[4],
            14 => n[1] * (100.0 - n[0]) / 100.0,
            15 => n[0] * n[1] + n[2],
            16 => n[0] * n[1],
            17 => n[1] / n[0],
            18 => n[0] + 12.0 * n[1],
            19 => 4.0 * n[0] * n[1],
            20 => n[0] - n[1] * n[2],
            21 => n[0] * n[1] + n[2],
            22 => (n[0] - n[1]) * 2.0,
            23 => (n[0] + n[1]) * n[2],
            24 => n[0] * 8.0,
            25 => (n[0] + n[1]) * 7.0,
            _ => unreachable!("{trap}"),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// The issue's traps: every perturbed item's answer is right for its own question
    /// (checked against an answer worked out by hand from the question's numbers), every
    /// backward item's unknown gives the stated answer, and no item's prose disagrees with
    /// its annotations. A drop for failed arithmetic or prose would be a bug.
    #[test]
    fn perturbed_and_backward_items_are_true_to_their_questions() {
        let traps = fixtures(include_str!("../../../tests/fixtures/gsm8k-traps.jsonl"));
        let params = Params { perturbations: 4, backward: 2, ..Params::default() };
        let mut produced: BTreeMap<&str, usize> = BTreeMap::new();
        for (trap, (q, s)) in traps.iter().enumerate() {
            let original = numbers(q).into_iter().map(Option::unwrap).collect::<Vec<_>>();
            let gold: f64 = gsm8k::final_answer(s).unwrap().value.to_f64();
            assert!(close(oracle(trap, &original), gold), "trap {trap}: the oracle disagrees with the fixture");
            for seed in 0..8 {
                let out = augment_one(&params, &constants(), seed, (trap as i64, "gsm8k", q, s));
                for d in &out.drops {
                    assert!(!d.contains(ARITHMETIC) && !d.contains(PROSE), "trap {trap}: {d}");
                }
                for item in &out.items {
                    *produced.entry(item.operation).or_default() += 1;
                    let parsed = gsm8k::parse(&item.solution).unwrap();
                    assert_eq!(prose::check(&parsed), Ok(()), "{}", item.solution);
                    let answer: f64 = item.answer.parse().unwrap();
                    match item.operation {
                        "perturb" => {
                            let n: Vec<f64> = numbers(&item.question).into_iter().map(Option::unwrap).collect();
                            assert!(
                                close(oracle(trap, &n), answer),
                                "trap {trap}: {}\n{}\nanswer {answer}, true answer {}",
                                item.question,
                                item.solution,
                                oracle(trap, &n)
                            );
                        }
                        "backward" => {
                            let (asked, known) = item.question.split_once(" If we know the answer").unwrap();
                            let known: f64 = numbers(known)[0].unwrap();
                            let n: Vec<f64> = numbers(asked).into_iter().map(|v| v.unwrap_or(answer)).collect();
                            assert!(
                                close(oracle(trap, &n), known),
                                "trap {trap}: {}\n{}",
                                item.question,
                                item.solution
                            );
                        }
                        other => panic!("{other}"),
                    }
                }
            }
        }
        assert!(produced["perturb"] >= 40 && produced["backward"] >= 20, "{produced:?}");
    }

    /// What the traps must not become: the "2" of "twice" never moves, nor the minutes of
    /// an hour, nor the 11 months before a twelfth, and a half stays a half in prose and
    /// annotation.
    #[test]
    fn implied_numbers_stay_where_the_issue_saw_them_move() {
        let traps = fixtures(include_str!("../../../tests/fixtures/gsm8k-traps.jsonl"));
        let params = Params { perturbations: 6, backward: 0, ..Params::default() };
        for seed in 0..5 {
            let james = augment_one(&params, &constants(), seed, (0, "gsm8k", &traps[0].0, &traps[0].1));
            assert!(!james.items.is_empty());
            for item in &james.items {
                assert!(item.question.contains(" to 2 different friends twice a week"), "{}", item.question);
                assert!(item.solution.contains("*2=<<") && item.solution.contains("*52=<<"), "{}", item.solution);
            }
            let emily = augment_one(&params, &constants(), seed, (1, "gsm8k", &traps[1].0, &traps[1].1));
            assert!(!emily.items.is_empty());
            for item in &emily.items {
                assert!(item.question.starts_with("Emily can type 60 words per minute."), "{}", item.question);
                assert!(item.solution.contains("60*60=<<60*60=3600>>3600"), "{}", item.solution);
            }
            let lea = augment_one(&params, &constants(), seed, (20, "gsm8k", &traps[20].0, &traps[20].1));
            assert!(!lea.items.is_empty());
            for item in &lea.items {
                assert!(item.question.contains("For 11 months"), "the twelfth month follows 11: {}", item.question);
            }
            let mia = augment_one(&params, &constants(), seed, (2, "gsm8k", &traps[2].0, &traps[2].1));
            assert!(!mia.items.is_empty());
            for item in &mia.items {
                let first = item.solution.lines().next().unwrap();
                let (prose, annotation) = first.split_once(" = <<").unwrap();
                let expr = &annotation[..annotation.find('=').unwrap()];
                assert!(prose.ends_with(expr) && expr.ends_with("/2"), "{first}");
                assert!(item.question.contains(" and 2 albums."), "{}", item.question);
            }
        }
    }

    /// Where a literal could be a step or a value the wording implies (`6-4=2` then `2*2`
    /// for "doubles"; `3+4=7` then `7*7` for a week), or the only stated number is used
    /// twice in one step (`8*8` legs of 8 spiders), nothing is perturbed; a stated number
    /// the chain never uses never moves (7 and 3 marbles summed in prose).
    #[test]
    fn what_cannot_be_told_apart_is_left_alone() {
        let traps = fixtures(include_str!("../../../tests/fixtures/gsm8k-traps.jsonl"));
        let params = Params { perturbations: 4, backward: 0, ..Params::default() };
        for trap in [22, 24, 25] {
            let out = augment_one(&params, &constants(), 1, (trap as i64, "gsm8k", &traps[trap].0, &traps[trap].1));
            assert!(out.items.is_empty(), "trap {trap}: {:?}", out.items);
        }
        let marbles = augment_one(&params, &constants(), 1, (23, "gsm8k", &traps[23].0, &traps[23].1));
        assert!(!marbles.items.is_empty());
        for item in &marbles.items {
            assert!(item.question.starts_with("Mia has 7 red and 3 blue marbles."), "{}", item.question);
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let named = |p: Params, path: &str| matches!(MathAugment::check(&p), Err(StageError::Param { path: at, .. }) if at == path);
        assert!(named(Params { attempts: 0, ..Params::default() }, "attempts"));
        assert!(named(Params { perturbations: 50, backward: 20, ..Params::default() }, "perturbations"));
        assert!(named(Params { constants: vec![f64::NAN], ..Params::default() }, "constants[0]"));
        assert!(MathAugment::check(&Params::default()).is_ok());
    }

    /// On GSM8K-format fixtures most problems perturb, and nothing produced fails the
    /// arithmetic or prose check.
    #[test]
    fn most_fixtures_perturb_and_nothing_fails_verification() {
        let params = Params::default();
        let mut perturbed_sources = 0;
        let all = fixtures(include_str!("../../../tests/fixtures/gsm8k-train.jsonl"));
        for (id, (q, s)) in all.iter().enumerate() {
            let out = augment_one(&params, &constants(), 7, (id as i64, "gsm8k", q, s));
            for item in &out.items {
                let answer = Rational::parse(&item.answer).unwrap();
                assert_eq!(
                    verify(&item.question, &item.solution, &answer, None, &constants()),
                    None,
                    "{}",
                    item.solution
                );
            }
            let failed: Vec<_> = out.drops.iter().filter(|d| d.contains(ARITHMETIC) || d.contains(PROSE)).collect();
            assert!(failed.is_empty(), "{q}\n{s}\n{failed:?}");
            perturbed_sources += out.items.iter().any(|i| i.operation == "perturb") as usize;
        }
        assert!(perturbed_sources * 2 > all.len(), "{perturbed_sources} of {}", all.len());
    }
}
