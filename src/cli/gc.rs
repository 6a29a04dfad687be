//! `kiln gc`: what `crate::gc` removed or kept, in words.

use super::text_table::TextTable;
use super::{Failure, GcArgs, print, store_of};

pub(super) fn gc(args: GcArgs) -> Result<(), Failure> {
    let store = store_of(&args.store);
    let report = crate::gc::gc(&store, args.keep_runs, args.dry_run)
        .map_err(|e| Failure::failed(format!("error: collecting garbage in {}: {e}", store.root().display())))?;
    let freed: u64 = report.removed.iter().map(|r| r.bytes).sum();
    let verb = if args.dry_run { "would remove" } else { "removed" };
    let human = crate::gc::human_bytes;
    let mut out = format!("{verb} {} entries, {}\n", report.removed.len(), human(freed));
    let mut table = TextTable::new(&["key", "kind", "stage", "size"]);
    for r in &report.removed {
        table.row(vec![r.key.short().to_string(), r.kind.clone(), r.stage.clone(), human(r.bytes)]);
    }
    if !report.removed.is_empty() {
        out.push_str(&table.render().lines().map(|l| format!("  {l}\n")).collect::<String>());
    }
    let live = match report.live_runs.len() {
        0 => String::new(),
        n => format!(" and {n} running"),
    };
    out.push_str(&format!(
        "kept {} entries, {}, used by {} kept runs (the {} newest{live})\n",
        report.kept_entries,
        human(report.kept_bytes),
        report.kept_runs,
        args.keep_runs
    ));
    if !report.being_written.is_empty() {
        out.push_str(&format!("left {} entries a running stage is writing\n", report.being_written.len()));
    }
    if report.leftovers > 0 {
        out.push_str(&format!(
            "{verb} {} leftovers of killed runs, {}\n",
            report.leftovers,
            human(report.leftover_bytes)
        ));
    }
    if report.scratch_bytes > 0 {
        out.push_str(&format!(
            "left {} of resumable work in {} (a rerun of the stage resumes from it)\n",
            human(report.scratch_bytes),
            store.root().join("scratch").display()
        ));
    }
    print(&out);
    Ok(())
}
