//! A run's copy of each report page: the cached page of a `report` stage with the run's
//! table of stages (cache status, time, result) put where the page's placeholder is,
//! written to `runs/<run>/<stage>.html`. The cached page cannot hold the table itself:
//! it would then depend on which stages a run found cached, not only on its inputs.

use std::path::PathBuf;

use kiln_stages::report::{REPORT_FILE, RUN_STAGES_BEGIN, RUN_STAGES_END};

use crate::runs::{Manifest, StageStatus};
use crate::store::Store;

/// Writes the run's page of every report the run produced or found cached; returns
/// their paths.
pub fn write(store: &Store, manifest: &Manifest) -> Vec<PathBuf> {
    let mut pages = Vec::new();
    for stage in &manifest.stages {
        let (Some(key), StageStatus::Cached | StageStatus::Ran) = (&stage.key, stage.status) else { continue };
        for (name, output) in &stage.outputs {
            if output.artifact != "files report" {
                continue;
            }
            let Ok(page) = std::fs::read_to_string(store.entry_dir(key).join(name).join(REPORT_FILE)) else {
                continue;
            };
            let path = store.runs_dir().join(&manifest.id).join(format!("{}.html", stage.name));
            if std::fs::write(&path, with_stages(&page, manifest)).is_ok() {
                pages.push(path);
            }
        }
    }
    pages
}

fn with_stages(page: &str, manifest: &Manifest) -> String {
    let (Some(begin), Some(end)) = (page.find(RUN_STAGES_BEGIN), page.find(RUN_STAGES_END)) else {
        return page.to_string();
    };
    let escape = kiln_stages::report::escape;
    let mut table = format!(
        "<p>Run <code>{}</code> of <code>{}</code>, started {}, kiln {} on {}.</p>\n<table><tr><th>stage</th>\
         <th>kind</th><th>status</th><th>time</th><th>result</th></tr>",
        escape(&manifest.id),
        escape(&manifest.pipeline.path),
        escape(&manifest.started),
        escape(&manifest.kiln_version),
        escape(&manifest.device)
    );
    for s in &manifest.stages {
        let time = if s.status == StageStatus::Ran { format!("{:.1}s", s.duration_s) } else { String::new() };
        let result = s.error.clone().or_else(|| s.summary.clone()).unwrap_or_default();
        table.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{time}</td><td style=\"text-align:left\">{}</td></tr>",
            escape(&s.name),
            escape(&s.kind),
            s.status.word(),
            escape(&result)
        ));
    }
    table.push_str("</table>\n");
    format!("{}{table}{}", &page[..begin], &page[end + RUN_STAGES_END.len()..])
}
