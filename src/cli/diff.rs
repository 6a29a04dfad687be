//! `kiln diff RUN_A RUN_B`: which stages' keys differ between two runs and why (the
//! parameter paths and values, the inputs that changed and which stage produced them),
//! and their metrics side by side, changed values marked.

use serde_json::Value;

use super::history::compact;
use super::text_table::TextTable;
use crate::plan::key::{Change, differences, leaves};
use crate::runs::{Manifest, StageRecord};

pub fn diff(a: &Manifest, b: &Manifest) -> String {
    let mut out = String::new();
    for (label, m) in [("A", a), ("B", b)] {
        let overrides =
            if m.overrides.is_empty() { String::new() } else { format!(", --set {}", m.overrides.join(" --set ")) };
        out.push_str(&format!("{label}  run {}  {} ({}{overrides})\n", m.id, m.pipeline.name, m.pipeline.path));
    }
    let mut names: Vec<&str> = a.stages.iter().map(|s| s.name.as_str()).collect();
    for s in &b.stages {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let find = |m: &'_ Manifest, name: &str| m.stages.iter().find(|s| s.name == name).cloned();

    let mut keys = TextTable::new(&["stage", "A", "B", "why"]);
    let mut same = Vec::new();
    for &name in &names {
        let (sa, sb) = (find(a, name), find(b, name));
        let short = |s: &Option<StageRecord>| match s {
            None => "(absent)".to_string(),
            Some(StageRecord { key: None, status, .. }) => format!("({})", status.word()),
            Some(StageRecord { key: Some(k), .. }) => k.short().to_string(),
        };
        let (ka, kb) = (sa.as_ref().and_then(|s| s.key.clone()), sb.as_ref().and_then(|s| s.key.clone()));
        if ka.is_some() && ka == kb {
            same.push(name);
            continue;
        }
        let why =
            match (sa.as_ref().and_then(|s| s.key_inputs.as_ref()), sb.as_ref().and_then(|s| s.key_inputs.as_ref())) {
                (Some(ia), Some(ib)) => {
                    let changes: Vec<String> = differences(ia, ib).iter().map(|d| describe(d, ib, b)).collect();
                    if changes.is_empty() { "same key inputs".into() } else { changes.join("; ") }
                }
                (None, Some(_)) => "not run in A".into(),
                (Some(_), None) => "not run in B".into(),
                (None, None) => "run in neither".into(),
            };
        keys.row(vec![name.to_string(), short(&sa), short(&sb), why]);
    }
    out.push_str("\nstages whose keys differ:\n");
    if keys.len() == 0 {
        out.push_str("  none: every stage has the same key in both runs\n");
    } else {
        out.push_str(&indent(&keys.render()));
    }
    if !same.is_empty() {
        out.push_str(&format!("same key in both: {}\n", same.join(", ")));
    }

    // A stage with the same key in both runs has the same entry, so the same metrics.
    let mut metrics = TextTable::new(&["stage", "metric", "A", "B", ""]);
    let mut changed = 0;
    for &name in names.iter().filter(|n| !same.contains(n)) {
        let (ma, mb) =
            (find(a, name).map(measures).unwrap_or_default(), find(b, name).map(measures).unwrap_or_default());
        let mut fields: Vec<&String> = ma.iter().map(|(k, _)| k).collect();
        fields.extend(mb.iter().map(|(k, _)| k).filter(|k| !ma.iter().any(|(j, _)| j == *k)));
        for field in fields {
            let get = |m: &[(String, Value)]| m.iter().find(|(k, _)| k == field).map(|(_, v)| v.clone());
            let (va, vb) = (get(&ma), get(&mb));
            let show = |v: &Option<Value>| v.as_ref().map(compact).unwrap_or_else(|| "-".into());
            let mark = match (&va, &vb) {
                (Some(Value::Number(x)), Some(Value::Number(y))) if x != y => {
                    changed += 1;
                    match (x.as_i64(), y.as_i64()) {
                        (Some(x), Some(y)) => format!("* {:+}", y - x),
                        _ => format!("* {}", signed(y.as_f64().unwrap_or(0.0) - x.as_f64().unwrap_or(0.0))),
                    }
                }
                (x, y) if x != y => {
                    changed += 1;
                    "*".to_string()
                }
                _ => String::new(),
            };
            metrics.row(vec![name.to_string(), field.clone(), show(&va), show(&vb), mark]);
        }
    }
    if metrics.len() == 0 {
        return out;
    }
    out.push_str(&format!("\nmetrics of the stages whose keys differ ({changed} changed, marked *):\n"));
    out.push_str(&indent(&metrics.render()));
    out
}

/// A stage's metrics, nested maps flattened to dotted names, with its outputs' rows.
fn measures(stage: StageRecord) -> Vec<(String, Value)> {
    let metrics = Value::Object(stage.metrics.clone());
    let mut out: Vec<(String, Value)> = leaves(&metrics)
        .into_iter()
        .filter(|(path, v)| !path.is_empty() && !v.is_array() && !v.is_object()) // logs, not measures
        .map(|(path, v)| (path, v.clone()))
        .collect();
    // The rows of each output, unless a metric of the stage already says so.
    for (name, output) in &stage.outputs {
        if let Some(rows) = output.rows
            && !out.iter().any(|(_, v)| v.as_u64() == Some(rows))
        {
            out.push((format!("rows of {name}"), Value::from(rows)));
        }
    }
    out
}

/// `inputs.data 1a2b -> 3c4d` as `input data changed (from packed.packed)`, naming the
/// stage of run B that produced the new digest.
fn describe(change: &Change, inputs_b: &Value, b: &Manifest) -> String {
    let Some(name) = change.input() else {
        return change.to_string();
    };
    let digest = inputs_b.get("inputs").and_then(|i| i.get(name)).and_then(Value::as_str);
    let producer = b.stages.iter().find_map(|s| {
        let (output, _) = s.outputs.iter().find(|(_, o)| Some(o.digest.as_str()) == digest)?;
        Some(format!("{}.{output}", s.name))
    });
    match producer {
        Some(p) => format!("input `{name}` changed (from `{p}`)"),
        None => format!("input `{name}` changed"),
    }
}

fn signed(x: f64) -> String {
    let text = compact(&Value::from(x));
    if x > 0.0 { format!("+{text}") } else { text }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
