//! `--plot FILE.svg`: the latency distribution (by percentile, on the
//! "nines" scale HdrHistogram plots use) above the rate over time.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::Timeline;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {reason}")]
pub struct PlotError {
    pub path: String,
    pub reason: String,
}

/// Maps a quantile to the nines scale: 0.9 → 1, 0.99 → 2, 0.999 → 3.
fn nines(quantile: f64) -> f64 {
    -(1.0 - quantile.min(0.999_999)).log10()
}

/// Draws the plot. `rate_label` names the timeline's unit (`requests/s`,
/// `MB/s`); `rates` are its values, aligned with `timeline.at`.
///
/// # Errors
/// [`PlotError`] when the file cannot be written.
pub fn draw(
    path: &Path,
    title: &str,
    latency: Option<&Histogram<u64>>,
    timeline: &Timeline,
    rates: &[f64],
    rate_label: &str,
) -> Result<(), PlotError> {
    let fail = |reason: String| PlotError {
        path: path.display().to_string(),
        reason,
    };
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| fail(e.to_string()))?;
    let (upper, lower) = root.split_vertically(350);

    if let Some(histogram) = latency.filter(|h| !h.is_empty()) {
        let points: Vec<(f64, f64)> = histogram
            .iter_quantiles(4)
            .map(|v| (nines(v.quantile_iterated_to()), v.value_iterated_to() as f64 / 1000.0))
            .collect();
        let axes = Axes {
            x: "percentile",
            y: "latency (µs)",
            x_label: &|x| format!("{}%", 100.0 - 100.0 / 10f64.powf(*x)),
        };
        line_chart(&upper, "latency by percentile", &axes, points, &BLUE).map_err(fail)?;
    }
    let series: Vec<(f64, f64)> = timeline.at.iter().copied().zip(rates.iter().copied()).collect();
    let axes = Axes {
        x: "seconds",
        y: rate_label,
        x_label: &|x| format!("{x:.1}"),
    };
    line_chart(&lower, &format!("{rate_label} over time"), &axes, series, &RED).map_err(fail)?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Axis titles, and how x values are labelled.
struct Axes<'a> {
    x: &'a str,
    y: &'a str,
    x_label: &'a dyn Fn(&f64) -> String,
}

/// One line chart from the origin to the data's extent.
fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    axes: &Axes<'_>,
    points: Vec<(f64, f64)>,
    color: &RGBColor,
) -> Result<(), String> {
    let max_x = points.iter().map(|p| p.0).fold(0.1, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(85)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .x_label_formatter(axes.x_label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(points, color))
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{new_histogram, record};
    use std::time::Duration;

    #[test]
    fn nines_scale() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn draws_an_svg_with_both_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let mut histogram = new_histogram();
        for us in 1..=500 {
            record(&mut histogram, Duration::from_micros(us));
        }
        let timeline = Timeline {
            at: vec![0.25, 0.5],
            per_second: vec![100.0, 120.0],
            bytes_per_second: vec![1.0, 2.0],
        };
        draw(
            &path,
            "test run",
            Some(&histogram),
            &timeline,
            &timeline.per_second,
            "requests/s",
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("latency by percentile") && svg.contains("requests/s over time"));
        assert!(svg.matches("<polyline").count() >= 2, "two line series");
    }
}
