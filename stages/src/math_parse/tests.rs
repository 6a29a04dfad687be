use super::*;
use crate::records;
use crate::testing;

/// A records table of string columns (`id` from 1), as a source writes it.
fn records_table(dir: &std::path::Path, columns: &[&str], rows: &[Vec<String>]) -> crate::context::Slot {
    let fields = columns.iter().map(|c| (c.to_string(), c.to_string())).collect();
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(1..=rows.len() as i64))];
    for (i, _) in columns.iter().enumerate() {
        arrays.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))));
    }
    testing::write_table(dir, &records::schema(&fields), arrays)
}

/// The records of a fixture file in one of the formats, read as `source.json` reads it.
fn fixture(name: &str, format: Format) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    crate::records::values(&text)
        .unwrap()
        .into_iter()
        .map(|v| {
            records::mapped_fields(&v.value, &format.columns().iter().map(|c| (c.to_string(), c.to_string())).collect())
                .unwrap()
        })
        .collect()
}

/// Parses a fixture and scores each problem's own solution as a model output would be:
/// every one must be right, as the benchmark's harness reads it.
fn parsed_and_gold_scored(name: &str, format: Format) -> Vec<(String, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let rows = fixture(name, format);
    let input = records_table(&dir.path().join("in"), format.columns(), &rows);
    let params = format!("{{ format: {} }}", format.name());
    let report = testing::run::<MathParse>(&params, vec![("data", input)], &dir.path().join("out"), 0).unwrap();
    assert_eq!(report.metrics["problems"], rows.len(), "{name}: every record parsed");
    let batches = testing::read(&dir.path().join("out/problems"));
    let mut out = Vec::new();
    for batch in &batches {
        let c = Columns::new(batch);
        let (families, solutions, answers) =
            (c.strings("family").unwrap(), c.strings("solution").unwrap(), c.strings("answer").unwrap());
        for i in 0..batch.num_rows() {
            let extracted = format.extract(solutions.value(i));
            assert!(
                extracted.as_deref().is_some_and(|e| format.same(e, answers.value(i))),
                "{name}: the gold solution `{}` scores {extracted:?} against `{}`",
                solutions.value(i),
                answers.value(i)
            );
            out.push((families.value(i).to_string(), answers.value(i).to_string(), solutions.value(i).to_string()));
        }
    }
    out
}

#[test]
fn gsm8k_answers_come_from_the_last_line_and_bad_ones_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<String>> =
        [("Q1", "2*3=<<2*3=6>>6\n#### 6"), ("Q2", "no answer here"), ("Q3", "<<1+1=3>>3 and <<2+y=4>>4\n#### 1,003")]
            .iter()
            .map(|(q, a)| vec![q.to_string(), a.to_string()])
            .collect();
    let input = records_table(&dir.path().join("in"), &["question", "answer"], &rows);
    let err = testing::run::<MathParse>("", vec![("data", input.clone())], &dir.path().join("a"), 0).unwrap_err();
    assert!(err.to_string().contains("id 2: field `answer`: no final answer"), "{err}");
    let report =
        testing::run::<MathParse>("{ on_bad_record: skip }", vec![("data", input)], &dir.path().join("b"), 0).unwrap();
    assert_eq!(report.metrics["problems"], 2);
    let counts = |k: &str| report.metrics[k].as_u64();
    assert_eq!(
        (counts("annotations"), counts("annotations_verified"), counts("annotations_unreadable")),
        (Some(3), Some(1), Some(1))
    );
    let batches = testing::read(&dir.path().join("b/problems"));
    let c = Columns::new(&batches[0]);
    assert_eq!(c.strings("answer").unwrap().value(1), "1003");
    assert_eq!(c.strings("family").unwrap().value(0), "gsm8k");
}

/// The augmentation traps hold every annotation form GSM8K writes: all of them parse,
/// every annotation is read and verifies.
#[test]
fn every_gsm8k_annotation_form_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows = fixture("gsm8k-traps.jsonl", Format::Gsm8k);
    let input = records_table(&dir.path().join("in"), &["question", "answer"], &rows);
    let report = testing::run::<MathParse>("", vec![("data", input)], &dir.path().join("out"), 0).unwrap();
    assert_eq!(report.metrics["problems"], rows.len());
    assert_eq!(report.metrics["annotations_unreadable"], 0, "{:?}", report.metrics["unreadable_examples"]);
    assert_eq!(report.metrics["annotations_verified"], report.metrics["annotations"]);
}

#[test]
fn math_answers_are_the_last_box_with_subject_and_level() {
    let problems = parsed_and_gold_scored("math-test.jsonl", Format::Math);
    let answers: Vec<&str> = problems.iter().map(|(_, a, _)| a.as_str()).collect();
    // Each fixture's answer as a reader of its solution finds it.
    let expected = [
        "5",
        "\\dfrac{1}{2}",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        "40^\\circ",
        "144\\text{ inches}",
        "\\$15.25",
        "25\\%",
        "(2,5)",
        "\\begin{pmatrix} 2 \\\\ 7 \\end{pmatrix}",
        "\\text{(B)}",
        "2",
        "6",
        "2\\sqrt{3}",
        "10,\\!000",
        "\\frac{\\sqrt{3}}{2}",
        "k = 3",
        "-0.75",
    ];
    assert_eq!(answers, expected);
    assert_eq!(problems[5].0, "Prealgebra");
    // A model that writes the answers in other forms is right where the harness says so.
    let f = Format::Math;
    for (gold, written) in [
        (1, "0.5"),
        (2, "(3,\\frac{\\pi}{2})"),
        (3, "40"),
        (4, "144"),
        (5, "15.25"),
        (6, "25"),
        (13, "10000"),
        (15, "3"),
        (16, "-\\frac{3}{4}"),
    ] {
        assert!(f.same(written, answers[gold]), "{written} for {}", answers[gold]);
    }
    assert!(!f.same("\\text{(C)}", answers[9]) && !f.same("\\sqrt{3}", answers[12]));
}

#[test]
fn math401_responses_are_numbers_and_queries_have_kinds() {
    let problems = parsed_and_gold_scored("math401.json", Format::Math401);
    let families: std::collections::BTreeSet<&str> = problems.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        [
            "addition_subtraction",
            "division",
            "euler",
            "expression",
            "irrational",
            "logarithm",
            "multiplication",
            "power",
            "trigonometry"
        ]
    );
    assert!(Format::Math401.same("4.1429", "4.1429") && Format::Math401.same("4.143", "4.1429"));
}

#[test]
fn math23k_answers_and_equations_agree() {
    let dir = tempfile::tempdir().unwrap();
    let rows = fixture("math23k.json", Format::Math23k);
    let input = records_table(&dir.path().join("in"), Format::Math23k.columns(), &rows);
    let report =
        testing::run::<MathParse>("{ format: math23k }", vec![("data", input)], &dir.path().join("out"), 0).unwrap();
    assert_eq!(report.metrics["equations_verified"], rows.len(), "{:?}", report.metrics["equations_differ_examples"]);
    let problems = parsed_and_gold_scored("math23k.json", Format::Math23k);
    assert_eq!(problems[3].1, "40%");
    assert!(Format::Math23k.same("0.4", &problems[3].1) && Format::Math23k.same("2.3333", &problems[8].1));
}

#[test]
fn bad_records_name_their_field_and_a_missing_column_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(Format, Vec<String>, &str); 3] = [
        (Format::Math, vec!["P".into(), "no box here".into(), "Level 1".into(), "Algebra".into()], "field `solution`"),
        (Format::Math401, vec!["1+1=".into(), "two".into()], "field `response`"),
        (Format::Math23k, vec!["T".into(), "x=1+1".into(), "about two".into()], "field `ans`"),
    ];
    for (i, (format, row, field)) in cases.into_iter().enumerate() {
        let input = records_table(&dir.path().join(format!("in{i}")), format.columns(), &[row]);
        let params = format!("{{ format: {} }}", format.name());
        let err = testing::run::<MathParse>(&params, vec![("data", input)], &dir.path().join(format!("out{i}")), 0)
            .unwrap_err();
        assert!(err.to_string().contains(&format!("id 1: {field}")), "{err}");
    }
    let inputs = [("data".to_string(), Artifact::Table(standard::problems().clone()))].into_iter().collect();
    let p = Params { format: Format::Math, ..Params::default() };
    let err = MathParse::outputs(&p, &inputs).unwrap_err();
    assert!(matches!(&err, StageError::Param { path, .. } if path == "format"), "{err}");
    assert!(err.to_string().contains("`problem`"), "{err}");
}
