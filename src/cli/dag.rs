//! `kiln dag PIPELINE`: the stage graph with each stage's cache status, as indented
//! text, Mermaid or Graphviz DOT.

use clap::ValueEnum;

use crate::exec::Status;
use crate::plan::{Plan, PlannedInput, PlannedStage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Indented by depth, each stage with what it reads.
    Text,
    Mermaid,
    Dot,
}

fn word(status: &Status) -> &'static str {
    match status {
        Status::Cached { .. } => "cached",
        Status::WillRun { .. } => "will run",
    }
}

/// An edge's label: the output, when its stage has several, and the input it binds,
/// when the reading stage has several and the name is neither the upstream's nor the output's.
fn edge_label(plan: &Plan, reader: &PlannedStage, input: &PlannedInput) -> String {
    let upstream = &plan.stages[input.stage];
    let output = if upstream.outputs.len() > 1 { input.output } else { "" };
    let named = reader.inputs.len() > 1 && input.name != upstream.name && input.name != input.output;
    match (output, named) {
        ("", false) => String::new(),
        ("", true) => format!("as {}", input.name),
        (output, false) => output.to_string(),
        (output, true) => format!("{output} as {}", input.name),
    }
}

pub fn render(plan: &Plan, statuses: &[Status], format: Format) -> String {
    match format {
        Format::Text => text(plan, statuses),
        Format::Mermaid => mermaid(plan, statuses),
        Format::Dot => dot(plan, statuses),
    }
}

fn text(plan: &Plan, statuses: &[Status]) -> String {
    // Depth: the longest path from a stage without inputs (execution order has every
    // reader after what it reads).
    let mut depth = vec![0usize; plan.stages.len()];
    for (i, stage) in plan.stages.iter().enumerate() {
        depth[i] = stage.inputs.iter().map(|input| depth[input.stage] + 1).max().unwrap_or(0);
    }
    let mut table = super::text_table::TextTable::new(&["stage", "kind", "status", "reads"]);
    for (i, stage) in plan.stages.iter().enumerate() {
        let reads: Vec<String> = stage
            .inputs
            .iter()
            .map(|input| {
                let label = edge_label(plan, stage, input);
                let upstream = &plan.stages[input.stage].name;
                match label.strip_prefix("as ") {
                    _ if label.is_empty() => upstream.clone(),
                    Some(_) => format!("{upstream} {label}"),
                    None => format!("{upstream}.{label}"),
                }
            })
            .collect();
        let marker = if depth[i] == 0 { String::new() } else { format!("{}└ ", "  ".repeat(depth[i] - 1)) };
        table.row(vec![
            format!("{marker}{}", stage.name),
            stage.kind.kind().into(),
            word(&statuses[i]).into(),
            reads.join(", "),
        ]);
    }
    table.render()
}

fn mermaid(plan: &Plan, statuses: &[Status]) -> String {
    let mut out = String::from("flowchart TD\n");
    for (i, stage) in plan.stages.iter().enumerate() {
        let class = if matches!(statuses[i], Status::Cached { .. }) { "cached" } else { "willrun" };
        out.push_str(&format!(
            "  s{i}[\"{}<br/><small>{} · {}</small>\"]:::{class}\n",
            stage.name,
            stage.kind.kind(),
            word(&statuses[i])
        ));
    }
    for (i, stage) in plan.stages.iter().enumerate() {
        for input in &stage.inputs {
            match edge_label(plan, stage, input) {
                label if label.is_empty() => out.push_str(&format!("  s{} --> s{i}\n", input.stage)),
                label => out.push_str(&format!("  s{} -->|{label}| s{i}\n", input.stage)),
            }
        }
    }
    out.push_str("  classDef cached fill:#d8f0dc,stroke:#2f8f46\n");
    out.push_str("  classDef willrun fill:#fdf1cf,stroke:#b7860b\n");
    out
}

fn dot(plan: &Plan, statuses: &[Status]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = format!(
        "digraph {} {{\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n",
        quote(&plan.spec.name)
    );
    for (i, stage) in plan.stages.iter().enumerate() {
        let fill = if matches!(statuses[i], Status::Cached { .. }) { "#d8f0dc" } else { "#fdf1cf" };
        let label = format!("{}\\n{} · {}", stage.name, stage.kind.kind(), word(&statuses[i]));
        out.push_str(&format!("  {} [label=\"{label}\", fillcolor=\"{fill}\"];\n", quote(&stage.name)));
    }
    for stage in &plan.stages {
        for input in &stage.inputs {
            let label = edge_label(plan, stage, input);
            let attrs = if label.is_empty() { String::new() } else { format!(" [label={}]", quote(&label)) };
            out.push_str(&format!("  {} -> {}{attrs};\n", quote(&plan.stages[input.stage].name), quote(&stage.name)));
        }
    }
    out.push_str("}\n");
    out
}
