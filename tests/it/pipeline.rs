//! The smoke pipeline end to end: caching, selective reruns, early cut-off,
//! determinism, and what a failed or killed stage leaves behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::{SMOKE, Workdir, wait_for};

const STAGES: [&str; 9] = ["problems", "split", "chats", "tokenizer", "tokens", "packed", "sft", "eval", "report"];

fn expect(work: &Workdir, expected: &[(&str, &str)]) {
    let got = work.statuses();
    let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expected);
}

fn all(status: &str) -> Vec<(&'static str, &str)> {
    STAGES.iter().map(|s| (*s, status)).collect()
}

#[test]
fn the_smoke_pipeline_runs_then_is_all_cached() {
    let work = Workdir::new();
    let out = work.ok(&["run", SMOKE]);
    expect(&work, &all("ran"));
    assert!(out.contains("accuracy"), "the summary reports the held-out accuracy:\n{out}");
    let eval = &work.last_manifest()["stages"][7];
    let accuracy = eval["metrics"]["accuracy"].as_f64().expect("eval reports accuracy");
    assert!((0.0..=1.0).contains(&accuracy));
    assert!(eval["metrics"]["accuracy_per_family"].as_object().is_some_and(|m| !m.is_empty()));

    let out = work.ok(&["run", SMOKE]);
    expect(&work, &all("cached"));
    assert!(out.contains("9 cached"), "{out}");

    // How often training checkpoints cannot change what it writes: not in the key.
    let plan = work.ok(&["plan", SMOKE, "--set", "sft.with.checkpoint_every=3"]);
    assert!(!plan.contains("will run"), "{plan}");
}

/// Status comes from the records in `meta.json` and a listing of each entry's files
/// with their sizes: a no-op run never opens an artifact, so it still succeeds with
/// every artifact file overwritten by as many other bytes (which `--verify-inputs` and
/// `rerun --verify` exist to see).
#[test]
fn a_no_op_run_reads_no_artifact_data() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE]);
    let mut overwritten = 0;
    for (file, bytes) in artifacts(&work.store()) {
        std::fs::write(work.store().join(file), vec![b'x'; bytes.len()]).unwrap();
        overwritten += 1;
    }
    assert!(overwritten > 8);
    work.ok(&["run", SMOKE]);
    expect(&work, &all("cached"));
}

#[test]
fn a_train_parameter_reruns_only_train_and_what_follows() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE]);
    work.ok(&["run", SMOKE, "--set", "sft.with.steps=13"]);
    let mut expected: Vec<(&str, &str)> = STAGES[..6].iter().map(|s| (*s, "cached")).collect();
    expected.extend([("sft", "ran"), ("eval", "ran"), ("report", "ran")]);
    expect(&work, &expected);
    // The override is part of the run record.
    assert_eq!(work.last_manifest()["overrides"][0], "sft.with.steps=13");
}

/// A forced stage that reproduces its bytes leaves its downstream cached.
#[test]
fn a_rerun_with_the_same_output_cuts_off_early() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE]);
    work.ok(&["run", SMOKE, "--force", "chats"]);
    let mut expected = all("cached");
    expected[2] = ("chats", "ran");
    expect(&work, &expected);
}

#[test]
fn selections_run_what_they_name() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "tokens"]);
    let mut expected = all("skipped");
    for (i, s) in STAGES[..5].iter().enumerate() {
        expected[i] = (s, "ran");
    }
    expect(&work, &expected);

    // eval's inputs are not cached: a usage error, exit status 2, naming what to run.
    let out = work.kiln(&["run", SMOKE, "--only", "eval"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`eval` reads `sft`") && err.contains("--until sft"), "{err}");

    work.ok(&["run", SMOKE, "--only", "packed"]);
    let mut expected: Vec<(&str, &str)> = STAGES[..5].iter().map(|s| (*s, "cached")).collect();
    expected.extend([("packed", "ran"), ("sft", "skipped"), ("eval", "skipped"), ("report", "skipped")]);
    expect(&work, &expected);

    work.ok(&["run", SMOKE, "--from", "sft"]);
    let mut expected: Vec<(&str, &str)> = STAGES[..6].iter().map(|s| (*s, "cached")).collect();
    expected.extend([("sft", "ran"), ("eval", "ran"), ("report", "ran")]);
    expect(&work, &expected);

    let out = work.kiln(&["run", SMOKE, "--only", "tokenz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Did you mean `tokens`?"));

    // Selections that cannot mean what they say are usage errors, not silent no-ops.
    for (args, says) in [
        (&["--from", "sft", "--until", "tokens"][..], "selects no stage"),
        (&["--only", "packed", "--from", "sft"][..], "cannot be combined"),
    ] {
        let mut cmd = vec!["run", SMOKE];
        cmd.extend(args);
        let out = work.kiln(&cmd);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}");
    }
}

#[test]
fn plan_names_the_first_key_field_that_changed() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "packed"]);
    let plan = work.ok(&["plan", SMOKE, "--set", "packed.with.seq_len=128"]);
    let line = |stage: &str| plan.lines().find(|l| l.starts_with(stage)).unwrap_or_default().to_string();
    assert!(line("tokens").contains("cached"), "{plan}");
    assert!(line("packed").contains("will run") && line("packed").contains("with.seq_len 512 -> 128"), "{plan}");
    assert!(line("sft").contains("upstream `packed` will run"), "{plan}");
}

/// Names and bytes of every artifact file, by cache key (meta.json holds timings).
fn artifacts(store: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![store.join("cache")];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.file_name().unwrap() != "meta.json" {
                let rel = path.strip_prefix(store).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Also with a different number of threads: reductions have a fixed order.
#[test]
fn two_runs_from_scratch_give_identical_bytes() {
    let (a, b) = (Workdir::new(), Workdir::new());
    let out = a.kiln_with(&["run", SMOKE], &[("RAYON_NUM_THREADS", "1")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b.ok(&["run", SMOKE]);
    let (x, y) = (artifacts(&a.store()), artifacts(&b.store()));
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
    for (name, bytes) in &x {
        assert!(bytes == &y[name], "{name} differs between two runs");
    }
    assert!(x.keys().any(|k| k.ends_with("model.safetensors")));
}

#[test]
fn a_failed_stage_exits_1_and_leaves_the_cache_as_it_was() {
    let work = Workdir::new();
    // Conversations are longer than 16 tokens: pack refuses to cut them by default.
    let out = work.kiln(&["run", SMOKE, "--set", "packed.with.seq_len=16"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stage `packed` (pack) failed") && err.contains("overlong"), "{err}");
    let entries = std::fs::read_dir(work.store().join("cache")).unwrap().count();
    assert_eq!(entries, 5, "only the stages before `packed` have entries");
    assert_eq!(work.last_manifest()["status"], "failed");
}

/// A learning rate that cannot be meant is refused at plan time, at its parameter, and
/// nothing runs (the stage's own guard against a diverging loss is tested in `train`).
#[test]
fn an_impossible_learning_rate_is_a_plan_error() {
    let work = Workdir::new();
    let out = work.kiln(&["run", SMOKE, "--set", "sft.with.optimizer.lr=1.0e30"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid parameter `optimizer.lr` of stage `sft` (train): 1e30 cannot be meant"), "{err}");
    assert!(err.contains("--set:1:"), "{err}");
    assert!(std::fs::read_dir(work.store().join("cache")).map_or(0, |d| d.count()) == 0, "nothing ran");
}

#[test]
fn a_killed_stage_leaves_no_entry_and_the_next_run_resumes() {
    let work = Workdir::new();
    let mut child = work.spawn(&["run", SMOKE, "--set", "sft.with.steps=1000000"], Stdio::null());
    // Wait until the six data stages are committed and training has begun.
    let cache = work.store().join("cache");
    wait_for("the start of training", || {
        let entries = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
        let tmp = std::fs::read_dir(work.store().join("tmp")).map(|d| d.count()).unwrap_or(0);
        (entries == 6 && tmp > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 6, "no entry for the killed stage");
    let plan = work.ok(&["plan", SMOKE]);
    assert!(plan.lines().any(|l| l.starts_with("packed") && l.contains("cached")), "{plan}");
    assert!(plan.lines().any(|l| l.starts_with("sft") && l.contains("will run")), "{plan}");

    work.ok(&["run", SMOKE]);
    let mut expected: Vec<(&str, &str)> = STAGES[..6].iter().map(|s| (*s, "cached")).collect();
    expected.extend([("sft", "ran"), ("eval", "ran"), ("report", "ran")]);
    expect(&work, &expected);
}

/// Training killed after a checkpoint resumes from it, and the entries it leaves equal,
/// byte for byte, those of a run never interrupted.
#[test]
fn killed_training_resumes_from_its_checkpoint_with_identical_bytes() {
    let sets = ["--set", "sft.with.steps=400", "--set", "sft.with.checkpoint_every=40"];
    let mut args = vec!["run", SMOKE, "--until", "sft"];
    args.extend(sets);
    let work = Workdir::new();
    let mut child = work.spawn(&args, Stdio::null());
    let checkpoint = wait_for("a checkpoint", || {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::fs::read_dir(work.store().join("scratch"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path().join("checkpoints/latest"))
            .find(|p| p.is_file())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(checkpoint.is_file(), "the checkpoint outlives the killed run");
    work.ok(&args);
    let sft = &work.last_manifest()["stages"][6];
    assert_eq!(sft["status"], "ran");
    let resumed = sft["metrics"]["resumed_at_step"].as_u64().expect("training resumed");
    assert!(resumed >= 40 && resumed.is_multiple_of(40), "{resumed}");
    assert!(!checkpoint.exists(), "the scratch folder goes once the entry is committed");

    let whole = Workdir::new();
    whole.ok(&args);
    assert!(whole.last_manifest()["stages"][6]["metrics"].get("resumed_at_step").is_none());
    let (x, y) = (artifacts(&work.store()), artifacts(&whole.store()));
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
    for (file, bytes) in &x {
        assert!(bytes == &y[file], "{file} differs after resuming");
    }
}

/// Two runs of one pipeline at once in one store: the lock per key lets one compute each
/// entry while the other waits and then finds it cached.
#[test]
fn concurrent_runs_share_entries_without_clobbering() {
    let work = Workdir::new();
    let spawn = || work.spawn(&["run", SMOKE], Stdio::piped());
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read_dir(work.store().join("cache")).unwrap().count(), 9);
    let runs: Vec<_> = std::fs::read_dir(work.store().join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 2);
    // Every stage ran exactly once across the two runs.
    let mut ran: Vec<String> = Vec::new();
    for run in runs {
        let text = std::fs::read_to_string(run.unwrap().path().join("manifest.json")).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        for s in manifest["stages"].as_array().unwrap() {
            if s["status"] == "ran" {
                ran.push(s["name"].as_str().unwrap().to_string());
            }
        }
    }
    ran.sort();
    let mut expected: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(ran, expected);
    work.ok(&["run", SMOKE]);
    expect(&work, &all("cached"));
}

/// The poisoned-cache reproducer of issue 14: a deleted Parquet part of `problems` is
/// found by its files against its record (never read as an empty table), named by
/// `query`, moved aside by the next run and computed again; a flipped byte in the model
/// `eval` reads is found by `--verify-inputs`. Both end with the bytes of a clean run.
#[test]
fn a_damaged_entry_is_named_moved_aside_and_computed_again() {
    let (work, clean) = (Workdir::new(), Workdir::new());
    work.ok(&["run", SMOKE]);
    clean.ok(&["run", SMOKE]);
    let key = |stage: &str| {
        let manifest = work.last_manifest();
        let record = manifest["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).unwrap().clone();
        record["key"].as_str().unwrap().to_string()
    };
    let problems = work.store().join("cache").join(key("problems")).join("problems");
    for part in std::fs::read_dir(&problems).unwrap() {
        std::fs::remove_file(part.unwrap().path()).unwrap();
    }
    let out = work.kiln(&["query", SMOKE, "SELECT count(*) FROM problems"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stage `problems`: its cache entry is damaged: output `problems`: missing part-"), "{err}");

    let out = work.kiln(&["run", SMOKE, "--force", "split"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("problems: cache entry") && err.contains("is damaged (output `problems`: missing"), "{err}");
    assert_eq!(std::fs::read_dir(work.store().join("damaged")).unwrap().count(), 1);
    assert_eq!(artifacts(&work.store()), artifacts(&clean.store()));

    // A flipped byte keeps the size: only the digests see it.
    let model = work.store().join("cache").join(key("sft")).join("model/model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    std::fs::write(&model, &bytes).unwrap();
    let out = work.kiln(&["run", SMOKE, "--force", "eval", "--verify-inputs"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("input `model` (the entry of `sft`") && err.contains("its content changed"), "{err}");
    let out = work.kiln(&["run", SMOKE]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(artifacts(&work.store()), artifacts(&clean.store()));
}
