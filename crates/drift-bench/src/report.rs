//! `--report DIR`: each benchmark's table as markdown and its charts as SVG (drawn with
//! plotters), so a run can be kept, compared and shown in docs/performance.md.

use super::fanout::FanoutResult;
use super::load::{COLUMNS, Load};
use super::waiters::WaitersResult;
use super::{Series, cell, kb, ms};
use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use std::time::Duration;

const COLORS: [RGBColor; 7] = [
    RGBColor(120, 120, 120),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
];

fn f_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("report: wrote {}", path.display());
    Ok(())
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

/// Latency distributions (one line per round trip: latency against percentile), Drift's
/// round trips next to their floors.
pub fn round_trips(dir: &Path, rows: &[(Series, Option<f64>)]) -> anyhow::Result<()> {
    let mut md = String::from(
        "# drift bench: sync round trips\n\n| round trip | p50 | p90 | p99 | × healthz | × floor |\n|---|---|---|---|---|---|\n",
    );
    let base = rows.first().map(|(s, _)| s.pct(0.5).as_secs_f64()).unwrap_or(1.0);
    for (s, floor) in rows.iter().filter(|(s, _)| !s.samples.is_empty()) {
        let p50 = s.pct(0.5).as_secs_f64();
        md += &format!(
            "| {} | {} | {} | {} | {:.1}× | {} |\n",
            s.name,
            ms(s.pct(0.5)),
            ms(s.pct(0.9)),
            ms(s.pct(0.99)),
            p50 / base,
            floor.map(|f| format!("{:.2}×", p50 / f)).unwrap_or_default()
        );
    }
    md += "\n![latency distributions](round-trips.svg)\n";
    write(dir, "round-trips.md", &md)?;

    let shown: Vec<&Series> = rows.iter().map(|(s, _)| s).filter(|s| !s.samples.is_empty()).collect();
    let max_ms = shown.iter().map(|s| f_ms(s.pct(0.99))).fold(1.0, f64::max) * 1.1;
    let path = dir.join("round-trips.svg");
    {
        let root = SVGBackend::new(&path, (900, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Sync round trips: latency by percentile (Drift vs raw-SDK floor)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..100f64, 0f64..max_ms)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("milliseconds")
            .draw()
            .map_err(plot_err)?;
        for (i, s) in shown.iter().enumerate() {
            let mut v: Vec<f64> = s.samples.iter().map(|d| f_ms(*d)).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            let n = v.len().max(2) as f64 - 1.0;
            let color = COLORS[i % COLORS.len()];
            let style = if s.name.starts_with("floor") {
                color.stroke_width(1)
            } else {
                color.stroke_width(3)
            };
            chart
                .draw_series(LineSeries::new(
                    v.iter().enumerate().map(|(k, y)| (k as f64 * 100.0 / n, y.min(max_ms))),
                    style,
                ))
                .map_err(plot_err)?
                .label(s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    eprintln!("report: wrote {}", path.display());
    Ok(())
}

/// Fan-out latency and memory against subscriber count.
pub fn fanout(dir: &Path, results: &[FanoutResult]) -> anyhow::Result<()> {
    let mut md = String::from(
        "# drift bench fanout\n\n| subscribers | connect | delivered | in order | states/s | p50 | p99 | max | KB per connection | peak KB per connection |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let l = &r.latency;
        md += &format!(
            "| {} | {} | {}/{} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
            r.subscribers,
            super::fanout::connect_cell(r.connect),
            r.delivered,
            r.expected,
            if r.in_order { "yes" } else { "no" },
            r.rate_per_sec,
            l.cell(0.5),
            l.cell(0.99),
            l.cell(1.0),
            kb(r.kb_per_connection),
            kb(r.peak_kb_per_connection)
        );
    }
    md += "\n![fan-out latency](fanout-latency.svg) ![memory per connection](fanout-memory.svg)\n";
    write(dir, "fanout.md", &md)?;
    let max_n = results.iter().map(|r| r.subscribers).max().unwrap_or(1) as f64 * 1.05;
    let with_lat: Vec<&FanoutResult> = results.iter().filter(|r| !r.latency.samples.is_empty()).collect();
    let max_ms = with_lat.iter().map(|r| f_ms(r.latency.pct(0.99))).fold(1.0, f64::max) * 1.2;
    let path = dir.join("fanout-latency.svg");
    {
        let root = SVGBackend::new(&path, (640, 420)).into_drawing_area();
        let mut chart = xy_chart(
            &root,
            "Fan-out: publish → client latency",
            (0f64..max_n, 0f64..max_ms),
            ("subscribers", "milliseconds"),
        )?;
        for (i, (name, q)) in [("p50", 0.5), ("p99", 0.99)].into_iter().enumerate() {
            let pts = with_lat
                .iter()
                .map(|r| (r.subscribers as f64, f_ms(r.latency.pct(q))))
                .collect();
            measured(&mut chart, pts, COLORS[3 + i], name)?;
        }
        finish(&mut chart, &root)?;
    }
    eprintln!("report: wrote {}", path.display());
    let path = dir.join("fanout-memory.svg");
    {
        let pts: Vec<(f64, f64)> = results
            .iter()
            .filter_map(|r| Some((r.subscribers as f64, r.kb_per_connection?)))
            .collect();
        let max_kb = pts.iter().map(|p| p.1).fold(10.0, f64::max) * 1.2;
        let root = SVGBackend::new(&path, (640, 420)).into_drawing_area();
        let mut chart = xy_chart(
            &root,
            "Gateway memory per idle connection",
            (0f64..max_n, 0f64..max_kb),
            ("subscribers", "KB per connection (RSS)"),
        )?;
        chart
            .draw_series(LineSeries::new(vec![(0.0, 8.0), (max_n, 8.0)], RED.stroke_width(1)))
            .map_err(plot_err)?
            .label("8 KB target")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(1)));
        measured(&mut chart, pts, COLORS[3], "measured")?;
        finish(&mut chart, &root)?;
    }
    eprintln!("report: wrote {}", path.display());
    Ok(())
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white chart on `root` with a caption, the given x and y ranges and axis descriptions.
fn xy_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
) -> anyhow::Result<Chart<'a, 'b>> {
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// A measured series: a line through its points, the points marked, named in the legend.
fn measured(chart: &mut Chart<'_, '_>, pts: Vec<(f64, f64)>, color: RGBColor, label: &str) -> anyhow::Result<()> {
    chart
        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
        .map_err(plot_err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    chart
        .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
        .map_err(plot_err)?;
    Ok(())
}

/// The legend, then the file.
fn finish<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, root: &DrawingArea<SVGBackend<'b>, Shift>) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

pub fn waiters(dir: &Path, r: &WaitersResult) -> anyhow::Result<()> {
    let l = &r.latency;
    let md = format!(
        "# drift bench waiters\n\n| waiters | answered | peak blocked at once | Redis connections (before → most during) | p50 | max | KB per waiter |\n|---|---|---|---|---|---|---|\n| {} | {} | {} | {} → {} | {} | {} | {} |\n",
        r.waiters,
        r.answered,
        r.peak_blocked,
        cell(r.redis_clients_before),
        cell(r.redis_clients_during),
        l.cell(0.5),
        l.cell(1.0),
        kb(r.kb_per_waiter)
    );
    write(dir, "waiters.md", &md)
}

pub fn load(dir: &Path, load: &Load) -> anyhow::Result<()> {
    let row = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut md = format!("# drift bench load\n\n{}", row(&COLUMNS.map(String::from)));
    md += &row(&COLUMNS.map(|_| "---".to_string()));
    for r in &load.results {
        md += &row(&r.cells());
    }
    let table = crate::history::table(&load.histories);
    if load.histories.len() > 1 {
        md += "\n## One round's history in Temporal, per event type\n\n";
        md += &row(&table[0]);
        md += &row(&table[0].iter().map(|_| "---".to_string()).collect::<Vec<_>>());
        for r in &table[1..] {
            md += &row(r);
        }
    }
    write(dir, "load.md", &md)
}
