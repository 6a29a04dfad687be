use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};

use super::*;
use crate::stage::Artifact;
use crate::testing;

/// A code-problems table whose canonical solutions are the given bodies of `f`.
fn problems(dir: &std::path::Path, bodies: &[&str]) -> crate::context::Slot {
    let n = bodies.len();
    let text = |f: &dyn Fn(usize) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..n).map(f))) };
    testing::write_table(
        dir,
        standard::code_problems(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            text(&|i| format!("T/{i}")),
            text(&|i| if i % 2 == 0 { "even".into() } else { "odd".into() }),
            text(&|_| "python".into()),
            text(&|_| "def f(x):\n".into()),
            text(&|_| "Write f.".into()),
            text(&|_| "f".into()),
            text(&|i| bodies[i].to_string()),
            text(&|_| "def check(candidate):\n    assert candidate(2) == 4\ncheck(f)".into()),
            text(&|_| String::new()),
        ],
    )
}

#[test]
fn each_ending_gets_its_status_and_pass_at_1_counts_the_passed() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = [
        "    return x * 2\n",
        "    return x + 3\n",
        "    return (x\n",
        "    while True:\n        pass\n",
        "    return len(bytearray(8 << 30))\n",
        "    return x + x\n",
    ];
    let data = problems(&dir.path().join("in"), &bodies);
    let with = "{ outputs: solutions, timeout: 1, memory_mb: 512 }";
    let report = testing::run::<EvalCode>(with, vec![("data", data)], &dir.path().join("out"), 0).unwrap();
    let batches = testing::read(&dir.path().join("out/samples"));
    let c = Columns::new(&batches[0]);
    let statuses: Vec<&str> = (0..6).map(|r| c.strings("status").unwrap().value(r)).collect();
    assert_eq!(statuses, ["passed", "failed", "error", "timeout", "memory", "passed"]);
    assert!(c.strings("stderr").unwrap().value(1).contains("AssertionError"));
    assert_eq!(report.metrics["pass@1"].as_f64(), Some(2.0 / 6.0));
    assert_eq!(report.metrics["pass@1_per_family"]["even"].as_f64(), Some(1.0 / 3.0));
    assert_eq!(report.metrics["statuses"]["timeout"].as_u64(), Some(1));
    assert_eq!(report.metrics["isolation"].as_array().map(Vec::len), Some(7));
}

#[test]
fn the_samples_are_the_same_bytes_on_a_rerun_but_for_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let data = problems(&dir.path().join("in"), &["    return x * 2\n", "    return 0\n"]);
    let mut seen = Vec::new();
    for out in ["a", "b"] {
        testing::run::<EvalCode>("{ outputs: solutions }", vec![("data", data.clone())], &dir.path().join(out), 0)
            .unwrap();
        let batches = testing::read(&dir.path().join(out).join("samples"));
        let c = Columns::new(&batches[0]);
        let rows: Vec<(String, String)> = (0..2)
            .map(|r| (c.strings("completion").unwrap().value(r).into(), c.strings("status").unwrap().value(r).into()))
            .collect();
        seen.push(rows);
    }
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn completions_are_cut_at_the_first_stop_and_answers_give_their_fenced_code() {
    let stops = Params::default().stop;
    assert_eq!(cut_at_stop("    return 1\n\ndef other():\n", &stops), "    return 1\n");
    assert_eq!(cut_at_stop("    return 1\n", &stops), "    return 1\n");
    assert_eq!(
        fenced_code("Here:\n```python\ndef f(x):\n    return 2 * x\n```\nDone."),
        "def f(x):\n    return 2 * x\n"
    );
    assert_eq!(fenced_code("def f(x): return x"), "def f(x): return x");
}

#[test]
fn bad_parameters_are_named() {
    let p = Params { timeout: 0.0, ..Params::default() };
    assert!(matches!(EvalCode::check(&p), Err(StageError::Param { path, .. }) if path == "timeout"));
    let p = Params { languages: vec![], ..Params::default() };
    assert!(matches!(EvalCode::check(&p), Err(StageError::Param { path, .. }) if path == "languages"));
    let data = ("data".to_string(), Artifact::Table(standard::code_problems().clone()));
    let without: InputArtifacts = [data].into_iter().collect();
    assert!(
        matches!(EvalCode::outputs(&Params::default(), &without), Err(StageError::Param { path, .. }) if path == "outputs")
    );
}

#[test]
fn sampling_parameters_are_checked() {
    let p = Params { samples: 5, ..Params::default() };
    assert!(matches!(EvalCode::check(&p), Err(StageError::Param { path, .. }) if path == "temperature"));
    let p = Params { samples: 5, temperature: 0.8, top_p: 0.0, ..Params::default() };
    assert!(matches!(EvalCode::check(&p), Err(StageError::Param { path, .. }) if path == "top_p"));
    let p = Params { samples: 2, temperature: 0.8, outputs: Outputs::Solutions, ..Params::default() };
    assert!(matches!(EvalCode::check(&p), Err(StageError::Param { path, .. }) if path == "samples"));
}
