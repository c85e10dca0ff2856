//! The 24 h chart of one city, drawn on the server as SVG so it needs no
//! JavaScript. plotters escapes the text it writes into the SVG.

use chrono::{NaiveDateTime, TimeDelta, TimeZone};
use chrono_tz::Tz;
use plotters::prelude::*;

use crate::store::{ChartPoint, CHART_BUCKET_SECS, CHART_HOURS};

const WIDTH: u32 = 480;
const HEIGHT: u32 = 230;
/// Matches `--temp` and `--hum` in style.css, so the legend in HTML and the
/// lines agree.
const TEMPERATURE: RGBColor = RGBColor(0xe8, 0x59, 0x0c);
const HUMIDITY: RGBColor = RGBColor(0x1c, 0x7e, 0xd6);
const INK: RGBColor = RGBColor(0x5f, 0x6b, 0x7a);
/// More than this between two points is a gap (sensor or database down):
/// the line is broken there rather than drawn across it.
const GAP_SECS: i64 = 3 * CHART_BUCKET_SECS as i64;

/// The chart as an `<svg>` element, or `None` when there is nothing to draw.
pub fn render(points: &[ChartPoint], now: NaiveDateTime, zone: Tz) -> Option<String> {
    if points
        .iter()
        .all(|point| point.temperature.is_none() && point.humidity.is_none())
    {
        return None;
    }
    let mut svg = String::new();
    match draw(&mut svg, points, now, zone) {
        Ok(()) => Some(svg),
        Err(error) => {
            tracing::error!(message = "chart drawing failed", %error);
            None
        }
    }
}

fn draw(
    svg: &mut String,
    points: &[ChartPoint],
    now: NaiveDateTime,
    zone: Tz,
) -> Result<(), Box<dyn std::error::Error>> {
    let end = now.and_utc().timestamp();
    let start = (now - TimeDelta::hours(CHART_HOURS)).and_utc().timestamp();
    let (low, high) = temperature_range(points);
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    let mut chart = ChartBuilder::on(&root)
        .margin_top(10)
        .margin_left(4)
        .margin_right(4)
        .x_label_area_size(26)
        .y_label_area_size(40)
        .right_y_label_area_size(44)
        .build_cartesian_2d(
            (start..end).with_key_points(hour_ticks(start, end, zone)),
            low..high,
        )?
        .set_secondary_coord(start..end, 0f64..100f64);
    let label_font = ("sans-serif", 17).into_font().color(&INK);
    let hour_label = |timestamp: &i64| {
        zone.timestamp_opt(*timestamp, 0)
            .single()
            .map(|time| time.format("%H:%M").to_string())
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(INK.mix(0.15))
        .light_line_style(TRANSPARENT)
        .axis_style(INK.mix(0.5))
        .y_labels(5)
        .x_label_formatter(&hour_label)
        .y_label_formatter(&|value| format!("{value:.0}°"))
        .label_style(label_font.clone())
        .draw()?;
    chart
        .configure_secondary_axes()
        .axis_style(INK.mix(0.5))
        .y_labels(5)
        .y_label_formatter(&|value| format!("{value:.0}%"))
        .label_style(label_font)
        .draw()?;
    // A run of one point (a stack that just started, a reading between two
    // gaps) draws no line: mark it with a dot so it is not invisible.
    for segment in segments(points, |point| point.humidity) {
        if let [only] = segment[..] {
            chart.draw_secondary_series([Circle::new(only, 3, HUMIDITY.filled())])?;
        }
        chart.draw_secondary_series(LineSeries::new(segment, HUMIDITY.stroke_width(2)))?;
    }
    for segment in segments(points, |point| point.temperature) {
        if let [only] = segment[..] {
            chart.draw_series([Circle::new(only, 3, TEMPERATURE.filled())])?;
        }
        chart.draw_series(LineSeries::new(segment, TEMPERATURE.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}

/// Tick positions on the time axis: local whole hours divisible by four, so
/// labels read 08:00, 12:00, 16:00 in the display zone.
fn hour_ticks(start: i64, end: i64, zone: Tz) -> Vec<i64> {
    let first_hour = start - start.rem_euclid(3600) + 3600;
    (first_hour..end)
        .step_by(3600)
        .filter(|timestamp| {
            zone.timestamp_opt(*timestamp, 0)
                .single()
                .is_some_and(|local| {
                    local.format("%H").to_string().parse::<u32>().unwrap_or(1) % 4 == 0
                })
        })
        .collect()
}

/// The temperature axis: the data's range with some air, at least 4 °C tall
/// so a flat day does not look dramatic.
fn temperature_range(points: &[ChartPoint]) -> (f64, f64) {
    let values = points.iter().filter_map(|point| point.temperature);
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(min, max), v| {
        (min.min(v), max.max(v))
    });
    if !min.is_finite() {
        return (0.0, 30.0);
    }
    let middle = (min + max) / 2.0;
    let half = ((max - min) / 2.0 + 1.0).max(2.0);
    ((middle - half).floor(), (middle + half).ceil())
}

/// Runs of consecutive points that have a value, split at gaps.
fn segments(points: &[ChartPoint], value: fn(&ChartPoint) -> Option<f64>) -> Vec<Vec<(i64, f64)>> {
    let mut runs: Vec<Vec<(i64, f64)>> = Vec::new();
    let mut last: Option<i64> = None;
    for point in points {
        let at = point.at.and_utc().timestamp();
        match value(point) {
            Some(v) => {
                let continues = last.is_some_and(|previous| at - previous <= GAP_SECS);
                match runs.last_mut() {
                    Some(run) if continues => run.push((at, v)),
                    _ => runs.push(vec![(at, v)]),
                }
                last = Some(at);
            }
            None => last = None,
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minutes_ago: i64, now: NaiveDateTime, temperature: f64) -> ChartPoint {
        ChartPoint {
            at: now - TimeDelta::minutes(minutes_ago),
            temperature: Some(temperature),
            humidity: Some(60.0),
        }
    }

    #[test]
    fn draws_an_svg_with_both_series() {
        let now =
            NaiveDateTime::parse_from_str("2026-11-23 15:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let points: Vec<_> = (0..10)
            .map(|i| point(i * 5, now, 15.0 + i as f64))
            .rev()
            .collect();
        let svg = render(&points, now, chrono_tz::America::Bogota).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polyline"));
        // Labels are whole local hours: 17:00 UTC is 12:00 in Bogotá.
        assert!(svg.contains(">\n12:00\n<"), "{svg}");
        assert!(!svg.contains("10:06"), "{svg}");
        // No inline style: the page's CSP forbids it.
        assert!(!svg.contains("style="));
    }

    #[test]
    fn nothing_to_draw_is_none() {
        let now = NaiveDateTime::default();
        assert!(render(&[], now, Tz::UTC).is_none());
    }

    #[test]
    fn gaps_split_the_line() {
        let now = NaiveDateTime::default();
        let points = vec![point(60, now, 1.0), point(55, now, 2.0), point(5, now, 3.0)];
        let runs = segments(&points, |point| point.temperature);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].len(), 2);
    }
}
