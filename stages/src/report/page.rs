//! The report's HTML: sections of figures and small tables, every byte inline.

use super::plot::{self, Bar, Series, Titles};
use super::{Curve, Packing, Params, RUN_STAGES_BEGIN, RUN_STAGES_END, Scores};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1340px;\
color:#222;padding:0 1em}h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;\
margin-top:1.6em}.figs{display:flex;flex-wrap:wrap;gap:12px}.figs svg{border:1px solid #eee}table{border-collapse:\
collapse;margin:.6em 0}td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:right}th:first-child,\
td:first-child{text-align:left}td.text{text-align:left;white-space:pre-wrap;font-family:ui-monospace,monospace;\
font-size:.85em;vertical-align:top}.note{color:#666;font-size:.9em}";

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><tr>");
    for h in header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
    out
}

fn figures(svgs: &[String]) -> String {
    // plotters writes an XML declaration first; inside HTML only the <svg> element goes.
    let inline = |svg: &String| svg.find("<svg").map_or(svg.clone(), |i| svg[i..].to_string());
    format!("<div class=\"figs\">{}</div>\n", svgs.iter().map(inline).collect::<String>())
}

pub fn render(
    params: &Params,
    curves: &[Curve],
    scores: &[Scores],
    lengths: Option<&[i32]>,
    packing: Option<&Packing>,
) -> Result<String, String> {
    let mut body = String::new();
    if !curves.is_empty() {
        body.push_str(&training(curves)?);
    }
    if !scores.is_empty() {
        body.push_str(&evaluation(scores)?);
    }
    if let Some(lengths) = lengths {
        body.push_str(&token_lengths(lengths, params.bins)?);
    }
    if let Some(packing) = packing {
        body.push_str(&packing_section(packing)?);
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n{body}<h2>Stages</h2>\n{RUN_STAGES_BEGIN}\n\
         <p class=\"note\">This page is the cached output of a <code>report</code> stage and depends only on its \
         inputs. Each run writes a copy with its stages, their cache status and time, to \
         <code>.kiln/runs/&lt;run&gt;/&lt;stage&gt;.html</code>.</p>\n{RUN_STAGES_END}\n</body></html>\n",
        title = escape(&params.title)
    ))
}

fn training(curves: &[Curve]) -> Result<String, String> {
    let series = |values: fn(&Curve) -> &Vec<f64>| -> Vec<Series> {
        curves
            .iter()
            .map(|c| Series { name: &c.name, points: c.steps.iter().copied().zip(values(c).iter().copied()).collect() })
            .collect()
    };
    let loss =
        plot::lines(Titles { title: "Training loss", x: "step", y: "loss (log scale)" }, &series(|c| &c.loss), true)?;
    let lr = plot::lines(Titles { title: "Learning rate", x: "step", y: "learning rate" }, &series(|c| &c.lr), false)?;
    let rows: Vec<Vec<String>> = curves
        .iter()
        .map(|c| {
            let last = c.loss.last().copied().unwrap_or(f64::NAN);
            let tail = &c.loss[c.loss.len().saturating_sub(50)..];
            let mean_tail = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
            let peak = c.lr.iter().copied().fold(0.0, f64::max);
            vec![
                c.name.clone(),
                c.steps.len().to_string(),
                format!("{:.4}", c.loss.first().copied().unwrap_or(f64::NAN)),
                format!("{last:.4}"),
                format!("{mean_tail:.4}"),
                format!("{peak:.2e}"),
            ]
        })
        .collect();
    let header: Vec<String> =
        ["training", "steps", "first loss", "final loss", "mean of last 50", "peak lr"].map(String::from).to_vec();
    Ok(format!("<h2>Training</h2>\n{}{}", table(&header, &rows), figures(&[loss, lr])))
}

fn percent_cell((correct, total): (usize, usize)) -> String {
    format!("{} ({correct}/{total})", crate::stage::percent(correct as f64 / total.max(1) as f64))
}

/// Every evaluation side by side (one row each, one bar each), then accuracy per family
/// for each set of evaluations of the same families (the same benchmark before and after
/// a change shares a table and a chart; different benchmarks get their own), per level
/// where the problems have levels, and the first wrong answers of each.
fn evaluation(scores: &[Scores]) -> Result<String, String> {
    let mut out = String::from("<h2>Evaluation</h2>\n");
    if scores.len() > 1 {
        let rows: Vec<Vec<String>> =
            scores.iter().map(|s| vec![s.name.clone(), s.overall().1.to_string(), percent_cell(s.overall())]).collect();
        let header = ["evaluation", "problems", "accuracy"].map(String::from).to_vec();
        let names: Vec<String> = scores.iter().map(|s| s.name.clone()).collect();
        let bars: Vec<Bar> = scores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (correct, total) = s.overall();
                Bar {
                    lo: i as f64 + 0.15,
                    hi: i as f64 + 0.85,
                    value: 100.0 * correct as f64 / total.max(1) as f64,
                    series: 0,
                }
            })
            .collect();
        let chart = plot::bars(
            Titles { title: "Accuracy of each evaluation", x: "", y: "accuracy (%)" },
            (0.0, scores.len() as f64),
            100.0,
            &bars,
            Some(&names),
            &[],
        )?;
        out.push_str(&format!("{}{}", table(&header, &rows), figures(&[chart])));
    }
    let mut groups: Vec<(Vec<String>, Vec<&Scores>)> = Vec::new();
    for score in scores {
        let families: Vec<String> = score.families.keys().cloned().collect();
        match groups.iter_mut().find(|(f, _)| *f == families) {
            Some((_, members)) => members.push(score),
            None => groups.push((families, vec![score])),
        }
    }
    for (families, members) in &groups {
        out.push_str(&per_family(families, members)?);
        let mut levels: Vec<String> = members.iter().flat_map(|s| s.levels.keys().cloned()).collect();
        levels.sort();
        levels.dedup();
        if !levels.is_empty() {
            let mut header = vec!["level".to_string()];
            header.extend(members.iter().map(|s| s.name.clone()));
            let rows: Vec<Vec<String>> = levels
                .iter()
                .map(|l| {
                    let mut row = vec![l.clone()];
                    row.extend(members.iter().map(|s| s.levels.get(l).map_or("-".into(), |&c| percent_cell(c))));
                    row
                })
                .collect();
            out.push_str(&table(&header, &rows));
        }
    }
    let code: Vec<&Scores> = scores.iter().filter(|s| !s.statuses.is_empty()).collect();
    if !code.is_empty() {
        let statuses = ["passed", "failed", "timeout", "memory", "error"];
        let mut header = vec!["code evaluation (pass@1 = passed)".to_string()];
        header.extend(statuses.map(String::from));
        let rows: Vec<Vec<String>> = code
            .iter()
            .map(|s| {
                let mut row = vec![s.name.clone()];
                row.extend(statuses.iter().map(|st| s.statuses.get(*st).copied().unwrap_or(0).to_string()));
                row
            })
            .collect();
        out.push_str(&table(&header, &rows));
    }
    for score in scores.iter().filter(|s| !s.wrong.is_empty()) {
        let is_code = !score.statuses.is_empty();
        out.push_str(&format!(
            "<h3>{} of {} (the first {} of each family)</h3>\n",
            if is_code { "Failed samples" } else { "Wrong answers" },
            escape(&score.name),
            super::WRONG_PER_FAMILY
        ));
        let header = if is_code {
            ["family", "id", "task", "status", "completion and stderr"]
        } else {
            ["family", "id", "gold", "extracted", "output"]
        };
        let header = header.map(String::from).to_vec();
        let mut wrong: Vec<&super::Wrong> = score.wrong.iter().collect();
        wrong.sort_by(|a, b| (&a.family, a.id).cmp(&(&b.family, b.id)));
        let rows: Vec<Vec<String>> = wrong
            .into_iter()
            .map(|w| {
                let output: String = w.output.chars().take(if is_code { 1200 } else { 400 }).collect();
                let cut = if output.len() < w.output.len() { "…" } else { "" };
                let extracted = w.extracted.clone().unwrap_or_else(|| "(none)".into());
                vec![w.family.clone(), w.id.to_string(), w.gold.clone(), extracted, format!("{output}{cut}")]
            })
            .collect();
        out.push_str(&table(&header, &rows).replace("<td>", "<td class=\"text\">"));
    }
    Ok(out)
}

/// A table and a grouped bar chart of accuracy per family, one column and one series per
/// evaluation.
fn per_family(families: &[String], scores: &[&Scores]) -> Result<String, String> {
    let width = 0.8 / scores.len() as f64;
    let mut bars = Vec::new();
    for (f, family) in families.iter().enumerate() {
        for (s, score) in scores.iter().enumerate() {
            if let Some(&(correct, total)) = score.families.get(family) {
                let lo = f as f64 + 0.1 + s as f64 * width;
                bars.push(Bar {
                    lo,
                    hi: lo + width * 0.92,
                    value: 100.0 * correct as f64 / total.max(1) as f64,
                    series: s,
                });
            }
        }
    }
    let legend: Vec<&str> = scores.iter().map(|s| s.name.as_str()).collect();
    let chart = plot::bars(
        Titles { title: "Accuracy per family", x: "", y: "exact match (%)" },
        (0.0, families.len().max(1) as f64),
        100.0,
        &bars,
        Some(families),
        &legend,
    )?;
    let mut header = vec!["family".to_string()];
    header.extend(scores.iter().map(|s| s.name.clone()));
    let mut rows: Vec<Vec<String>> = families
        .iter()
        .map(|f| {
            let mut row = vec![f.clone()];
            row.extend(scores.iter().map(|s| s.families.get(f).map_or("-".into(), |&c| percent_cell(c))));
            row
        })
        .collect();
    let mut all = vec!["all".to_string()];
    all.extend(scores.iter().map(|s| percent_cell(s.overall())));
    rows.push(all);
    Ok(format!("{}{}", table(&header, &rows), figures(&[chart])))
}

fn token_lengths(lengths: &[i32], bins: usize) -> Result<String, String> {
    let mut sorted = lengths.to_vec();
    sorted.sort_unstable();
    let max = sorted.last().copied().unwrap_or(0).max(1) as f64;
    let width = (max / bins as f64).ceil().max(1.0);
    let count = (max / width).floor() as usize + 1;
    let mut counts = vec![0usize; count];
    for &n in lengths {
        counts[((n.max(0) as f64) / width) as usize] += 1;
    }
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| Bar { lo: i as f64 * width, hi: (i + 1) as f64 * width, value: c as f64, series: 0 })
        .collect();
    let top = counts.iter().copied().max().unwrap_or(0) as f64;
    let chart = plot::bars(
        Titles { title: "Tokens per sequence before packing", x: "tokens", y: "sequences" },
        (0.0, count as f64 * width),
        top,
        &bars,
        None,
        &[],
    )?;
    let quantile = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    let total: i64 = lengths.iter().map(|&n| n as i64).sum();
    let header = ["sequences", "tokens", "mean", "median", "95th percentile", "longest"].map(String::from).to_vec();
    let row = vec![
        lengths.len().to_string(),
        total.to_string(),
        format!("{:.1}", total as f64 / lengths.len().max(1) as f64),
        quantile(0.5).to_string(),
        quantile(0.95).to_string(),
        sorted.last().copied().unwrap_or(0).to_string(),
    ];
    Ok(format!("<h2>Token lengths</h2>\n{}{}", table(&header, &[row]), figures(&[chart])))
}

fn packing_section(p: &Packing) -> Result<String, String> {
    const BINS: usize = 20;
    let mut counts = [0usize; BINS];
    for &fill in &p.fills {
        counts[((fill * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| Bar { lo: i as f64 * 5.0, hi: (i + 1) as f64 * 5.0, value: c as f64, series: 0 })
        .collect();
    let top = counts.iter().copied().max().unwrap_or(0) as f64;
    let chart = plot::bars(
        Titles { title: "How full the packed rows are", x: "document tokens in the row (%)", y: "rows" },
        (0.0, 100.0),
        top,
        &bars,
        None,
        &[],
    )?;
    let capacity = (p.rows * p.row_len) as f64;
    let efficiency = if capacity > 0.0 { 100.0 * p.tokens as f64 / capacity } else { 0.0 };
    let header = ["rows", "row length", "documents", "documents per row", "document tokens", "efficiency"]
        .map(String::from)
        .to_vec();
    let row = vec![
        p.rows.to_string(),
        p.row_len.to_string(),
        p.documents.to_string(),
        format!("{:.2}", p.documents as f64 / p.rows.max(1) as f64),
        p.tokens.to_string(),
        format!("{efficiency:.2}%"),
    ];
    Ok(format!("<h2>Packing</h2>\n{}{}", table(&header, &[row]), figures(&[chart])))
}
