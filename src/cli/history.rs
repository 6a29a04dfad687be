//! `kiln runs` and `kiln show`: the recorded runs, and finding one by id, prefix or `last`.

use super::Failure;
use super::text_table::TextTable;
use crate::runs::{self, Manifest, RunStatus, StageStatus};
use crate::store::Store;

pub(super) fn list_runs(store: &Store) -> String {
    let runs_dir = store.runs_dir();
    let ids = runs::list(&runs_dir);
    if ids.is_empty() {
        return format!("no runs recorded in {}\n", store.root().display());
    }
    let mut table = TextTable::new(&["run", "pipeline", "status", "ran", "cached", "time", "overrides"]);
    for id in ids {
        let Ok(m) = Manifest::load(&runs_dir, &id) else {
            continue;
        };
        let count = |f: &dyn Fn(&runs::StageRecord) -> bool| m.stages.iter().filter(|s| f(s)).count();
        let time: f64 = m.stages.iter().map(|s| s.duration_s).sum();
        let verified = count(&|s| s.verified.is_some());
        let status = match m.status {
            // A run whose process is gone without finishing was killed.
            RunStatus::Running if !store.run_is_live(&m.id) => "killed".to_string(),
            status => format!("{status:?}").to_lowercase(),
        };
        let status = match verified {
            0 => status,
            n => {
                format!("{status}, {}/{n} reproduced", count(&|s| s.verified.as_ref().is_some_and(|v| v.reproducible)))
            }
        };
        table.row(vec![
            m.id.clone(),
            m.pipeline.name.clone(),
            status,
            count(&|s| s.status == StageStatus::Ran).to_string(),
            count(&|s| s.status == StageStatus::Cached && s.verified.is_none()).to_string(),
            format!("{time:.1}s"),
            m.overrides.join(" "),
        ]);
    }
    table.render()
}

pub(super) fn find_run(store: &Store, wanted: &str) -> Result<Manifest, Failure> {
    let runs_dir = store.runs_dir();
    let ids = runs::list(&runs_dir);
    let matches: Vec<&String> = if wanted == "last" {
        ids.iter().take(1).collect()
    } else {
        ids.iter().filter(|id| id.starts_with(wanted)).collect()
    };
    match matches.as_slice() {
        [one] => Manifest::load(&runs_dir, one).map_err(|e| Failure::failed(format!("error: run `{one}`: {e}"))),
        [] => Err(Failure::usage(format!("error: no run `{wanted}` in {} (see `kiln runs`)", runs_dir.display()))),
        many => Err(Failure::usage(format!(
            "error: `{wanted}` matches {} runs: {}",
            many.len(),
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

pub(super) fn show_run(store: &Store, wanted: &str) -> Result<String, Failure> {
    let m = find_run(store, wanted)?;
    let mut out = format!(
        "run {}\npipeline {} ({})\nstatus {}\nstarted {}  finished {}\nkiln {}  device {}\n",
        m.id,
        m.pipeline.name,
        m.pipeline.path,
        format!("{:?}", m.status).to_lowercase(),
        m.started,
        m.finished.clone().unwrap_or_else(|| "-".into()),
        m.kiln_version,
        m.device
    );
    if !m.overrides.is_empty() {
        out.push_str(&format!("overrides {}\n", m.overrides.join(" ")));
    }
    let mut table = TextTable::new(&["stage", "kind", "status", "time", "key", "result"]);
    for s in &m.stages {
        table.row(vec![
            s.name.clone(),
            s.kind.clone(),
            s.outcome().word().into(),
            format!("{:.1}s", s.duration_s),
            s.key.as_ref().map(|k| k.short().to_string()).unwrap_or_default(),
            s.error.clone().or_else(|| s.summary.clone()).unwrap_or_default(),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    for s in &m.stages {
        if s.metrics.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{} metrics:\n", s.name));
        for (k, v) in &s.metrics {
            out.push_str(&format!("  {k}: {}\n", compact(v)));
        }
    }
    Ok(out)
}

pub(super) fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 1000.0 || f == 0.0 { format!("{f:.1}") } else { format!("{f:.4}") }
        }
        serde_json::Value::Object(map) => {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {}", compact(v))).collect();
            parts.join(", ")
        }
        other => other.to_string(),
    }
}
