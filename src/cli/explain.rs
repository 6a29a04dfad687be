//! `kiln plan --explain`: each stage's whole key — kind and version, the parameters
//! after defaults and overrides, the input digests, external files, seed, device — and
//! for a stage that will run, every key field that differs from its newest cached entry
//! in earlier runs.

use serde_json::Value;

use crate::exec::{Reason, Status};
use crate::plan::Plan;
use crate::plan::key::{leaves, show};

pub fn explain(plan: &Plan, statuses: &[Status]) -> String {
    let mut out = String::new();
    for (stage, status) in plan.stages.iter().zip(statuses) {
        let (word, key, inputs) = match status {
            Status::Cached { key, meta } => ("cached", key.to_string(), &meta.key_inputs),
            Status::WillRun { key, key_inputs, reason, .. } => {
                let key = match key {
                    Some(key) => key.to_string(),
                    None => "(known once its inputs are computed)".into(),
                };
                (if *reason == Reason::Forced { "will run (forced)" } else { "will run" }, key, key_inputs)
            }
        };
        out.push_str(&format!("{} ({} v{}): {word}\n", stage.name, stage.kind.kind(), stage.kind.version()));
        let mut lines: Vec<(&str, String)> = vec![("key", key)];
        let with = inputs.get("with").filter(|w| w.as_object().is_some_and(|m| !m.is_empty()));
        for (path, value) in with.map(leaves).unwrap_or_default() {
            let value = match value {
                Value::String(s) if s.contains('\n') => format!("{s:?}"),
                other => other.to_string(),
            };
            lines.push(("with", format!("{path}: {value}")));
        }
        if let Some(seed) = inputs.get("seed") {
            lines.push(("seed", seed.to_string()));
        }
        for input in &stage.inputs {
            let upstream = &plan.stages[input.stage].name;
            let digest = match inputs.get("inputs").and_then(|i| i.get(&input.name)) {
                Some(d) => show(Some(d)),
                None => format!("(computed when `{upstream}` runs)"),
            };
            lines.push(("input", format!("{} <- {upstream}.{}  {digest}", input.name, input.output)));
        }
        if let Some(Value::Object(files)) = inputs.get("files") {
            for (param, digest) in files {
                lines.push(("file", format!("{param}  {}", show(Some(digest)))));
            }
        }
        if let Some(device) = inputs.get("device") {
            let kernels = show(inputs.get("kernels"));
            lines.push((
                "device",
                format!("{}, kernels {}", device.as_str().unwrap_or_default(), kernels.trim_matches('"')),
            ));
        }
        if let Some(Value::Object(outputs)) = inputs.get("outputs") {
            for (name, artifact) in outputs {
                // `table NAME` and its columns; the columns are in `kiln stages` and `inspect`.
                let text = artifact.as_str().unwrap_or_default();
                let columns = text.lines().count().saturating_sub(1);
                let first = text.lines().next().unwrap_or_default();
                let what = if columns > 0 { format!("{first} ({columns} columns)") } else { first.to_string() };
                lines.push(("output", format!("{name}: {what}")));
            }
        }
        let mut last = "";
        for (label, text) in lines {
            let shown = if label == last { "" } else { label };
            out.push_str(&format!("  {shown:<7}{text}\n"));
            last = label;
        }
        if let Status::WillRun { key, previous, changes, .. } = status {
            match previous {
                Some(p) if changes.is_empty() && key.is_some() => out.push_str(&format!(
                    "  the same key as its entry of run {} (key {}): it runs because it is forced\n",
                    p.run,
                    p.key.short()
                )),
                Some(p) if changes.is_empty() => out.push_str(&format!(
                    "  no known key field differs from its entry of run {} (key {}); its inputs will be computed \
                     anew\n",
                    p.run,
                    p.key.short()
                )),
                Some(p) => {
                    out.push_str(&format!("  differs from its entry of run {} (key {}):\n", p.run, p.key.short()));
                    for change in changes {
                        out.push_str(&format!("    {change}\n"));
                    }
                }
                None => out.push_str("  no earlier run of this pipeline has a cached entry of it\n"),
            }
        }
        out.push('\n');
    }
    out
}
