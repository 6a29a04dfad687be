use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray};

use super::*;
use crate::context::Slot;
use crate::schema::standard;
use crate::table::build;
use crate::testing;

fn training(dir: &Path, steps: usize) -> Slot {
    let n = steps as i64;
    let column_f64 =
        |f: fn(f64) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values((1..=n).map(|s| f(s as f64)))) };
    testing::write_table(
        dir,
        standard::train_metrics(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=n)),
            column_f64(|s| 1e-3 * (1.0 - s / 1e4)),
            column_f64(|s| 5.0 / s),
            column_f64(|s| 1.0 + 1.0 / s),
            Arc::new(Int64Array::from_iter_values((1..=n).map(|_| 2048))),
            Arc::new(Int64Array::from_iter_values((1..=n).map(|_| 1000))),
        ],
    )
}

/// Predictions: `add` right 2 of 3 times, `mul` 1 of 1.
fn predictions(dir: &Path) -> Slot {
    benchmark(dir, &[("add", None, true), ("add", None, false), ("mul", None, true), ("add", None, true)])
}

/// Predictions of (family, level, correct) rows.
fn benchmark(dir: &Path, rows: &[(&str, Option<&str>, bool)]) -> Slot {
    let text =
        |f: &dyn Fn(usize) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..rows.len()).map(f))) };
    let extracted: Vec<Option<String>> = (0..rows.len()).map(|i| (i != 1).then(|| i.to_string())).collect();
    testing::write_table(
        dir,
        standard::predictions(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            text(&|i| format!("prompt {i}")),
            text(&|i| format!("#### {i}")),
            Arc::new(StringArray::from(extracted.clone())),
            Arc::new(StringArray::from(extracted)),
            text(&|i| i.to_string()),
            Arc::new(BooleanArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            Arc::new(BooleanArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
}

fn tokens(dir: &Path, lengths: &[i32]) -> Slot {
    let ids: Vec<Vec<i32>> = lengths.iter().map(|&n| vec![1; n as usize]).collect();
    let mask: Vec<Vec<bool>> = lengths.iter().map(|&n| vec![true; n as usize]).collect();
    testing::write_table(
        dir,
        standard::tokens(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..lengths.len() as i64)),
            build::list_i32(ids.iter().map(Vec::as_slice)),
            build::list_bool(mask.iter().map(Vec::as_slice)),
            Arc::new(Int32Array::from(lengths.to_vec())),
            Arc::new(Int32Array::from(lengths.to_vec())),
        ],
    )
}

/// Two rows of 8: documents of 3 + 4 tokens, then one of 6: 13 of 16 tokens used.
fn packed(dir: &Path) -> Slot {
    let seq_lens: [&[i32]; 2] = [&[3, 4], &[6]];
    let row = vec![0i32; 8];
    let doc_ids: [&[i64]; 2] = [&[0, 1], &[2]];
    testing::write_table(
        dir,
        standard::packed(),
        vec![
            build::list_i32([row.as_slice(), row.as_slice()]),
            build::list_i32([row.as_slice(), row.as_slice()]),
            build::list_i32([row.as_slice(), row.as_slice()]),
            build::list_i32(seq_lens),
            build::list_i64(doc_ids),
        ],
    )
}

fn report(dir: &Path, out: &str) -> String {
    let inputs = vec![
        ("training", training(&dir.join("t1"), 300)),
        ("training_hard", training(&dir.join("t2"), 50)),
        ("eval", predictions(&dir.join("p"))),
        ("tokens", tokens(&dir.join("k"), &[5, 9, 9, 30, 120])),
        ("packed", packed(&dir.join("r"))),
    ];
    let stats = testing::run::<Report>("{ title: 'math & more' }", inputs, &dir.join(out), 0).unwrap();
    assert_eq!(stats.metrics["sections"], 5);
    std::fs::read_to_string(dir.join(out).join("report").join(REPORT_FILE)).unwrap()
}

#[test]
fn the_page_has_every_section_with_its_numbers_and_needs_no_network() {
    let dir = tempfile::tempdir().unwrap();
    let html = report(dir.path(), "out");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<title>math &amp; more</title>"));
    for heading in ["Training", "Evaluation", "Token lengths", "Packing", "Stages"] {
        assert!(html.contains(&format!("<h2>{heading}</h2>")), "no section {heading}");
    }
    // four charts of lines and bars, inline
    assert_eq!(html.matches("<svg").count(), 5, "loss, lr, accuracy, lengths, fill");
    assert!(!html.contains("<?xml"));
    // add: 2 of 3; mul: 1 of 1; all: 3 of 4
    assert!(html.contains("<td>66.7% (2/3)</td>") && html.contains("<td>100.0% (1/1)</td>"), "{html}");
    assert!(html.contains("<td>75.0% (3/4)</td>"));
    // the one wrong answer: add, id 1, gold 1, nothing extracted
    let wrong = html.split_once("<h3>Wrong answers of ").expect("a table of wrong answers").1;
    let cells = "<td class=\"text\">add</td><td class=\"text\">1</td><td class=\"text\">1</td>\
                 <td class=\"text\">(none)</td><td class=\"text\">#### 1</td>";
    assert!(wrong.contains(cells), "{wrong}");
    assert_eq!(wrong.split("</table>").next().unwrap().matches("<tr>").count(), 2, "a header and one answer");
    // 13 of 16 tokens used
    assert!(html.contains("<td>81.25%</td>") && html.contains("<td>1.50</td>"));
    // 5 sequences, 173 tokens, median 9, longest 120
    assert!(html.contains("<td>173</td><td>34.6</td><td>9</td>"), "{html}");
    // the loss table: 5/1 first, 5/300 final
    assert!(html.contains("<td>5.0000</td><td>0.0167</td>"), "{html}");
    // nothing to fetch: no scripts, links, images or external styles
    for fetch in ["<script", "<link", "<img", "src=", "@import", "url("] {
        assert!(!html.contains(fetch), "the page contains {fetch}");
    }
    let (before, rest) = html.split_once(RUN_STAGES_BEGIN).expect("the run-stages placeholder");
    assert!(before.contains("<h2>Stages</h2>") && rest.contains(RUN_STAGES_END));
}

#[test]
fn the_page_is_the_same_bytes_every_time() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(report(dir.path(), "a"), report(dir.path(), "b"));
}

/// Four benchmarks of one model: a row and a bar each, side by side; each its own
/// families; MATH's levels.
#[test]
fn benchmarks_are_shown_side_by_side_with_their_families_and_levels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inputs = vec![
        ("eval_gsm8k", benchmark(&d.join("g"), &[("gsm8k", None, true), ("gsm8k", None, false)])),
        (
            "eval_math",
            benchmark(
                &d.join("m"),
                &[
                    ("Algebra", Some("Level 1"), true),
                    ("Algebra", Some("Level 5"), false),
                    ("Geometry", Some("Level 1"), true),
                ],
            ),
        ),
        ("eval_math401", benchmark(&d.join("a"), &[("power", None, true)])),
        ("eval_math23k", benchmark(&d.join("c"), &[("ops_1", None, false), ("ops_2", None, false)])),
    ];
    testing::run::<Report>("", inputs, &d.join("out"), 0).unwrap();
    let html = std::fs::read_to_string(d.join("out/report").join(REPORT_FILE)).unwrap();
    let summary = html.split_once("<h2>Evaluation</h2>").unwrap().1.split("</table>").next().unwrap();
    assert_eq!(summary.matches("<tr>").count(), 5, "a header and one row per benchmark: {summary}");
    assert!(summary.contains("<td>3</td><td>66.7% (2/3)</td>") && summary.contains("<td>0.0% (0/2)</td>"), "{summary}");
    assert!(html.contains("Accuracy of each evaluation"));
    // one families table per benchmark: their families differ
    assert_eq!(html.matches("<th>family</th>").count() - html.matches("<h3>Wrong").count(), 4);
    assert!(html.contains("<tr><td>Level 5</td><td>0.0% (0/1)</td></tr>"), "{html}");
    assert!(html.contains("<tr><td>Level 1</td><td>100.0% (2/2)</td></tr>"), "{html}");
}

#[test]
fn a_report_needs_an_input_and_a_bin() {
    let dir = tempfile::tempdir().unwrap();
    let none = testing::run::<Report>("", vec![], &dir.path().join("o"), 0).unwrap_err();
    assert!(none.to_string().contains("at least one input"), "{none}");
    let slot = tokens(&dir.path().join("k"), &[3]);
    match testing::run::<Report>("{ bins: 0 }", vec![("tokens", slot)], &dir.path().join("o"), 0) {
        Err(StageError::Param { path, .. }) => assert_eq!(path, "bins"),
        other => panic!("{other:?}"),
    }
}

/// Code samples of (family, status) rows.
fn code_samples(dir: &Path, rows: &[(&str, &str)]) -> Slot {
    let text =
        |f: &dyn Fn(usize) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..rows.len()).map(f))) };
    testing::write_table(
        dir,
        standard::code_samples(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
            text(&|i| format!("T/{i}")),
            text(&|i| rows[i].0.to_string()),
            text(&|_| "python".into()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|_| 0))),
            text(&|i| format!("def f{i}(): pass")),
            text(&|i| rows[i].1.to_string()),
            text(&|i| if rows[i].1 == "passed" { String::new() } else { format!("AssertionError {i}") }),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|_| 0.05))),
        ],
    )
}

#[test]
fn code_evaluations_show_pass_at_1_per_family_statuses_and_failed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [("list", "passed"), ("list", "failed"), ("string", "passed"), ("string", "timeout")];
    let inputs = vec![("code", code_samples(&dir.path().join("c"), &rows))];
    testing::run::<Report>("{}", inputs, &dir.path().join("out"), 0).unwrap();
    let html = std::fs::read_to_string(dir.path().join("out/report").join(REPORT_FILE)).unwrap();
    assert!(html.contains("<td>50.0% (1/2)</td>"), "{html}");
    assert!(html.contains("<td>test.input</td><td>2</td><td>1</td><td>1</td><td>0</td><td>0</td>"), "{html}");
    let failed = html.split_once("<h3>Failed samples of ").expect("a table of failed samples").1;
    assert!(failed.contains("<td class=\"text\">T/1</td><td class=\"text\">failed</td>"), "{failed}");
    assert!(failed.contains("AssertionError 3") && failed.contains("timeout"), "{failed}");
}
