//! The pipeline file as written: YAML with `extends:` and `--set` overrides applied,
//! typed into `PipelineSpec`, each part knowing where it came from. Nothing here knows
//! stage kinds; `plan` resolves a spec against the registry.

pub mod node;

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics, suggestion};
use crate::source::{Source, Sources, Span};
use node::{Key, Node, Value};

/// A pipeline as written, after `extends:` and overrides.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub path: PathBuf,
    pub name: String,
    pub seed: u64,
    pub stages: Vec<StageSpec>,
    /// The merged document, for the run record.
    pub root: Node,
    pub overrides: Vec<String>,
    /// Stages left out of `stages` because their own definition is broken (already
    /// reported), so references to them need no second error.
    pub broken: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub name_span: Span,
    pub uses: String,
    pub uses_span: Span,
    pub from: From,
    /// The parameters under `with:` (an empty map when absent).
    pub with: Node,
    pub seed: Option<u64>,
}

/// The `from:` of a stage.
#[derive(Debug, Clone)]
pub enum From {
    None,
    /// `from: stage` or `from: stage.output`
    One(InputRef),
    /// `from: { input: stage, ... }`
    Map(Vec<(Key, InputRef)>),
}

/// A reference to another stage's output.
#[derive(Debug, Clone)]
pub struct InputRef {
    pub stage: String,
    pub output: Option<String>,
    pub span: Span,
}

/// The keys of a pipeline file and of a stage (`kiln schema` describes the same).
pub const TOP_KEYS: &[&str] = &["name", "seed", "extends", "stages"];
pub const STAGE_KEYS: &[&str] = &["uses", "from", "with", "seed"];

/// A pipeline as far as it could be read, with the errors found so far.
pub struct Loaded {
    pub spec: PipelineSpec,
    pub sources: Sources,
    /// Errors that did not stop the reading; planning reports them with its own.
    pub errors: Vec<Diagnostic>,
}

/// Loads a pipeline file, following `extends:` and applying `--set` overrides. Only an
/// unreadable or unparsable file stops here; other errors travel on in `Loaded`.
pub fn load(path: &Path, overrides: &[String]) -> Result<Loaded, Diagnostics> {
    let mut sources = Sources::default();
    let mut errors = Vec::new();
    let root = load_file(path, None, &mut sources, &mut Vec::new(), &mut errors);
    let Some(mut root) = root else {
        return Err(Diagnostics { items: errors, sources });
    };
    for text in overrides {
        if let Err(e) = apply_override(&mut root, text, &mut sources) {
            errors.push(e);
        }
    }
    let spec = type_spec(path, root, overrides, &mut errors);
    Ok(Loaded { spec, sources, errors })
}

/// A pipeline as a run recorded it (`extends:` and overrides already applied), for
/// `kiln rerun`. `path` is the file it came from (its name is the pipeline's default
/// name); messages point into the text, named `label`. `overrides` are only recorded.
pub fn load_resolved(path: &Path, label: &str, text: &str, overrides: &[String]) -> Result<Loaded, Diagnostics> {
    let mut sources = Sources::default();
    let file = sources.add(Source::new(label, None, text.to_string()));
    let root = match node::parse(file, sources.get(file)) {
        Ok(root) => root,
        Err(e) => return Err(Diagnostics { items: vec![e], sources }),
    };
    let mut errors = Vec::new();
    let spec = type_spec(path, root, overrides, &mut errors);
    Ok(Loaded { spec, sources, errors })
}

/// How many files one `extends:` chain may hold.
pub const MAX_EXTENDS: usize = 16;

/// Reads a pipeline file and the files it extends; `via` is the `extends:` value that
/// named this file, where its errors point.
fn load_file(
    path: &Path,
    via: Option<Span>,
    sources: &mut Sources,
    chain: &mut Vec<PathBuf>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Node> {
    let file = match sources.read(path) {
        Ok(file) => file,
        Err(e) => {
            let message = format!("cannot read pipeline `{}`: {e}", path.display());
            errors.push(match via {
                Some(span) => Diagnostic::new(format!("`extends`: {message}"), span),
                None => Diagnostic::without_span(message),
            });
            return None;
        }
    };
    let node = match node::parse(file, sources.get(file)) {
        Ok(node) => node,
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    if node.as_map().is_none() {
        errors.push(Diagnostic::new(
            format!("a pipeline is a map of `name`, `seed` and `stages`, not {}", node.kind()),
            node.span,
        ));
        return None;
    }
    let Some(extends) = node.get("extends") else {
        return Some(node);
    };
    let Some(base_name) = extends.as_str() else {
        errors.push(Diagnostic::new(format!("`extends` takes a file name, not {}", extends.kind()), extends.span));
        return None;
    };
    let base_path = path.parent().unwrap_or(Path::new(".")).join(base_name);
    let canonical = base_path.canonicalize().unwrap_or(base_path.clone());
    chain.push(path.canonicalize().unwrap_or(path.to_path_buf()));
    if chain.contains(&canonical) {
        errors.push(Diagnostic::new("`extends` goes round in a circle", extends.span));
        return None;
    }
    if !base_path.exists() {
        errors.push(Diagnostic::new(format!("`extends`: no file `{}`", base_path.display()), extends.span));
        return None;
    }
    if chain.len() >= MAX_EXTENDS {
        errors.push(Diagnostic::new(
            format!("`extends`: a chain of more than {MAX_EXTENDS} files (the limit)"),
            extends.span,
        ));
        return None;
    }
    let mut base = load_file(&base_path, Some(extends.span), sources, chain, errors)?;
    chain.pop();
    let mut child = node;
    if let Value::Map(entries) = &mut child.value {
        entries.retain(|(k, _)| k.name != "extends");
    }
    base.merge(child);
    Some(base)
}

/// Applies `stage.with.key=value` (or `seed=…`, `name=…`, `stage.seed=…`).
fn apply_override(root: &mut Node, text: &str, sources: &mut Sources) -> Result<(), Diagnostic> {
    let file = sources.add(Source::new("--set", None, text.to_string()));
    let whole = Span::new(file, 0, text.len());
    let Some((path, value_text)) = text.split_once('=') else {
        return Err(Diagnostic::new("an override is `stage.with.key=value`", whole));
    };
    let value_span = Span::new(file, path.len() + 1, text.len());
    let path_span = Span::new(file, 0, path.len());
    let yaml: serde_yaml::Value = serde_yaml::from_str(value_text)
        .map_err(|e| Diagnostic::new(format!("invalid YAML value: {e}"), value_span))?;
    let value = Node::from_yaml(&yaml, value_span).map_err(|e| Diagnostic::new(e, value_span))?;
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Diagnostic::new("an override path is `stage.with.key`", path_span));
    }
    let target = if parts.len() == 1 {
        if !["name", "seed"].contains(&parts[0]) {
            return Err(Diagnostic::new(
                format!("`{}` is not a pipeline setting; override `name`, `seed` or `stage.with.key`", parts[0]),
                path_span,
            ));
        }
        entry(root, parts[0], path_span)
    } else {
        let stages = entry(root, "stages", path_span);
        let names: Vec<String> = stages.as_map().unwrap_or(&[]).iter().map(|(k, _)| k.name.clone()).collect();
        if !names.iter().any(|n| n == parts[0]) {
            let stage_span = Span::new(file, 0, parts[0].len());
            return Err(Diagnostic::new(
                format!(
                    "no stage `{}` in this pipeline{}",
                    parts[0],
                    suggestion(parts[0], names.iter().map(String::as_str))
                ),
                stage_span,
            ));
        }
        if !STAGE_KEYS.contains(&parts[1]) {
            let at = parts[0].len() + 1;
            return Err(Diagnostic::new(
                format!("a stage has no `{}`{}", parts[1], suggestion(parts[1], STAGE_KEYS.iter().copied())),
                Span::new(file, at, at + parts[1].len()),
            ));
        }
        let mut node = entry(stages, parts[0], path_span);
        for part in &parts[1..] {
            node = entry(node, part, path_span);
        }
        node
    };
    *target = value;
    Ok(())
}

/// The value under `key` of a map node, created (null) if absent; a non-map becomes a map.
fn entry<'a>(node: &'a mut Node, key: &str, span: Span) -> &'a mut Node {
    if !matches!(node.value, Value::Map(_)) {
        node.value = Value::Map(Vec::new());
    }
    let Value::Map(entries) = &mut node.value else { unreachable!() };
    let index = match entries.iter().position(|(k, _)| k.name == key) {
        Some(i) => i,
        None => {
            entries.push((Key { name: key.into(), span }, Node::new(Value::Null, span)));
            entries.len() - 1
        }
    };
    &mut entries[index].1
}

fn type_spec(path: &Path, root: Node, overrides: &[String], errors: &mut Vec<Diagnostic>) -> PipelineSpec {
    let mut spec = PipelineSpec {
        path: path.to_path_buf(),
        name: path.file_stem().map_or("pipeline".into(), |s| s.to_string_lossy().into_owned()),
        seed: 0,
        stages: Vec::new(),
        root: root.clone(),
        overrides: overrides.to_vec(),
        broken: Vec::new(),
    };
    for (key, value) in root.as_map().unwrap_or(&[]) {
        match key.name.as_str() {
            "name" => match value.as_str() {
                Some(name) => spec.name = name.to_string(),
                None => errors.push(Diagnostic::new(format!("`name` is a string, not {}", value.kind()), value.span)),
            },
            "seed" => match value.value {
                Value::Int(seed) if seed >= 0 => spec.seed = seed as u64,
                _ => errors.push(Diagnostic::new("`seed` must be a non-negative integer", value.span)),
            },
            "stages" => (spec.stages, spec.broken) = type_stages(value, errors),
            "extends" => {}
            other => errors.push(Diagnostic::new(
                format!("unknown key `{other}`{}", suggestion(other, TOP_KEYS.iter().copied())),
                key.span,
            )),
        }
    }
    if root.get("stages").is_none() {
        errors.push(Diagnostic::new("a pipeline needs `stages:`", Span::new(root.span.file, 0, 0)));
    }
    spec
}

fn type_stages(node: &Node, errors: &mut Vec<Diagnostic>) -> (Vec<StageSpec>, Vec<String>) {
    let Some(entries) = node.as_map() else {
        errors.push(Diagnostic::new(
            format!("`stages` is a map of stage names to stages, not {}", node.kind()),
            node.span,
        ));
        return (Vec::new(), Vec::new());
    };
    let mut stages = Vec::new();
    let mut broken = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (key, body) in entries {
        if !key.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || key.name.is_empty() {
            errors.push(Diagnostic::new(
                format!("stage name `{}` may hold only letters, digits, `_` and `-`", key.name),
                key.span,
            ));
            continue;
        }
        if !names.insert(key.name.as_str()) {
            errors.push(Diagnostic::new(format!("stage `{}` is defined twice", key.name), key.span));
            continue;
        }
        match type_stage(key, body, errors) {
            Some(stage) => stages.push(stage),
            None => broken.push(key.name.clone()),
        }
    }
    (stages, broken)
}

fn type_stage(key: &Key, body: &Node, errors: &mut Vec<Diagnostic>) -> Option<StageSpec> {
    let Some(entries) = body.as_map() else {
        errors.push(Diagnostic::new(
            format!("stage `{}` is a map with `uses`, `from` and `with`, not {}", key.name, body.kind()),
            body.span,
        ));
        return None;
    };
    let errors_before = errors.len();
    let mut uses = None;
    let mut from = From::None;
    let mut with = Node::new(Value::Map(Vec::new()), key.span);
    let mut seed = None;
    for (k, v) in entries {
        match k.name.as_str() {
            "uses" => match v.as_str() {
                Some(kind) => uses = Some((kind.to_string(), v.span)),
                None => errors.push(Diagnostic::new(format!("`uses` names a stage kind, not {}", v.kind()), v.span)),
            },
            "from" => from = type_from(v, errors),
            "with" => match &v.value {
                Value::Map(_) => with = v.clone(),
                Value::Null => {}
                _ => errors.push(Diagnostic::new(format!("`with` is a map of parameters, not {}", v.kind()), v.span)),
            },
            "seed" => match v.value {
                Value::Int(s) if s >= 0 => seed = Some(s as u64),
                _ => errors.push(Diagnostic::new("`seed` must be a non-negative integer", v.span)),
            },
            other => errors.push(Diagnostic::new(
                format!(
                    "unknown key `{other}` in stage `{}`{}",
                    key.name,
                    suggestion(other, STAGE_KEYS.iter().copied())
                ),
                k.span,
            )),
        }
    }
    let Some((uses, uses_span)) = uses else {
        if errors.len() == errors_before {
            errors.push(Diagnostic::new(format!("stage `{}` needs `uses:` (its kind)", key.name), key.span));
        }
        return None;
    };
    if errors.len() > errors_before {
        return None; // reported; planning it would only repeat the error in other words
    }
    Some(StageSpec { name: key.name.clone(), name_span: key.span, uses, uses_span, from, with, seed })
}

fn type_from(node: &Node, errors: &mut Vec<Diagnostic>) -> From {
    let reference = |n: &Node, errors: &mut Vec<Diagnostic>| -> Option<InputRef> {
        match n.as_str() {
            Some(text) => {
                let (stage, output) = match text.split_once('.') {
                    Some((s, o)) => (s.to_string(), Some(o.to_string())),
                    None => (text.to_string(), None),
                };
                Some(InputRef { stage, output, span: n.span })
            }
            None => {
                errors
                    .push(Diagnostic::new(format!("an input is `stage` or `stage.output`, not {}", n.kind()), n.span));
                None
            }
        }
    };
    match &node.value {
        Value::Str(_) => reference(node, errors).map_or(From::None, From::One),
        Value::Map(entries) => {
            From::Map(entries.iter().filter_map(|(k, v)| Some((k.clone(), reference(v, errors)?))).collect())
        }
        Value::Null => From::None,
        _ => {
            errors.push(Diagnostic::new(
                format!("`from` is `stage`, `stage.output` or a map of inputs, not {}", node.kind()),
                node.span,
            ));
            From::None
        }
    }
}

impl PipelineSpec {
    /// The resolved pipeline as YAML text: what this run ran, `extends:` and overrides
    /// applied.
    pub fn resolved_text(&self) -> String {
        serde_yaml::to_string(&self.root.to_yaml()).unwrap_or_default()
    }
}
