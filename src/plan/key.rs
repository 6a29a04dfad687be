//! Cache keys: blake3 of a canonical serialization of everything a stage's output
//! depends on, and nothing else.
//!
//! In the key: the kind and its version, the parameters after defaults and overrides,
//! the content digests of the input artifacts (so a rerun that reproduces the same
//! bytes leaves everything downstream cached: early cut-off), the declared outputs,
//! the seed where the kind uses one, and the device and kernel sources where the kind
//! computes with them. Not in the key: the stage's name, paths, time, the run.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::PlannedStage;

/// The inputs of a stage's key, as a JSON object. `files` holds the content digests of
/// the external files the stage reads, by the parameter naming each.
pub fn key_inputs(
    stage: &PlannedStage,
    input_digests: &BTreeMap<String, String>,
    files: &BTreeMap<String, String>,
) -> Value {
    let mut inputs = Map::new();
    inputs.insert("kind".into(), json!(stage.kind.kind()));
    inputs.insert("version".into(), json!(stage.kind.version()));
    inputs.insert("with".into(), stage.configured.params().clone());
    inputs.insert("inputs".into(), json!(input_digests));
    if !files.is_empty() {
        inputs.insert("files".into(), json!(files));
    }
    let outputs: Map<String, Value> =
        stage.outputs.iter().map(|o| (o.name.to_string(), json!(o.artifact.describe()))).collect();
    inputs.insert("outputs".into(), Value::Object(outputs));
    if stage.kind.random() {
        inputs.insert("seed".into(), json!(stage.seed));
    }
    if stage.kind.uses_device() {
        inputs.insert("device".into(), json!(kiln_stages::device::name()));
        inputs.insert("kernels".into(), json!(kiln_stages::device::kernels_digest()));
    }
    Value::Object(inputs)
}

/// The key: 32 hex digits of blake3 over the canonical JSON of the key inputs.
pub fn key_of(key_inputs: &Value) -> Key {
    let hash = blake3::hash(canonical(key_inputs).as_bytes());
    Key(hash.to_hex()[..32].to_string())
}

/// A cache key: 32 hex digits of the blake3 hash of a stage's canonical key inputs (a
/// string in manifests and folder names); messages show its first 12.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    /// A key read back from the store (a folder name).
    pub fn new(text: impl Into<String>) -> Key {
        Key(text.into())
    }

    /// The first 12 digits, as tables and messages show a key.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(value)).expect("JSON values serialize")
}

/// One key field that differs between two key-input objects: its dotted path and its
/// values (`None` where it is absent). Shown as `path old -> new`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

impl Change {
    /// The input whose digest changed, for a change under `inputs.`.
    pub fn input(&self) -> Option<&str> {
        self.path.strip_prefix("inputs.")
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.path, show(self.old.as_ref()), show(self.new.as_ref()))
    }
}

/// Every difference between two key-input objects, in a fixed order of importance:
/// parameters, seed, inputs, then the rest; within each, by path.
pub fn differences(old: &Value, new: &Value) -> Vec<Change> {
    fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
        match (old, new) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(&sub, a.get(k), b.get(k), out);
                }
            }
            (a, b) if a == b => {}
            (a, b) => out.push(Change { path: path.to_string(), old: a.cloned(), new: b.cloned() }),
        }
    }
    let mut out = Vec::new();
    for field in FIELDS {
        walk(field, old.get(field), new.get(field), &mut out);
    }
    out
}

/// The leaves of a JSON value with their dotted paths (`optimizer.lr`); a non-empty
/// object is walked, anything else (an empty object included) is a leaf.
pub fn leaves(value: &Value) -> Vec<(String, &Value)> {
    fn walk<'v>(prefix: &str, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            leaf => out.push((prefix.to_string(), leaf)),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// The fields of key inputs, most telling first.
pub const FIELDS: [&str; 9] = ["with", "seed", "inputs", "files", "version", "outputs", "device", "kernels", "kind"];

/// A key-input value for one line: digests shortened to 8 digits, a multi-line text to
/// its first line.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(Value::String(s)) if s.len() > 24 && s.chars().all(|c| c.is_ascii_hexdigit()) => s[..8].to_string(),
        Some(Value::String(s)) if s.contains('\n') => {
            format!("{:?}", s.lines().next().unwrap_or(""))
        }
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(key_of(&a), key_of(&b));
        assert_ne!(key_of(&a), key_of(&json!({"b": 2, "a": {"x": "s", "y": [1, 2]}})));
    }

    #[test]
    fn differences_name_the_parameter_first() {
        let old = json!({"kind": "pack", "with": {"seq_len": 1024, "algorithm": "x"}, "inputs": {"data": "aa"}});
        let new = json!({"kind": "pack", "with": {"seq_len": 2048, "algorithm": "x"}, "inputs": {"data": "bb"}});
        assert!(differences(&old, &old).is_empty());
        let paths: Vec<String> = leaves(&new).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["kind", "with.seq_len", "with.algorithm", "inputs.data"]);
        let shown: Vec<String> = differences(&old, &new).iter().map(Change::to_string).collect();
        assert_eq!(shown, ["with.seq_len 1024 -> 2048", "inputs.data \"aa\" -> \"bb\""]);
        assert_eq!(differences(&old, &new)[1].input(), Some("data"));
    }
}
