//! The inspection commands: runs, show, inspect, stages, and their errors.

use super::{SMOKE, Workdir};

#[test]
fn runs_and_show_describe_recorded_runs() {
    let work = Workdir::new();
    assert!(work.ok(&["runs"]).contains("no runs recorded"));
    work.ok(&["run", SMOKE, "--until", "split"]);
    let runs = work.ok(&["runs"]);
    let id = work.last_manifest()["id"].as_str().unwrap().to_string();
    assert!(runs.contains(&id) && runs.contains("math-sft-smoke"), "{runs}");
    let shown = work.ok(&["show", &id[..17]]);
    assert!(shown.contains(&format!("run {id}")), "{shown}");
    assert!(shown.lines().any(|l| l.starts_with("split") && l.contains("ran")), "{shown}");
    assert!(work.ok(&["show", "last"]).contains(&id));

    let out = work.kiln(&["show", "19990101"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `19990101`"));
}

#[test]
fn inspect_shows_schema_rows_and_first_rows() {
    let work = Workdir::new();
    let out = work.kiln(&["inspect", SMOKE, "packed"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`packed` is not cached yet") && err.contains("--until packed"), "{err}");

    work.ok(&["run", SMOKE, "--until", "packed"]);
    let text = work.ok(&["inspect", SMOKE, "packed", "--rows", "2"]);
    assert!(text.contains("output packed: table `packed`"), "{text}");
    assert!(text.contains("seq_lens      list<int32>"), "{text}");
    let text = work.ok(&["inspect", SMOKE, "split.eval"]);
    assert!(text.contains("output eval: table `problems`") && !text.contains("output train"), "{text}");
    let text = work.ok(&["inspect", SMOKE, "tokenizer"]);
    assert!(text.contains("tokenizer.json"), "{text}");

    let out = work.kiln(&["inspect", SMOKE, "split.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("its outputs are train, eval"));
}

#[test]
fn stages_lists_every_kind_with_its_parameters() {
    let work = Workdir::new();
    let text = work.ok(&["stages"]);
    for kind in ["math.generate", "split", "chat.format", "tokenizer.train", "tokenize", "pack", "train", "eval.math"] {
        assert!(text.contains(&format!("{kind} (v")), "{kind} missing:\n{text}");
    }
    assert!(text.contains("seq_len: 1024") && text.contains("warmup_ratio: 0.03"), "{text}");
}
