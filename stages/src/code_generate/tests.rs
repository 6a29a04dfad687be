use super::*;
use crate::table::Columns;
use crate::testing;

fn executor() -> Executor {
    let sandbox = Sandbox::probe(Isolation::Strict, Limits::default()).unwrap();
    Executor::new(sandbox, &[Language::Python]).unwrap()
}

#[test]
fn every_family_s_references_pass_the_tests_computed_in_rust() {
    let families: Vec<String> = FAMILIES.map(String::from).to_vec();
    let items: Vec<Item> = (0..500).map(|id| item(&families, 1, 3, id)).collect();
    let verdict = verify(&executor(), &items).unwrap();
    let failed: Vec<&str> =
        items.iter().zip(&verdict).filter(|(_, ok)| !**ok).map(|(i, _)| i.prompt.as_str()).collect();
    assert!(failed.is_empty(), "references that fail their own tests:\n{}", failed.join("\n"));
}

#[test]
fn docstrings_show_as_many_examples_as_asked() {
    let families = vec!["list".to_string()];
    for examples in [0, 1, 3] {
        let prompt = item(&families, examples, 3, 0).prompt;
        assert_eq!(prompt.matches(">>> ").count(), examples, "{prompt}");
    }
    let p = Params { examples: 6, ..Params::default() };
    assert!(matches!(CodeGenerate::check(&p), Err(StageError::Param { path, .. }) if path == "examples"));
}

#[test]
fn a_wrong_reference_is_caught_by_verification() {
    let families = vec!["list".to_string()];
    let mut items: Vec<Item> = (0..4).map(|id| item(&families, 1, 3, id)).collect();
    items[2].solution = "    return None\n".into();
    assert_eq!(verify(&executor(), &items).unwrap(), [true, true, false, true]);
}

#[test]
fn prompts_are_varied_and_the_output_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let mut tables = Vec::new();
    for out in ["a", "b"] {
        let report = testing::run::<CodeGenerate>("{ count: 300 }", vec![], &dir.path().join(out), 5).unwrap();
        assert_eq!(report.metrics["dropped_unverified"], 0);
        let batches = testing::read(&dir.path().join(out).join("problems"));
        let c = Columns::new(&batches[0]);
        let prompts: Vec<String> =
            (0..batches[0].num_rows()).map(|r| c.strings("prompt").unwrap().value(r).to_string()).collect();
        let names: std::collections::BTreeSet<&str> =
            (0..batches[0].num_rows()).map(|r| c.strings("entry_point").unwrap().value(r)).collect();
        assert!(names.len() > 40, "{names:?}");
        let distinct: std::collections::BTreeSet<&String> = prompts.iter().collect();
        assert!(distinct.len() > 290, "{} distinct prompts", distinct.len());
        assert!(c.strings("answer").unwrap().value(0).starts_with("```python\ndef "));
        tables.push(prompts);
    }
    assert_eq!(tables[0], tables[1]);
}

#[test]
fn bad_parameters_are_named() {
    let p = Params { families: vec!["strings".into()], ..Params::default() };
    assert!(matches!(CodeGenerate::check(&p), Err(StageError::Param { path, .. }) if path == "families"));
    let p = Params { count: 0, ..Params::default() };
    assert!(matches!(CodeGenerate::check(&p), Err(StageError::Param { path, .. }) if path == "count"));
}
