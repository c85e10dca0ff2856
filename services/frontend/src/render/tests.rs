//! The whole page rendered from fixed data, as strings.

use std::sync::Arc;

use chrono::{NaiveDateTime, TimeDelta};
use telemetry_core::weather::City;
use telemetry_core::{NewReading, Reading, Source};

use super::page;
use crate::live_weather::LiveReport;
use crate::range::Range;
use crate::settings::PanelSettings;
use crate::store::{Aggregate, ChartPoint, PanelData, Spread, Window};
use crate::view::{DrawnCharts, PageContext, PanelView};

const HOSTILE: &str = "<script>alert(1)</script>";

fn now() -> NaiveDateTime {
    NaiveDateTime::parse_from_str("2026-11-23 15:00:00", "%Y-%m-%d %H:%M:%S").unwrap()
}

fn reading(id: u64, city: &str, seconds_ago: i64) -> Reading {
    Reading {
        id,
        reading: NewReading {
            ciudad: city.into(),
            temperatura: Some(16.5),
            humedad: Some(72),
            fecha_registro: now() - TimeDelta::seconds(seconds_ago),
            source: Source::OpenMeteo,
            observed_at: None,
            apparent_temperature: None,
            weather_code: Some(3),
            wind_speed: None,
        },
    }
}

fn settings() -> PanelSettings {
    PanelSettings {
        cities: vec![
            City::new(HOSTILE, 1.0, 2.0, 20.0),
            City::new("Cali", 3.4, -76.5, 24.0),
        ],
        ..PanelSettings::default()
    }
}

fn data() -> PanelData {
    let points: Vec<ChartPoint> = (0..12)
        .map(|i| ChartPoint {
            at: now() - TimeDelta::minutes(60 - i * 5),
            temperature: Some(15.0 + i as f64 / 2.0),
            humidity: Some(70.0),
        })
        .collect();
    PanelData {
        taken_at: now(),
        latest: vec![
            (HOSTILE.into(), Some(reading(2, HOSTILE, 30))),
            ("Cali".into(), Some(reading(1, "Cali", 600))),
        ],
        charts: vec![(HOSTILE.into(), points.clone()), ("Cali".into(), points)],
        hourly: vec![(HOSTILE.into(), hours()), ("Cali".into(), Vec::new())],
        daily: vec![(HOSTILE.into(), Vec::new()), ("Cali".into(), Vec::new())],
        recent: vec![reading(2, HOSTILE, 30), reading(1, "Cali", 600)],
        window: Window::default(),
        city_windows: Vec::new(),
    }
}

/// Two days of hourly aggregates, the newest hour the current one.
fn hours() -> Vec<Aggregate> {
    let first = Range::Week.first_aggregate(now()) + TimeDelta::days(5);
    (0..48)
        .map(|hour| Aggregate {
            from: first + TimeDelta::hours(hour),
            count: 240,
            temperature: Spread {
                min: Some(12.0),
                mean: Some(15.0),
                max: Some(19.0),
            },
            humidity: Spread::default(),
        })
        .collect()
}

/// A view of `data` drawn as the panel reader draws it.
fn view_of(
    data: Option<PanelData>,
    outage_since: Option<NaiveDateTime>,
    settings: &PanelSettings,
) -> PanelView {
    let charts = data
        .as_ref()
        .map(|data| DrawnCharts::draw(data, settings.zone()))
        .unwrap_or_default();
    PanelView {
        read: 1,
        data: data.map(Arc::new),
        charts: Arc::new(charts),
        outage_since,
        failed: false,
    }
}

fn render_panel(view: &PanelView, settings: &PanelSettings) -> String {
    render_range(view, settings, Range::Day)
}

fn render_range(view: &PanelView, settings: &PanelSettings, range: Range) -> String {
    let observation = telemetry_core::weather::parse_reply(
        include_bytes!("../../../telemetry-core/tests/fixtures/current-one.json"),
        1,
    )
    .unwrap()
    .remove(0);
    let weather = LiveReport {
        city: settings.cities[0].clone(),
        observation: Some(observation),
        fetched_at: Some(now()),
        outdated: false,
        error: None,
    };
    let ctx = PageContext {
        settings,
        now: now(),
        view,
        weather: Some(&weather),
        selected: &settings.cities[0].name,
        range,
    };
    page(&ctx).into_string()
}

fn live_view() -> PanelView {
    view_of(Some(data()), None, &settings())
}

#[test]
fn page_has_cards_charts_table_and_weather() {
    let html = render_panel(&live_view(), &settings());
    assert_eq!(html.matches("class=\"card city-card").count(), 2, "{html}");
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("<table class=\"readings\""));
    assert!(html.contains("fecha_registro"));
    assert!(html.contains("16.5 °C"));
    assert!(html.contains("Overcast"));
    assert!(html.contains("tag-node") && html.contains("db-master"));
    assert!(!html.contains("Database unreachable"));
}

#[test]
fn hostile_city_names_are_escaped_everywhere() {
    let html = render_panel(&live_view(), &settings());
    assert!(!html.contains(HOSTILE), "raw city name in page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The only script element is the external one.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains(" style="));
}

#[test]
fn stale_readings_are_flagged() {
    let html = render_panel(&live_view(), &settings());
    // Cali's reading is 10 minutes old, the threshold 2 minutes.
    assert_eq!(html.matches("city-card stale").count(), 1, "{html}");
    assert!(html.contains("10 min ago"));
    assert!(html.contains("30 s ago"));
}

#[test]
fn outage_shows_banner_and_marks_last_known_data() {
    let view = PanelView {
        read: 1,
        outage_since: Some(now() - TimeDelta::minutes(1)),
        ..live_view()
    };
    let html = render_panel(&view, &settings());
    // 14:59 UTC is 09:59 in Bogotá.
    assert!(
        html.contains("Database unreachable since 2026-11-23 09:59:00"),
        "{html}"
    );
    assert!(html.contains("last known data"));
    assert!(html.contains("16.5 °C"), "last known values still shown");
}

#[test]
fn outage_before_any_read_still_renders() {
    let view = view_of(None, Some(now()), &settings());
    let html = render_panel(&view, &settings());
    assert!(html.contains("No data has been read"));
    assert!(html.contains("Live weather"));
}

#[test]
fn filled_in_rows_are_tagged_as_such_not_as_observations() {
    let mut data = data();
    let filled = |id, source| {
        let mut row = reading(id, "Cali", 3600);
        row.reading.source = source;
        row
    };
    data.recent = vec![
        filled(4, Source::Backfill),
        filled(3, Source::Interpolated),
        reading(2, HOSTILE, 30),
    ];
    let html = render_panel(&view_of(Some(data), None, &settings()), &settings());
    assert_eq!(
        html.matches("class=\"tag tag-backfill\"").count(),
        1,
        "{html}"
    );
    assert_eq!(html.matches("class=\"tag tag-interpolated\"").count(), 1);
    assert!(html.contains(">backfill</span>"));
    assert!(html.contains(">interpolated</span>"));
}

#[test]
fn each_range_is_a_plain_link_keeping_the_city_and_the_current_one_is_marked() {
    let html = render_range(&live_view(), &settings(), Range::Week);
    let hostile = "%3Cscript%3Ealert%281%29%3C%2Fscript%3E";
    for range in ["24h", "7d", "30d", "1y"] {
        assert!(
            html.contains(&format!("href=\"/?city={hostile}&amp;range={range}\"")),
            "{range}: {html}"
        );
    }
    assert!(html.contains("aria-current=\"page\">7d</a>"), "{html}");
    assert!(html.contains(">Last 7 days</h2>"));
    // The city form carries the range along.
    assert!(html.contains("<input type=\"hidden\" name=\"range\" value=\"7d\">"));
    // Only the city with aggregates has a chart, with its band.
    assert_eq!(html.matches("<svg").count(), 1, "{html}");
    assert!(html.contains("<polygon"));
    assert!(html.contains("No readings in the last 7 days."));
    let day = render_panel(&live_view(), &settings());
    assert!(
        !day.contains("name=\"range\""),
        "the default range needs no field"
    );
    assert!(!day.contains("<polygon"), "24 h charts draw no band");
}
