//! The plan: a pipeline spec resolved against the registry. Every stage's kind is known,
//! its parameters typed and defaulted, its inputs bound to upstream outputs whose
//! declared schemas it accepts, and the stages ordered so each comes after its inputs.
//! Only a plan can be executed, and a plan exists only if the whole pipeline is valid;
//! the external files it names are checked for the stages a run computes.

pub mod key;

use std::collections::HashMap;

use kiln_stages::stage::{ConfiguredStage, InputArtifacts, InputDecl, OutputDecl, StageKind, declaration};
use kiln_stages::{Registry, StageError};

use crate::diagnostic::{Diagnostic, Diagnostics, suggestion};
use crate::source::{Sources, Span};
use crate::spec::node::{Node, Value};
use crate::spec::{From, InputRef, PipelineSpec, StageSpec};

pub struct Plan {
    pub spec: PipelineSpec,
    pub sources: Sources,
    /// In execution order: every stage after the stages it reads.
    pub stages: Vec<PlannedStage>,
}

pub struct PlannedStage {
    pub name: String,
    pub kind: &'static dyn StageKind,
    pub configured: Box<dyn ConfiguredStage>,
    pub inputs: Vec<PlannedInput>,
    pub outputs: Vec<OutputDecl>,
    pub seed: u64,
    /// The external files this stage reads that do not exist, as located errors. They
    /// stop a run only if it computes this stage (`Plan::check_files`): a pipeline whose
    /// model is not downloaded yet can still run its data stages with `--until`.
    pub missing_files: Vec<Diagnostic>,
}

/// One input bound to an upstream output: `stage` indexes `Plan::stages`.
#[derive(Debug, Clone)]
pub struct PlannedInput {
    pub name: String,
    pub stage: usize,
    pub output: &'static str,
}

impl Plan {
    /// Resolves a spec; every error of the pipeline (those found while reading it, given
    /// in `errors`, and its own) is reported at once.
    pub fn new(
        spec: PipelineSpec,
        sources: Sources,
        errors: Vec<Diagnostic>,
        registry: &Registry,
    ) -> Result<Plan, Diagnostics> {
        let mut errors = errors;
        let order = order(&spec, &mut errors);
        let mut planned: Vec<Option<PlannedStage>> = Vec::new();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for &i in &order {
            let stage = &spec.stages[i];
            let result = plan_stage(&spec, stage, registry, &planned, &index_of, &mut errors);
            index_of.insert(&stage.name, planned.len());
            planned.push(result);
        }
        if !errors.is_empty() || planned.iter().any(Option::is_none) {
            return Err(Diagnostics { items: errors, sources });
        }
        let stages = planned.into_iter().map(|p| p.expect("checked above")).collect();
        Ok(Plan { spec, sources, stages })
    }

    /// The missing external files of the stages `chosen` marks, all at once.
    pub fn check_files(&self, chosen: &[bool]) -> Result<(), Diagnostics> {
        let items: Vec<Diagnostic> = self
            .stages
            .iter()
            .zip(chosen)
            .filter(|(_, chosen)| **chosen)
            .flat_map(|(stage, _)| stage.missing_files.iter().cloned())
            .collect();
        if items.is_empty() { Ok(()) } else { Err(Diagnostics { items, sources: self.sources.clone() }) }
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Stages upstream of `i` (not `i`), transitively.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.stages.len()];
        let mut todo = vec![i];
        while let Some(j) = todo.pop() {
            for input in &self.stages[j].inputs {
                if !seen[input.stage] {
                    seen[input.stage] = true;
                    todo.push(input.stage);
                }
            }
        }
        (0..self.stages.len()).filter(|&j| seen[j]).collect()
    }

    /// Stages downstream of `i` (not `i`), transitively.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.stages.len()];
        seen[i] = true;
        // Execution order puts every reader after what it reads.
        for j in i + 1..self.stages.len() {
            if self.stages[j].inputs.iter().any(|inp| seen[inp.stage]) {
                seen[j] = true;
            }
        }
        seen[i] = false;
        (0..self.stages.len()).filter(|&j| seen[j]).collect()
    }
}

/// Stage indices of `spec.stages` in execution order (file order where free); reports
/// unknown references and cycles.
fn order(spec: &PipelineSpec, errors: &mut Vec<Diagnostic>) -> Vec<usize> {
    let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); spec.stages.len()];
    for (i, stage) in spec.stages.iter().enumerate() {
        for r in refs(&stage.from) {
            match index.get(r.stage.as_str()) {
                Some(&j) => deps[i].push(j),
                None if spec.broken.contains(&r.stage) => {}
                None => errors.push(Diagnostic::new(
                    format!("no stage `{}` in this pipeline{}", r.stage, suggestion(&r.stage, names.iter().copied())),
                    r.span,
                )),
            }
        }
    }
    // Depth-first search with a stack of its own (a chain of 100,000 stages must not
    // recurse 100,000 deep); a back edge is a cycle, reported once as `a -> b -> a`.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; deps.len()];
    let mut out = Vec::new();
    let mut reported = false;
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for root in 0..deps.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // The path from the root, each stage with the next of its inputs to visit.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Active;
        while let Some((i, next)) = path.last_mut() {
            let i = *i;
            match deps[i].get(*next) {
                Some(&j) => {
                    *next += 1;
                    match marks[j] {
                        Mark::New => {
                            marks[j] = Mark::Active;
                            path.push((j, 0));
                        }
                        Mark::Active => {
                            let from = path.iter().position(|&(p, _)| p == j).expect("on the path");
                            cycles.push(path[from..].iter().map(|&(p, _)| p).collect());
                        }
                        Mark::Done => {}
                    }
                }
                None => {
                    path.pop();
                    marks[i] = Mark::Done;
                    out.push(i);
                }
            }
        }
    }
    if let Some(cycle) = cycles.first() {
        // Readers were pushed after what they read, so the cycle reads backwards.
        let mut names_in: Vec<&str> = cycle.iter().rev().map(|&i| names[i]).collect();
        let last = names_in.len() - 1;
        names_in.rotate_left(last);
        let first = names_in[0];
        names_in.push(first);
        let at = spec.stages[cycle[0]].name_span;
        errors.push(Diagnostic::new(format!("the stages form a cycle: {}", names_in.join(" -> ")), at));
        reported = true;
    }
    if reported {
        return Vec::new();
    }
    out
}

fn refs(from: &From) -> Vec<&InputRef> {
    match from {
        From::None => Vec::new(),
        From::One(r) => vec![r],
        From::Map(entries) => entries.iter().map(|(_, r)| r).collect(),
    }
}

fn plan_stage(
    spec: &PipelineSpec,
    stage: &StageSpec,
    registry: &Registry,
    planned: &[Option<PlannedStage>],
    index_of: &HashMap<&str, usize>,
    errors: &mut Vec<Diagnostic>,
) -> Option<PlannedStage> {
    let Some(kind) = registry.get(&stage.uses) else {
        let kinds = registry.kinds().iter().map(|k| k.kind());
        errors.push(Diagnostic::new(
            format!("unknown stage kind `{}`{}", stage.uses, suggestion(&stage.uses, kinds)),
            stage.uses_span,
        ));
        return None;
    };

    let configured = configure(stage, kind, errors);
    let inputs = bind_inputs(stage, kind, planned, index_of, errors)?;
    let configured = configured?;

    let mut artifacts = InputArtifacts::new();
    let mut ok = true;
    for (input, span) in &inputs {
        let upstream = planned[input.stage].as_ref().expect("bound inputs are planned");
        let artifact = &upstream.outputs.iter().find(|o| o.name == input.output).expect("bound").artifact;
        let decl = declaration(kind.inputs(), &input.name).expect("bound inputs are declared");
        if let Err(why) = decl.accepts.check(artifact) {
            errors.push(Diagnostic::new(
                format!(
                    "input `{}` of stage `{}` ({}) cannot read `{}.{}`: {why}",
                    input.name, stage.name, stage.uses, upstream.name, input.output
                ),
                *span,
            ));
            ok = false;
        }
        artifacts.insert(input.name.to_string(), artifact.clone());
    }
    if !ok {
        return None;
    }
    let outputs = match configured.outputs(&artifacts) {
        Ok(outputs) => outputs,
        Err(e) => {
            errors.push(param_error(stage, e));
            return None;
        }
    };
    let missing_files = configured
        .external_files()
        .into_iter()
        .filter(|f| !(f.path.is_file() || (f.folder && f.path.is_dir())))
        .map(|file| {
            let shown = file.path.display();
            let message = if file.path.is_dir() {
                format!("`{shown}` is a folder; this kind reads one file")
            } else if file.path.exists() {
                format!("`{shown}` is not a regular file (a device, FIFO or socket)")
            } else {
                let what = if file.folder { "file or folder" } else { "file" };
                format!("no {what} `{shown}` (relative paths are from the current directory)")
            };
            param_error(stage, StageError::param(&file.param, message))
        })
        .collect();
    Some(PlannedStage {
        name: stage.name.clone(),
        kind,
        configured,
        inputs: inputs.into_iter().map(|(i, _)| i).collect(),
        outputs,
        seed: stage.seed.unwrap_or(spec.seed),
        missing_files,
    })
}

/// Checks parameter names against the kind's (all unknown names at once), then types.
fn configure(
    stage: &StageSpec,
    kind: &'static dyn StageKind,
    errors: &mut Vec<Diagnostic>,
) -> Option<Box<dyn ConfiguredStage>> {
    let before = errors.len();
    unknown_params(stage, &stage.with, &kind.default_params(), "", errors);
    if errors.len() > before {
        return None;
    }
    match kind.configure(&stage.with.to_json()) {
        Ok(configured) => Some(configured),
        Err(e) => {
            errors.push(param_error(stage, e));
            None
        }
    }
}

fn unknown_params(
    stage: &StageSpec,
    given: &Node,
    defaults: &serde_json::Value,
    prefix: &str,
    errors: &mut Vec<Diagnostic>,
) {
    let (Some(entries), serde_json::Value::Object(known)) = (given.as_map(), defaults) else {
        return;
    };
    if known.is_empty() {
        return; // a free-form map
    }
    for (key, value) in entries {
        match known.get(&key.name) {
            Some(default) => unknown_params(stage, value, default, &format!("{prefix}{}.", key.name), errors),
            None => errors.push(Diagnostic::new(
                format!(
                    "unknown parameter `{prefix}{}` of `{}` (stage `{}`){}",
                    key.name,
                    stage.uses,
                    stage.name,
                    suggestion(&key.name, known.keys().map(String::as_str))
                ),
                key.span,
            )),
        }
    }
}

/// A stage error from configuring or declaring outputs, pointed at its parameter.
fn param_error(stage: &StageSpec, error: StageError) -> Diagnostic {
    let (path, message) = match error {
        StageError::Param { path, message } => (path, message),
        other => (String::new(), other.to_string()),
    };
    let node = find(&stage.with, &path);
    let span = node.map_or(stage.name_span, |n| n.span);
    let mut message = improve_serde_message(&message);
    if node.is_none() && !path.is_empty() {
        message = format!("{message} (parameter `{path}`)");
    }
    let what = if path.is_empty() { String::new() } else { format!(" `{path}`") };
    Diagnostic::new(format!("invalid parameter{what} of stage `{}` ({}): {message}", stage.name, stage.uses), span)
}

/// Adds a suggestion to serde's "unknown variant `x`, expected one of `a`, `b`", and
/// names Rust's number types the way a pipeline author thinks of them.
fn improve_serde_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown variant `") else {
        let mut out = message.to_string();
        for (rust, words) in [
            ("u64", "a non-negative integer"),
            ("usize", "a non-negative integer"),
            ("u32", "a non-negative integer"),
            ("i64", "an integer"),
            ("i32", "an integer"),
            ("f64", "a number"),
            ("f32", "a number"),
            ("a boolean", "true or false"),
        ] {
            if let Some(prefix) = out.strip_suffix(&format!("expected {rust}")) {
                out = format!("{prefix}expected {words}");
            }
        }
        return out;
    };
    let Some((given, expected)) = rest.split_once("`, expected ") else {
        return message.to_string();
    };
    let options: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    format!("unknown value `{given}`; expected {}{}", options.join(", "), suggestion(given, options.iter().copied()))
}

/// The node at a serde path like `optimizer.lr` or `families[2]` under `with`.
fn find<'a>(with: &'a Node, path: &str) -> Option<&'a Node> {
    let mut node = with;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            node = node.get(name)?;
        }
        for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            let i: usize = index.parse().ok()?;
            match &node.value {
                Value::Seq(items) => node = items.get(i)?,
                _ => return None,
            }
        }
    }
    Some(node)
}

/// Binds `from:` to the kind's declared inputs.
fn bind_inputs(
    stage: &StageSpec,
    kind: &'static dyn StageKind,
    planned: &[Option<PlannedStage>],
    index_of: &HashMap<&str, usize>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Vec<(PlannedInput, Span)>> {
    let decls = kind.inputs();
    let names: Vec<&str> = decls.iter().map(|d| d.name).collect();
    let mut pairs: Vec<(String, &InputRef, &InputDecl)> = Vec::new();
    let before = errors.len();
    match &stage.from {
        From::None if decls.is_empty() => return Some(Vec::new()),
        From::None => {
            errors.push(Diagnostic::new(
                format!("stage `{}` ({}) needs `from:` with {}", stage.name, stage.uses, input_list(&names)),
                stage.name_span,
            ));
            return None;
        }
        From::One(r) => match decls {
            [] => {
                errors.push(Diagnostic::new(format!("`{}` takes no input", stage.uses), r.span));
                return None;
            }
            // `from: stage` for a kind of one input; under `*` the key is the stage's name.
            [only] => {
                let key = match only.prefix() {
                    Some("") => r.stage.clone(),
                    Some(prefix) => prefix.to_string(),
                    None => only.name.to_string(),
                };
                pairs.push((key, r, only))
            }
            _ => {
                errors.push(Diagnostic::new(
                    format!("`{}` takes several inputs; write `from: {}`", stage.uses, example_inputs(&names)),
                    r.span,
                ));
                return None;
            }
        },
        From::Map(entries) => {
            for (key, r) in entries {
                match declaration(decls, &key.name) {
                    Some(d) => pairs.push((key.name.clone(), r, d)),
                    None => errors.push(Diagnostic::new(
                        format!(
                            "`{}` has no input `{}`{}",
                            stage.uses,
                            key.name,
                            suggestion(&key.name, names.iter().copied())
                        ),
                        key.span,
                    )),
                }
            }
            for d in decls {
                if !d.optional && !pairs.iter().any(|(_, _, bound)| std::ptr::eq(*bound, d)) {
                    errors.push(Diagnostic::new(
                        format!(
                            "stage `{}` ({}) is missing its input `{}` ({})",
                            stage.name, stage.uses, d.name, d.about
                        ),
                        stage.name_span,
                    ));
                }
            }
        }
    }
    let mut bound = Vec::new();
    for (name, r, decl) in pairs {
        let Some(&index) = index_of.get(r.stage.as_str()) else {
            continue; // unknown stage or in a cycle: reported by `order`
        };
        let Some(upstream) = planned[index].as_ref() else {
            return None; // upstream invalid: its own error says why
        };
        let output = match &r.output {
            Some(out) => match upstream.outputs.iter().find(|o| o.name == out) {
                Some(o) => o.name,
                None => {
                    let outs = upstream.outputs.iter().map(|o| o.name);
                    errors.push(Diagnostic::new(
                        format!(
                            "stage `{}` has no output `{out}`; its outputs are {}{}",
                            upstream.name,
                            upstream.outputs.iter().map(|o| o.name).collect::<Vec<_>>().join(", "),
                            suggestion(out, outs)
                        ),
                        r.span,
                    ));
                    continue;
                }
            },
            None => {
                // The outputs the input accepts, the main ones before reports (a report
                // output is taken only when no main output fits: `report` reads metrics).
                let fits = |report: bool| -> Vec<&OutputDecl> {
                    let outputs = upstream.outputs.iter().filter(|o| o.report == report);
                    outputs.filter(|o| decl.accepts.check(&o.artifact).is_ok()).collect()
                };
                let main = fits(false);
                let accepted = if main.is_empty() { fits(true) } else { main };
                match accepted.as_slice() {
                    [one] => one.name,
                    [] => upstream.outputs[0].name,
                    several => {
                        errors.push(Diagnostic::new(
                            format!(
                                "stage `{}` has several outputs ({}); name one, e.g. `{}.{}`",
                                upstream.name,
                                several.iter().map(|o| o.name).collect::<Vec<_>>().join(", "),
                                upstream.name,
                                several[0].name
                            ),
                            r.span,
                        ));
                        continue;
                    }
                }
            }
        };
        bound.push((PlannedInput { name, stage: index, output }, r.span));
    }
    (errors.len() == before).then_some(bound)
}

fn input_list(names: &[&str]) -> String {
    match names {
        ["*"] => format!("its inputs, e.g. `from: {}`", example_inputs(names)),
        [one] => format!("its input (`from: stage`, for `{one}`)"),
        _ => format!("its inputs `{}`", example_inputs(names)),
    }
}

/// `{ a: …, b: … }` for the declared input names; a pattern shows an example key.
fn example_inputs(names: &[&str]) -> String {
    let keys: Vec<String> = names
        .iter()
        .flat_map(|n| match n.strip_suffix('*') {
            Some("") => vec!["a: stage_a".to_string(), "b: stage_b".to_string()],
            Some(prefix) => vec![format!("{prefix}: …"), format!("{prefix}_other: …")],
            None => vec![format!("{n}: …")],
        })
        .collect();
    format!("{{ {} }}", keys.join(", "))
}
