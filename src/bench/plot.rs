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

/// Draws the plot: the latency distribution above the rate over time, or
/// the rate alone over the whole picture when there is no latency (echo).
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
    let rate_area = match latency.filter(|h| !h.is_empty()) {
        Some(histogram) => {
            let (upper, lower) = root.split_vertically(350);
            latency_chart(&upper, histogram).map_err(fail)?;
            lower
        }
        None => root.clone(),
    };
    let series: Vec<(f64, f64)> = timeline.at.iter().copied().zip(rates.iter().copied()).collect();
    rate_chart(&rate_area, rate_label, series).map_err(fail)?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Latency by percentile: the percentile axis on the nines scale (90 %,
/// 99 %, 99.9 % equally spaced) and the latency axis logarithmic, so the
/// body of the distribution and its tail are both visible at a glance.
fn latency_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    histogram: &Histogram<u64>,
) -> Result<(), String> {
    let points: Vec<(f64, f64)> = histogram
        .iter_quantiles(4)
        .map(|v| {
            (
                nines(v.quantile_iterated_to()),
                (v.value_iterated_to() as f64 / 1000.0).max(0.001),
            )
        })
        .collect();
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let min_y = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max);
    // Whole decades around the data, so the log axis has labelled ticks.
    let (low, high) = (decade_below(min_y), decade_above(max_y));
    let mut chart = ChartBuilder::on(area)
        .caption("latency by percentile", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(85)
        .build_cartesian_2d(0.0..max_x, (low..high).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs, log scale)")
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format_axis_micros(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The rate over time, from zero.
fn rate_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    label: &str,
    points: Vec<(f64, f64)>,
) -> Result<(), String> {
    let max_x = points.iter().map(|p| p.0).fold(0.1, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{label} over time"), ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(85)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(label)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(points, &RED))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `0%`, `90%`, `99%`, `99.9%` ... for a position on the nines scale.
fn percentile_label(x: f64) -> String {
    let percent = 100.0 - 100.0 / 10f64.powf(x);
    let text = format!("{percent:.4}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

fn decade_below(value: f64) -> f64 {
    10f64.powf(value.max(0.001).log10().floor())
}

fn decade_above(value: f64) -> f64 {
    let decade = 10f64.powf(value.max(0.001).log10().ceil());
    if decade <= value { decade * 10.0 } else { decade }
}

/// An axis label for microseconds: `10 µs`, `1 ms`, `2.5 s`.
fn format_axis_micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{} µs", trim(us))
    } else if us < 1_000_000.0 {
        format!("{} ms", trim(us / 1000.0))
    } else {
        format!("{} s", trim(us / 1_000_000.0))
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
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
        assert_eq!(
            [0.0, 1.0, 2.0, 3.0].map(percentile_label),
            ["0%", "90%", "99%", "99.9%"]
        );
    }

    #[test]
    fn log_axis_spans_whole_decades() {
        assert_eq!((decade_below(37.0), decade_above(37.0)), (10.0, 100.0));
        assert_eq!((decade_below(100.0), decade_above(100.0)), (100.0, 1000.0));
        assert_eq!(format_axis_micros(1000.0), "1 ms");
        assert_eq!(format_axis_micros(10.0), "10 µs");
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
        // The latency axis is logarithmic: decades are labelled.
        for decade in ["10 µs", "100 µs"] {
            assert!(svg.contains(&format!("\n{decade}\n</text>")), "no {decade} label");
        }
        assert!(svg.contains("\n99.9%\n</text>"), "the percentile axis reaches 99.9 %");
    }

    /// The y coordinate of the `<text>` element whose content is `text`.
    fn text_y(svg: &str, text: &str) -> f64 {
        let end = svg
            .find(&format!(">\n{text}\n<"))
            .unwrap_or_else(|| panic!("no {text:?}"));
        let start = svg[..end].rfind("<text").unwrap();
        let element = &svg[start..end];
        let y = element.split(" y=\"").nth(1).unwrap().split('"').next().unwrap();
        y.parse().unwrap()
    }

    #[test]
    fn without_latency_the_rate_fills_the_picture() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.svg");
        let timeline = Timeline {
            at: vec![0.25, 0.5, 0.75],
            per_second: vec![0.0; 3],
            bytes_per_second: vec![1e9, 2e9, 1.5e9],
        };
        let rates: Vec<f64> = timeline.bytes_per_second.iter().map(|b| b / 1e6).collect();
        draw(&path, "echo run", None, &timeline, &rates, "MB/s").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(!svg.contains("latency by percentile"));
        let caption = text_y(&svg, "MB/s over time");
        assert!(
            caption < 100.0,
            "the rate chart starts at y={caption}, leaving the top blank"
        );
    }
}
