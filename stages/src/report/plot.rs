//! The report's charts as SVG text, drawn with `plotters`' SVG backend: line charts
//! (loss, learning rate) and bar charts (accuracy per family, histograms).

use plotters::coord::Shift;
use plotters::prelude::*;

const SIZE: (u32, u32) = (640, 300);
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// More points than this are averaged in windows: a 50,000-step loss curve would be a
/// megabyte of SVG and no easier to read.
const MAX_POINTS: usize = 800;

pub fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// A chart's title and the names of its axes.
pub struct Titles<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// A named line of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// One bar: from `lo` to `hi` on x, `value` high, in the colour of series `series`.
pub struct Bar {
    pub lo: f64,
    pub hi: f64,
    pub value: f64,
    pub series: usize,
}

type Failed = String;

fn failed(e: impl std::fmt::Display) -> Failed {
    e.to_string()
}

/// Numbers on axes: few digits, no trailing zeros.
fn short(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 10_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 0.01 {
        format!("{x:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{x:.1e}").replace(".0e", "e")
    }
}

/// Means over windows, so at most `MAX_POINTS` remain.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let window = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(window)
        .map(|c| {
            let n = c.len() as f64;
            (c.iter().map(|p| p.0).sum::<f64>() / n, c.iter().map(|p| p.1).sum::<f64>() / n)
        })
        .collect()
}

/// A line chart; with `log_y` the y axis is logarithmic (for losses).
pub fn lines(titles: Titles, series: &[Series], log_y: bool) -> Result<String, Failed> {
    let Titles { title, x: x_desc, y: y_desc } = titles;
    let transform = |y: f64| if log_y { y.max(1e-12).log10() } else { y };
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| {
            (s.name, thin(&s.points).into_iter().map(|(x, y)| (x, transform(y))).filter(|p| p.1.is_finite()).collect())
        })
        .collect();
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1) =
        (all().map(|p| p.0).fold(f64::INFINITY, f64::min), all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max));
    let (mut y0, mut y1) =
        (all().map(|p| p.1).fold(f64::INFINITY, f64::min), all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max));
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    (y0, y1) = (if log_y || y0 < 0.0 { y0 - pad } else { 0.0f64.max(y0 - pad) }, y1 + pad);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(failed)?;
        let y_format = |y: &f64| if log_y { short(10f64.powf(*y)) } else { short(*y) };
        chart
            .configure_mesh()
            // On a log scale, whole decades: 0.01, 0.1, 1 (plotters would pick half decades).
            .y_labels(if log_y { ((y1 - y0).ceil() as usize + 1).max(2) } else { 10 })
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| short(*x))
            .y_label_formatter(&y_format)
            .label_style(("sans-serif", 13))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(WHITE)
            .draw()
            .map_err(failed)?;
        for (i, (name, points)) in series.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(failed)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        if series.len() > 1 {
            draw_legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
        }
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// A bar chart over `x_range`; `categories` names each unit interval of x (drawn under
/// its middle) instead of numbering the axis; `legend` names the series.
pub fn bars(
    titles: Titles,
    x_range: (f64, f64),
    y_max: f64,
    bars: &[Bar],
    categories: Option<&[String]>,
    legend: &[&str],
) -> Result<String, Failed> {
    let Titles { title, x: x_desc, y: y_desc } = titles;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let y_max = if y_max > 0.0 { y_max * 1.05 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range.0..x_range.1, 0.0..y_max)
            .map_err(failed)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .y_label_formatter(&|y| short(*y))
            .label_style(("sans-serif", 13))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(WHITE);
        if categories.is_some() {
            mesh.disable_x_mesh().x_labels(0);
        } else {
            mesh.x_label_formatter(&|x| short(*x));
        }
        mesh.draw().map_err(failed)?;
        chart
            .draw_series(
                bars.iter()
                    .map(|b| Rectangle::new([(b.lo, 0.0), (b.hi, b.value)], colour(b.series).mix(0.85).filled())),
            )
            .map_err(failed)?;
        if let Some(names) = categories {
            label_categories(&root, &chart, names)?;
        }
        for (i, name) in legend.iter().enumerate().filter(|_| legend.len() > 1) {
            let c = colour(i);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(failed)?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        if legend.len() > 1 {
            draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

type Chart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// The box naming each labelled series.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<(), Failed>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(failed)
}

/// Each category's name under the middle of its unit interval.
fn label_categories<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    names: &[String],
) -> Result<(), Failed>
where
    DB::ErrorType: 'static,
{
    let style = TextStyle::from(("sans-serif", 13)).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Top,
    ));
    for (i, name) in names.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.clone(), (x, y + 6), style.clone())).map_err(failed)?;
    }
    Ok(())
}
