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

/// `--row` decodes a row token by token; the marked tokens are exactly the trained
/// ones, and each document's positions restart at 0.
#[test]
fn inspect_row_shows_tokens_with_the_trained_ones_marked() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "packed"]);
    let text = work.ok(&["inspect", SMOKE, "tokens", "--row", "2"]);
    assert!(text.contains("tokens.tokens row 2:") && text.contains("document 1 (id "), "{text}");
    // the system and user turns are outside the marks, the assistant's answer inside
    let body = text.split_once("trained tokens inside ⟦ ⟧").unwrap().1;
    let (before, inside) = body.split_once('⟦').expect("a trained run");
    assert!(before.contains("<|im_start|>|system|") && before.contains("<|im_start|>|assistant|"), "{text}");
    let inside = inside.split_once('⟧').expect("closed").0;
    assert!(inside.ends_with("<|im_end|>|") && !inside.contains("<|im_start|>"), "{inside}");
    assert!(inside.contains("####"), "{inside}");

    let text = work.ok(&["inspect", SMOKE, "packed", "--row", "0"]);
    let documents: Vec<&str> = text.lines().filter(|l| l.starts_with("── document")).collect();
    assert!(documents.len() > 1, "{text}");
    for line in &documents {
        assert!(line.contains(", positions 0..="), "{line}");
    }
    // as many tokens inside the marks as the row has trained labels
    let header = text.lines().next().unwrap();
    let trained: usize = header.split(", ").find_map(|p| p.strip_suffix(" trained")).unwrap().parse().unwrap();
    let body = text.split_once("trained tokens inside ⟦ ⟧").unwrap().1;
    let marked: usize = body
        .split('⟦')
        .skip(1)
        .map(|run| run.split_once('⟧').unwrap().0.replace("<|im_end|>", "E").matches('|').count())
        .sum();
    assert!(trained > 0 && marked == trained, "{marked} marked, {trained} trained");

    let out = work.kiln(&["inspect", SMOKE, "packed", "--row", "100000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the end"));
    let out = work.kiln(&["inspect", SMOKE, "split", "--row", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no table of token ids"));
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

/// The full-scale recipe plans anywhere once its model folder exists (the files are only
/// looked for at plan time); the two-stage recipe binds one train stage's model to the
/// next one's `init`.
#[test]
fn the_recipes_plan() {
    let work = Workdir::new();
    let model = work.path().join("Qwen2-7B");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["tokenizer.json", "config.json", "model.safetensors"] {
        std::fs::write(model.join(file), "{}").unwrap();
    }
    let tokenizer = format!("base_tokenizer.with.path={}", model.join("tokenizer.json").display());
    let init = format!("sft.with.init={}", model.display());
    let plan = work.ok(&["plan", "pipelines/math-qwen-7b.yaml", "--set", &tokenizer, "--set", &init]);
    assert!(plan.lines().any(|l| l.starts_with("sft ") && l.contains("will run")), "{plan}");

    let he = super::code::humaneval_file();
    let humaneval = format!("humaneval.with.path={he}");
    let plan =
        work.ok(&["plan", "pipelines/code-qwen-7b.yaml", "--set", &tokenizer, "--set", &init, "--set", &humaneval]);
    assert!(plan.lines().any(|l| l.starts_with("sft_2 ") && l.contains("will run")), "{plan}");

    let plan = work.ok(&["plan", "pipelines/math-sft-two-stage.yaml"]);
    let stages: Vec<&str> = plan.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    let at = |name: &str| stages.iter().position(|s| *s == name).unwrap_or_else(|| panic!("{name}: {plan}"));
    assert!(at("sft") < at("sft_hard") && at("sft_hard") < at("eval"), "{plan}");
}

/// `kiln schema` is a JSON Schema that every pipeline in `pipelines/` satisfies and a
/// pipeline with a misspelt parameter does not, as Python's `jsonschema` (an independent
/// validator) judges them.
#[test]
fn every_pipeline_satisfies_the_schema() {
    let work = Workdir::new();
    let schema = work.path().join("kiln.schema.json");
    std::fs::write(&schema, work.ok(&["schema"])).unwrap();
    let bad = work.path().join("bad.yaml");
    std::fs::write(&bad, "stages:\n  packed:\n    uses: pack\n    with: { seq_length: 2048 }\n").unwrap();
    let script = r#"
import glob, json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
for path in sorted(glob.glob("pipelines/*.yaml")):
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(open(path)))]
    print(path, "ok" if not errors else "; ".join(errors))
errors = [e.message for e in validator.iter_errors(yaml.safe_load(open(sys.argv[2])))]
print("bad", "; ".join(errors) or "no error")
"#;
    let out = std::process::Command::new("python3")
        .current_dir(super::repo())
        .args(["-c", script, schema.to_str().unwrap(), bad.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let pipelines = std::fs::read_dir(super::repo().join("pipelines")).unwrap().count();
    let ok = text.lines().filter(|l| l.starts_with("pipelines/") && l.ends_with(" ok")).count();
    assert_eq!(ok, pipelines, "{text}");
    let bad = text.lines().find(|l| l.starts_with("bad ")).unwrap();
    assert!(bad.contains("'seq_length' was unexpected"), "{bad}");
}
