//! The comparison as a picture: three panels side by side — database queries per minute (log
//! scale, since the designs differ by orders of magnitude), lock attempts per minute, and the age
//! of the data readers were given (p50 and p99) — one bar per architecture, as an SVG a Markdown
//! page can embed.

use std::path::Path;

use plotters::prelude::*;

use super::CompareReport;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 380;
/// One colour per architecture, in the report's order.
const COLOURS: [RGBColor; 4] =
    [RGBColor(0xd9, 0x5f, 0x02), RGBColor(0x1b, 0x9e, 0x77), RGBColor(0x75, 0x70, 0xb3), RGBColor(0xe7, 0x29, 0x8a)];

pub fn draw(report: &CompareReport, path: &Path) -> anyhow::Result<()> {
    let names: Vec<String> = report.architectures.iter().map(|a| short(&a.name)).collect();
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let title = format!(
        "{} groups, {} servers, {} reads/s ({}), refresh every {:.0} s",
        report.groups, report.servers, report.read_rate, report.read_skew, report.period_seconds
    );
    let (top, body) = root.split_vertically(30);
    top.titled(&title, ("sans-serif", 18)).map_err(plot_error)?;
    let panels = body.split_evenly((1, 3));
    let db: Vec<f64> = report.architectures.iter().map(|a| a.db_queries_per_minute).collect();
    let locks: Vec<f64> = report.architectures.iter().map(|a| a.lock_attempts_per_minute).collect();
    bars(&panels[0], "database queries per minute (log scale)", &names, &[""], &[db], true)?;
    bars(&panels[1], "lock attempts per minute", &names, &[""], &[locks], false)?;
    let p50: Vec<f64> = report.architectures.iter().map(|a| a.reads.seen_age_p50_ms as f64 / 1_000.0).collect();
    let p99: Vec<f64> = report.architectures.iter().map(|a| a.reads.seen_age_p99_ms as f64 / 1_000.0).collect();
    bars(&panels[2], "age of the data served, seconds", &names, &["p50", "p99"], &[p50, p99], false)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// "3b. on demand + lock + SWR" → "3b" fits under a bar; the legend is the doc's table.
fn short(name: &str) -> String {
    name.split('.').next().unwrap_or(name).to_owned()
}

/// One panel: a group of bars per architecture (one bar per series, side by side), each bar
/// labelled under its middle.
fn bars(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    names: &[String],
    series: &[&str],
    values: &[Vec<f64>],
    log: bool,
) -> anyhow::Result<()> {
    let max = values.iter().flatten().copied().fold(1.0_f64, f64::max) * if log { 2.0 } else { 1.15 };
    let per = series.len().max(1);
    let slots = names.len() * per;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < slots => {
            let name = &names[i / per];
            match series.get(i % per).filter(|s| !s.is_empty()) {
                Some(s) => format!("{name} {s}"),
                None => name.clone(),
            }
        }
        _ => String::new(),
    };
    let number = |v: &f64| if *v >= 1.0 || *v == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") };
    let mut chart = ChartBuilder::on(area);
    chart.caption(caption, ("sans-serif", 15)).margin(12).x_label_area_size(28).y_label_area_size(56);
    // A segmented range 0..n has n + 1 segments; the last bar sits in segment n − 1.
    let x = (0..slots.saturating_sub(1)).into_segmented();
    if log {
        let mut c = chart.build_cartesian_2d(x, (1.0..max).log_scale()).map_err(plot_error)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(slots)
            .x_label_formatter(&label)
            .y_label_formatter(&number)
            .draw()
            .map_err(plot_error)?;
        c.draw_series(rectangles(values, 1.0)).map_err(plot_error)?;
    } else {
        let mut c = chart.build_cartesian_2d(x, 0.0..max).map_err(plot_error)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(slots)
            .x_label_formatter(&label)
            .y_label_formatter(&number)
            .draw()
            .map_err(plot_error)?;
        c.draw_series(rectangles(values, 0.0)).map_err(plot_error)?;
    }
    Ok(())
}

/// The bars: architecture `a`'s value in series `s` at slot `a × series + s`, in `a`'s colour,
/// the second series of a group lighter.
fn rectangles(values: &[Vec<f64>], floor: f64) -> Vec<Rectangle<(SegmentValue<usize>, f64)>> {
    let per = values.len();
    let mut out = Vec::new();
    for (s, series) in values.iter().enumerate() {
        for (a, value) in series.iter().enumerate() {
            let colour = COLOURS[a % COLOURS.len()];
            let style = if s == 0 { colour.filled() } else { colour.mix(0.45).filled() };
            let slot = a * per + s;
            let corners = [(SegmentValue::Exact(slot), floor), (SegmentValue::Exact(slot + 1), value.max(floor))];
            let mut bar = Rectangle::new(corners, style);
            bar.set_margin(0, 0, 4, 4);
            out.push(bar);
        }
    }
    out
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart failed: {e}")
}
