//! PNG line charts of a check's series over time (plotters, bitmap backend), for `chart = "1h"`
//! on a prometheus check. Text is drawn with DejaVu Sans, embedded in the binary
//! (`assets/fonts/`, its licence beside it): nothing is fetched and no system font is looked up.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// The size of every chart, in pixels.
pub const CHART_WIDTH: u32 = 900;
pub const CHART_HEIGHT: u32 = 450;
/// The colour of each series, in order (the palette repeats past its end).
pub const SERIES_COLOURS: [(u8, u8, u8); 8] = [
    (31, 119, 180),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
    (188, 189, 34),
    (127, 127, 127),
];
/// The colour of a `warn` threshold line.
pub const WARN_COLOUR: (u8, u8, u8) = (240, 150, 0);
/// The colour of a `crit` threshold line.
pub const CRIT_COLOUR: (u8, u8, u8) = (214, 39, 40);
/// Series drawn at most; more are counted in the legend, not drawn.
pub const MAX_SERIES: usize = 12;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
/// The strip under the axes that holds the legend.
pub const LEGEND_HEIGHT: u32 = 56;
/// Legend entries shown; the rest are summed up as "+N more".
const LEGEND_ENTRIES: usize = 6;

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    /// The time range, in seconds since the epoch.
    pub start: f64,
    pub end: f64,
    pub series: Vec<Series>,
    pub thresholds: Vec<Threshold>,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// `(seconds since the epoch, value)`, in time order.
    pub points: Vec<(f64, f64)>,
}

/// A horizontal line at `value`, from a `warn` or `crit` expression.
#[derive(Debug, Clone)]
pub struct Threshold {
    pub label: String,
    pub value: f64,
    pub crit: bool,
}

fn rgb((r, g, b): (u8, u8, u8)) -> RGBColor {
    RGBColor(r, g, b)
}

fn register_fonts() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FAMILY, FontStyle::Normal, FONT).map_err(|_| "the embedded font did not load".to_string())
        })
        .clone()
}

/// The chart as a PNG file's bytes, or why it could not be drawn.
pub fn render_png(chart: &Chart) -> Result<Vec<u8>, String> {
    register_fonts()?;
    let mut pixels = vec![0u8; (CHART_WIDTH * CHART_HEIGHT * 3) as usize];
    draw(chart, &mut pixels).map_err(|error| format!("drawing the chart failed: {error}"))?;
    encode_png(&pixels)
}

fn draw(chart: &Chart, pixels: &mut [u8]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(pixels, (CHART_WIDTH, CHART_HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_vertically(CHART_HEIGHT - LEGEND_HEIGHT);

    let (low, high) = value_range(chart);
    let (start, end) =
        if chart.end > chart.start { (chart.start, chart.end) } else { (chart.start, chart.start + 1.0) };
    let long_range = end - start > 86_400.0;
    let format_time = |seconds: &f64| {
        chrono::DateTime::from_timestamp(*seconds as i64, 0)
            .map(|at| at.format(if long_range { "%m-%d %H:%M" } else { "%H:%M" }).to_string())
            .unwrap_or_default()
    };
    let format_value = |value: &f64| format_number(*value);

    let mut context = ChartBuilder::on(&plot_area)
        .caption(cut(&chart.title, 110), (FAMILY, 17))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(70)
        .build_cartesian_2d(start..end, low..high)?;
    context
        .configure_mesh()
        .x_labels(7)
        .y_labels(6)
        .x_label_formatter(&format_time)
        .y_label_formatter(&format_value)
        .x_desc("time (UTC)")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 13))
        .draw()?;

    for threshold in &chart.thresholds {
        let colour = rgb(if threshold.crit { CRIT_COLOUR } else { WARN_COLOUR });
        context
            .draw_series(LineSeries::new([(start, threshold.value), (end, threshold.value)], colour.stroke_width(1)))?;
        context.draw_series(std::iter::once(Text::new(
            threshold.label.clone(),
            (start + (end - start) * 0.01, threshold.value),
            (FAMILY, 12).into_font().color(&colour).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Bottom,
            )),
        )))?;
    }
    for (index, series) in chart.series.iter().take(MAX_SERIES).enumerate() {
        let colour = rgb(SERIES_COLOURS[index % SERIES_COLOURS.len()]);
        context.draw_series(LineSeries::new(series.points.iter().copied(), colour.stroke_width(2)))?;
    }

    // The legend, below the axes so it never covers a line.
    let mut x = 80;
    let mut y = 6;
    let shown = chart.series.len().min(LEGEND_ENTRIES);
    for (index, series) in chart.series.iter().take(shown).enumerate() {
        let colour = rgb(SERIES_COLOURS[index % SERIES_COLOURS.len()]);
        let label = cut(&series.label, 60);
        let width = 30 + 7 * label.chars().count() as i32;
        if x + width > CHART_WIDTH as i32 - 10 && x > 80 {
            x = 80;
            y += 22;
        }
        legend_area.draw(&Rectangle::new([(x, y + 6), (x + 20, y + 9)], colour.filled()))?;
        legend_area.draw(&Text::new(label, (x + 26, y), (FAMILY, 13).into_font()))?;
        x += width + 18;
    }
    if chart.series.len() > shown {
        let more = chart.series.len() - shown;
        legend_area.draw(&Text::new(format!("+{more} more"), (x, y), (FAMILY, 13).into_font()))?;
    }
    root.present()?;
    Ok(())
}

/// The value axis: every point and threshold, with a little room above and below.
fn value_range(chart: &Chart) -> (f64, f64) {
    let values = chart
        .series
        .iter()
        .take(MAX_SERIES)
        .flat_map(|series| series.points.iter().map(|(_, value)| *value))
        .chain(chart.thresholds.iter().map(|threshold| threshold.value))
        .filter(|value| value.is_finite());
    let (low, high) =
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| (low.min(value), high.max(value)));
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if high - low < f64::EPSILON * high.abs().max(1.0) {
        return (low - 1.0, high + 1.0);
    }
    let pad = (high - low) * 0.05;
    (low - pad, high + pad)
}

/// A value as an axis label: short, without float noise.
fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn cut(text: &str, max: usize) -> String {
    super::truncate(text, max)
}

fn encode_png(pixels: &[u8]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, CHART_WIDTH, CHART_HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|error| format!("encoding the chart failed: {error}"))?;
    writer.write_image_data(pixels).map_err(|error| format!("encoding the chart failed: {error}"))?;
    writer.finish().map_err(|error| format!("encoding the chart failed: {error}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_labels_are_short() {
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(500.0), "500");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(12_500.0), "12.5k");
    }

    #[test]
    fn the_value_axis_holds_the_thresholds_and_a_flat_series() {
        let chart = |points: Vec<(f64, f64)>, thresholds: Vec<f64>| Chart {
            title: "t".into(),
            start: 0.0,
            end: 60.0,
            series: vec![Series { label: "s".into(), points }],
            thresholds: thresholds
                .into_iter()
                .map(|value| Threshold { label: "x".into(), value, crit: true })
                .collect(),
        };
        let (low, high) = value_range(&chart(vec![(0.0, 10.0), (60.0, 20.0)], vec![500.0]));
        assert!(low < 10.0 && high > 500.0, "{low}..{high}");
        let (low, high) = value_range(&chart(vec![(0.0, 3.0), (60.0, 3.0)], vec![]));
        assert!(low < 3.0 && high > 3.0, "{low}..{high}");
        assert_eq!(value_range(&chart(vec![], vec![])), (0.0, 1.0));
    }
}
