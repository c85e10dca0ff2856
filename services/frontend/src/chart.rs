//! A city's chart, drawn on the server as SVG so it needs no JavaScript:
//! the last 24 hours from five-minute averages, longer ranges from the
//! hourly or daily aggregates, their temperature as a min–max band around
//! the mean. plotters escapes the text it writes into the SVG.

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;
use plotters::prelude::*;

use crate::range::Range;
use crate::store::{Aggregate, ChartPoint, CHART_BUCKET_SECS};

const WIDTH: u32 = 480;
const HEIGHT: u32 = 230;
/// Matches `--temp` and `--hum` in style.css, so the legend in HTML and the
/// lines agree.
const TEMPERATURE: RGBColor = RGBColor(0xe8, 0x59, 0x0c);
const HUMIDITY: RGBColor = RGBColor(0x1c, 0x7e, 0xd6);
const INK: RGBColor = RGBColor(0x5f, 0x6b, 0x7a);

/// One point as drawn, from either source.
struct Point {
    /// Unix time of the bucket's start.
    at: i64,
    temperature: Option<f64>,
    /// Lowest and highest temperature of the bucket, when known.
    band: Option<(f64, f64)>,
    humidity: Option<f64>,
}

/// The 24 h chart as an `<svg>` element, or `None` when there is nothing
/// to draw.
pub fn render(points: &[ChartPoint], now: NaiveDateTime, zone: Tz) -> Option<String> {
    let points: Vec<Point> = points
        .iter()
        .map(|point| Point {
            at: point.at.and_utc().timestamp(),
            temperature: point.temperature,
            band: None,
            humidity: point.humidity,
        })
        .collect();
    plot(&points, Range::Day, CHART_BUCKET_SECS.into(), now, zone)
}

/// A longer range's chart from its aggregates (hourly, or daily for the
/// year), or `None` when there is nothing to draw.
pub fn render_aggregates(
    aggregates: &[Aggregate],
    range: Range,
    now: NaiveDateTime,
    zone: Tz,
) -> Option<String> {
    let points: Vec<Point> = aggregates
        .iter()
        .map(|aggregate| Point {
            at: aggregate.from.and_utc().timestamp(),
            temperature: aggregate.temperature.mean,
            band: aggregate.temperature.min.zip(aggregate.temperature.max),
            humidity: aggregate.humidity.mean,
        })
        .collect();
    plot(&points, range, range.aggregate_secs(), now, zone)
}

fn plot(
    points: &[Point],
    range: Range,
    bucket_secs: i64,
    now: NaiveDateTime,
    zone: Tz,
) -> Option<String> {
    if points
        .iter()
        .all(|point| point.temperature.is_none() && point.humidity.is_none())
    {
        return None;
    }
    let mut svg = String::new();
    match draw(&mut svg, points, range, bucket_secs, now, zone) {
        Ok(()) => Some(svg),
        Err(error) => {
            tracing::error!(message = "chart drawing failed", %error);
            None
        }
    }
}

fn draw(
    svg: &mut String,
    points: &[Point],
    range: Range,
    bucket_secs: i64,
    now: NaiveDateTime,
    zone: Tz,
) -> Result<(), Box<dyn std::error::Error>> {
    let end = now.and_utc().timestamp();
    let start = (now - range.span()).and_utc().timestamp();
    // More than three buckets between two points is a gap (sensor or
    // database down): lines are broken there rather than drawn across it.
    let gap = 3 * bucket_secs;
    let (low, high) = temperature_range(points);
    let (labelled, label_format) = axis_labels(range);
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    let mut chart = ChartBuilder::on(&root)
        .margin_top(10)
        .margin_left(4)
        .margin_right(4)
        .x_label_area_size(26)
        .y_label_area_size(40)
        .right_y_label_area_size(44)
        .build_cartesian_2d(
            (start..end).with_key_points(ticks(start, end, zone, labelled)),
            low..high,
        )?
        .set_secondary_coord(start..end, 0f64..100f64);
    let label_font = ("sans-serif", 17).into_font().color(&INK);
    let time_label = |timestamp: &i64| {
        zone.timestamp_opt(*timestamp, 0)
            .single()
            .map(|time| time.format(label_format).to_string())
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(INK.mix(0.15))
        .light_line_style(TRANSPARENT)
        .axis_style(INK.mix(0.5))
        .y_labels(5)
        .x_label_formatter(&time_label)
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
    // The band goes first, under the lines: the highs left to right, then
    // the lows back.
    for segment in segments(points, gap, |point| point.band) {
        let outline = segment
            .iter()
            .map(|&(at, (_, max))| (at, max))
            .chain(segment.iter().rev().map(|&(at, (min, _))| (at, min)));
        chart.draw_series([Polygon::new(
            outline.collect::<Vec<_>>(),
            TEMPERATURE.mix(0.2).filled(),
        )])?;
    }
    // A run of one point (a stack that just started, a reading between two
    // gaps) draws no line: mark it with a dot so it is not invisible.
    for segment in segments(points, gap, |point| point.humidity) {
        if let [only] = segment[..] {
            chart.draw_secondary_series([Circle::new(only, 3, HUMIDITY.filled())])?;
        }
        chart.draw_secondary_series(LineSeries::new(segment, HUMIDITY.stroke_width(2)))?;
    }
    for segment in segments(points, gap, |point| point.temperature) {
        if let [only] = segment[..] {
            chart.draw_series([Circle::new(only, 3, TEMPERATURE.filled())])?;
        }
        chart.draw_series(LineSeries::new(segment, TEMPERATURE.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}

/// Which local whole hours get a label on the time axis, and its format:
/// few enough labels to fit side by side under a 480-pixel chart.
fn axis_labels(range: Range) -> (fn(&DateTime<Tz>) -> bool, &'static str) {
    match range {
        // 08:00, 12:00, 16:00…
        Range::Day => (|local| local.hour() % 4 == 0, "%H:%M"),
        // Each midnight: Mon, Tue…
        Range::Week => (|local| local.hour() == 0, "%a"),
        // Each Monday: 02 Nov, 09 Nov…
        Range::Month => (
            |local| local.hour() == 0 && local.weekday() == Weekday::Mon,
            "%d %b",
        ),
        // Every other month: Jan, Mar, May…
        Range::Year => (
            |local| local.hour() == 0 && local.day() == 1 && local.month() % 2 == 1,
            "%b",
        ),
    }
}

/// Tick positions on the time axis: the whole hours between `start` and
/// `end` that `labelled` picks, in the display zone.
fn ticks(start: i64, end: i64, zone: Tz, labelled: fn(&DateTime<Tz>) -> bool) -> Vec<i64> {
    let first_hour = start - start.rem_euclid(3600) + 3600;
    (first_hour..end)
        .step_by(3600)
        .filter(|timestamp| {
            zone.timestamp_opt(*timestamp, 0)
                .single()
                .is_some_and(|local| labelled(&local))
        })
        .collect()
}

/// The temperature axis: the data's range (bands included) with some air,
/// at least 4 °C tall so a flat day does not look dramatic.
fn temperature_range(points: &[Point]) -> (f64, f64) {
    let values = points.iter().flat_map(|point| {
        let (min, max) = point.band.unzip();
        [point.temperature, min, max].into_iter().flatten()
    });
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

/// Runs of consecutive points that have a value, split where one is missing
/// or more than `gap` seconds pass between two.
fn segments<T>(points: &[Point], gap: i64, value: fn(&Point) -> Option<T>) -> Vec<Vec<(i64, T)>> {
    let mut runs: Vec<Vec<(i64, T)>> = Vec::new();
    let mut last: Option<i64> = None;
    for point in points {
        match value(point) {
            Some(v) => {
                let continues = last.is_some_and(|previous| point.at - previous <= gap);
                match runs.last_mut() {
                    Some(run) if continues => run.push((point.at, v)),
                    _ => runs.push(vec![(point.at, v)]),
                }
                last = Some(point.at);
            }
            None => last = None,
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

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
        let point = |at: i64| Point {
            at,
            temperature: Some(1.0),
            band: None,
            humidity: None,
        };
        let points = vec![point(0), point(300), point(3_300)];
        let runs = segments(&points, 900, |point| point.temperature);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].len(), 2);
    }

    #[test]
    fn a_month_is_drawn_as_a_band_under_its_mean_with_day_labels() {
        let now =
            NaiveDateTime::parse_from_str("2026-11-23 15:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let first = Range::Month.first_aggregate(now);
        let aggregates: Vec<Aggregate> = (0..720)
            .map(|hour| Aggregate {
                from: first + TimeDelta::hours(hour),
                count: 240,
                temperature: crate::store::Spread {
                    min: Some(14.0),
                    mean: Some(18.0),
                    max: Some(25.0),
                },
                humidity: crate::store::Spread {
                    min: Some(50.0),
                    mean: Some(70.0),
                    max: Some(90.0),
                },
            })
            .collect();
        let svg =
            render_aggregates(&aggregates, Range::Month, now, chrono_tz::America::Bogota).unwrap();
        assert!(svg.contains("<polygon"), "the band: {svg}");
        assert!(svg.contains("<polyline"), "the means");
        // 2026-11-23 is a Monday: labelled as a date, not as a time.
        assert!(svg.contains(">\n23 Nov\n<"), "{svg}");
        assert!(!svg.contains(":00\n<"), "{svg}");
        assert!(!svg.contains("style="));
    }
}
