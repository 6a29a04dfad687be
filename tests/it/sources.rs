//! Pipelines that read files: GSM8K-format fixtures through `source.jsonl` and
//! `math.parse`; missing and changed files.

use super::{Workdir, repo};

const GSM8K: &str = "pipelines/gsm8k-sft.yaml";

fn sets(train: &str, test: &str) -> [String; 4] {
    ["--set".into(), format!("train_source.with.path={train}"), "--set".into(), format!("test_source.with.path={test}")]
}

#[test]
fn gsm8k_fixtures_parse_into_problems() {
    let work = Workdir::new();
    let args = sets("tests/fixtures/gsm8k-train.jsonl", "tests/fixtures/gsm8k-test.jsonl");
    let mut cmd = vec!["run", GSM8K, "--until", "train_problems"];
    cmd.extend(args.iter().map(String::as_str));
    work.ok(&cmd);
    let manifest = work.last_manifest();
    let parse = manifest["stages"].as_array().unwrap().iter().find(|s| s["name"] == "train_problems").unwrap();
    assert_eq!(parse["metrics"]["problems"], 16);
    assert_eq!(parse["metrics"]["annotations"], parse["metrics"]["annotations_verified"]);
}

/// The last test fixture rewords the first training fixture: decontamination drops it.
#[test]
fn training_rows_overlapping_the_test_set_are_dropped() {
    let work = Workdir::new();
    let args = sets("tests/fixtures/gsm8k-train.jsonl", "tests/fixtures/gsm8k-test.jsonl");
    let mut cmd = vec!["run", GSM8K, "--until", "train_clean"];
    cmd.extend(args.iter().map(String::as_str));
    work.ok(&cmd);
    let manifest = work.last_manifest();
    let stage = |name: &str| manifest["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    let augmented = stage("train_augmented")["metrics"]["rows"].as_u64().unwrap();
    assert!(augmented > 16, "augmentation adds items: {augmented}");
    let deduped = stage("train_dedup")["metrics"]["kept"].as_u64().unwrap();
    let clean = &stage("train_clean")["metrics"];
    assert!(clean["dropped"].as_u64().unwrap() >= 1);
    assert_eq!(clean["kept"].as_u64().unwrap() + clean["dropped"].as_u64().unwrap(), deduped);
    assert_eq!(clean["eval_rows_matched"], 1);
    let mut inspect = vec!["inspect", GSM8K, "train_clean.dropped"];
    inspect.extend(args.iter().map(String::as_str));
    let shown = work.ok(&inspect);
    let header = |l: &&str| l.split_whitespace().collect::<Vec<_>>() == ["id", "eval_set", "eval_id", "ngram"];
    let first = shown.lines().skip_while(|l| !header(l)).nth(1).unwrap_or_default();
    let cells: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(cells[..4], ["1", "eval", "4", "baker"], "{shown}");
}

/// A pipeline run with `--set ...path=` is queried and inspected without typing them
/// again: the newest run's overrides are taken, and the command says so.
#[test]
fn query_and_inspect_take_the_overrides_of_the_last_run() {
    let work = Workdir::new();
    let args = sets("tests/fixtures/gsm8k-train.jsonl", "tests/fixtures/gsm8k-test.jsonl");
    let mut cmd = vec!["run", GSM8K, "--until", "train_problems"];
    cmd.extend(args.iter().map(String::as_str));
    work.ok(&cmd);
    let run = work.last_manifest()["id"].as_str().unwrap().to_string();
    let out = work.kiln(&["query", GSM8K, "SELECT count(*) AS n FROM train_problems"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(shown.lines().take(2).collect::<Vec<_>>(), ["n", "16"], "{shown}");
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains(&format!("with the overrides of run {run}")), "{note}");
    assert!(note.contains("--set train_source.with.path=tests/fixtures/gsm8k-train.jsonl"), "{note}");
    let shown = work.ok(&["inspect", GSM8K, "train_problems", "--rows", "1"]);
    assert!(shown.contains("output problems: table `problems`, 16 rows"), "{shown}");
    // Given overrides are used as given: the default path does not exist, so nothing
    // is cached under the keys it gives.
    let out = work.kiln(&["query", GSM8K, "SELECT count(*) FROM train_problems", "--set", "seed=7"]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`train_problems` is not cached yet"));
}

#[test]
fn a_missing_file_is_a_plan_error_at_its_parameter() {
    let work = Workdir::new();
    let out = work.kiln(&["plan", GSM8K, "--set", "test_source.with.path=tests/fixtures/gsm8k-test.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no file `data/gsm8k/train.jsonl`"), "{err}");
    assert!(err.contains("pipelines/gsm8k-sft.yaml:12:19"), "points at the path in the file: {err}");
}

/// Only the stages a run computes need their files: the training data can be prepared
/// before the test set is downloaded, and the run that needs it says which is missing.
#[test]
fn a_run_needs_only_the_files_of_the_stages_it_computes() {
    let work = Workdir::new();
    let train = "train_source.with.path=tests/fixtures/gsm8k-train.jsonl";
    let shown = work.ok(&["run", GSM8K, "--set", train, "--until", "train_problems"]);
    assert!(shown.contains("train_problems"), "{shown}");
    for selection in [&["--until", "test_problems"][..], &[]] {
        let mut cmd = vec!["run", GSM8K, "--set", train];
        cmd.extend(selection);
        let out = work.kiln(&cmd);
        assert_eq!(out.status.code(), Some(2), "{selection:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no file `data/gsm8k/test.jsonl`"), "{err}");
        assert!(err.contains("pipelines/gsm8k-sft.yaml:15:19"), "{err}");
        assert!(!err.contains("train.jsonl"), "{err}");
    }
}

/// A working directory that has run the GSM8K pipeline up to `train_problems` on a copy
/// of the training fixture (which a test may then change), with the `--set`s it took.
fn parsed_from_a_copy() -> (Workdir, std::path::PathBuf, [String; 4]) {
    let work = Workdir::new();
    let train = work.path().join("train.jsonl");
    std::fs::copy(repo().join("tests/fixtures/gsm8k-train.jsonl"), &train).unwrap();
    let args = sets(train.to_str().unwrap(), "tests/fixtures/gsm8k-test.jsonl");
    let mut cmd = vec!["run", GSM8K, "--until", "train_problems"];
    cmd.extend(args.iter().map(String::as_str));
    work.ok(&cmd);
    (work, train, args)
}

#[test]
fn a_changed_file_reruns_its_source_and_what_follows() {
    let (work, train, args) = parsed_from_a_copy();
    let mut cmd = vec!["run", GSM8K, "--until", "train_problems"];
    cmd.extend(args.iter().map(String::as_str));
    let mut plan = vec!["plan", GSM8K];
    plan.extend(args.iter().map(String::as_str));
    assert!(work.ok(&plan).lines().any(|l| l.starts_with("train_problems") && l.contains("cached")));
    let mut text = std::fs::read_to_string(&train).unwrap();
    text.push_str("{\"question\": \"What is 1+1?\", \"answer\": \"1+1=<<1+1=2>>2\\n#### 2\"}\n");
    std::fs::write(&train, text).unwrap();
    let shown = work.ok(&plan);
    let line = shown.lines().find(|l| l.starts_with("train_source ")).unwrap();
    assert!(line.contains("will run") && line.contains("files.path"), "{shown}");
    work.ok(&cmd);
    let statuses = work.statuses();
    assert!(statuses.iter().any(|(n, s)| n == "train_problems" && s == "ran"), "{statuses:?}");
}

/// `kiln rerun` repeats the recorded run's selection (here `--until train_problems`), and
/// names the stages that no longer have that run's key because a file they read changed.
#[test]
fn a_rerun_repeats_the_selection_and_names_a_changed_file() {
    let (work, train, _) = parsed_from_a_copy();
    let id = work.last_manifest()["id"].as_str().unwrap().to_string();
    let first = work.statuses();
    assert!(first.iter().any(|(_, s)| s == "skipped") && first.iter().any(|(_, s)| s == "ran"), "{first:?}");

    let out = work.kiln(&["rerun", &id]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("note:"), "nothing changed: {err}");
    let expected: Vec<(String, String)> = first
        .iter()
        .map(|(name, status)| (name.clone(), if status == "ran" { "cached".into() } else { status.clone() }))
        .collect();
    assert_eq!(work.statuses(), expected);

    let text = std::fs::read_to_string(&train).unwrap();
    let fewer: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&train, fewer.join("\n") + "\n").unwrap();
    let out = work.kiln(&["rerun", &id]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let note = format!("note: `train_source` no longer has the key of run {id}: files.path ");
    assert!(err.contains(&note), "{err}");
    assert_eq!(work.statuses(), first, "the same stages ran again");
}
