//! All markup: small partials around one layout. maud escapes every value
//! interpolated here; the only pre-escaped content is the chart SVG, whose
//! text plotters escapes itself.

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use telemetry_core::weather::Observation;
use telemetry_core::{Reading, Source};

use crate::assets;
use crate::live_weather::LiveReport;
use crate::view::{Freshness, PageContext, PanelView};

/// The one layout every HTML page uses.
pub fn layout(
    title: &str,
    refresh_secs: Option<u64>,
    header_extra: Markup,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(assets::url("style.css"));
                link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
                @if let Some(seconds) = refresh_secs {
                    // Without JavaScript the page reloads itself; with it,
                    // panel.js swaps the content in place instead.
                    noscript { meta http-equiv="refresh" content=(seconds); }
                    script src=(assets::url("panel.js")) defer {}
                }
            }
            body {
                header.topbar {
                    div.brand {
                        a href="/" { span.logo aria-hidden="true" {} "Telemetría" }
                        span.subtitle { "weather readings by city" }
                    }
                    (header_extra)
                }
                (body)
                footer.footer {
                    "JSON: " a href="/api/cities" { "/api/cities" } " · "
                    a href="/api/readings" { "/api/readings" } " · CSV: "
                    a href="/api/readings.csv" { "/api/readings.csv" }
                }
            }
        }
    }
}

/// The full page: header with the city selector, then the refreshable panel.
pub fn page(ctx: &PageContext) -> Markup {
    let refresh = ctx.settings.refresh_secs;
    let selector = html! {
        form.selector method="get" action="/" {
            label for="city-select" { "Live weather for" }
            select #city-select name="city" {
                @for city in &ctx.settings.cities {
                    option value=(city.name) selected[city.name == ctx.selected] { (city.name) }
                }
            }
            button.no-js type="submit" { "Show" }
        }
        span #refresh-status.refresh-status { "updates every " (refresh) " s" }
    };
    layout(
        "Telemetría — weather panel",
        Some(refresh),
        selector,
        html! { main #panel.panel data-refresh=(refresh) { (panel(ctx)) } },
    )
}

/// The part of the page that refreshes: also served alone as the fragment.
pub fn panel(ctx: &PageContext) -> Markup {
    let zone = ctx.settings.zone();
    let view = ctx.view;
    html! {
        (banner(view, zone))
        @if let Some(data) = &view.data {
            section.section aria-labelledby="now-title" {
                div.section-head {
                    h2 #now-title { "Latest by city" }
                    @if view.is_last_known() {
                        span.tag.tag-warn { "last known data, read " (local_time(data.taken_at, zone)) }
                    } @else {
                        span.muted { "read " (local_time(data.taken_at, zone)) }
                    }
                }
                div.cards {
                    @for (city, reading) in &data.latest {
                        (city_card(city, reading.as_ref(), ctx))
                    }
                }
            }
        }
        (weather_section(ctx.weather, ctx.selected, zone))
        @if let Some(data) = &view.data {
            section.section aria-labelledby="charts-title" {
                div.section-head {
                    h2 #charts-title { "Last 24 hours" }
                    span.legend {
                        span.key.key-temp { "temperature (°C, left)" }
                        span.key.key-hum { "humidity (%, right)" }
                    }
                }
                div.charts {
                    @for (city, svg) in &view.charts.by_city {
                        (chart_figure(city, svg.as_deref()))
                    }
                }
            }
            section.section aria-labelledby="recent-title" {
                div.section-head {
                    h2 #recent-title { "Latest " (data.recent.len()) " readings" }
                    @if view.is_last_known() { span.tag.tag-warn { "last known data" } }
                }
                (recent_table(&data.recent, zone, &ctx.settings.node_name))
            }
        }
        p.muted.zone-note {
            "Times in " (ctx.settings.time_zone) " (" (zone.offset_from_utc_datetime(&ctx.now)) "). Page rendered "
            (local_time(ctx.now, zone)) "."
        }
    }
}

/// The outage notice; empty while the database answers.
pub fn banner(view: &PanelView, zone: Tz) -> Markup {
    let read_at = view
        .data
        .as_ref()
        .map(|data| local_date_time(data.taken_at, zone));
    html! {
        @if let Some(since) = view.outage_since {
            div.banner role="alert" {
                strong { "Database unreachable since " (local_date_time(since, zone)) "." }
                " "
                @match &read_at {
                    Some(read_at) => { "Showing the last known data, read at " (read_at) ". It will update by itself when the database is back." }
                    None => { "No data has been read since the panel started; it will appear by itself when the database is back." }
                }
            }
        } @else if view.failed {
            div.banner role="alert" {
                strong { "The last read of the database failed." }
                " "
                @if let Some(read_at) = &read_at { "Showing the last known data, read at " (read_at) "." }
            }
        } @else if view.data.is_none() {
            div.banner role="status" {
                "The panel is still reading the database; the data will appear by itself."
            }
        }
    }
}

pub fn city_card(city: &str, reading: Option<&Reading>, ctx: &PageContext) -> Markup {
    let zone = ctx.settings.zone();
    let Freshness { age_secs, stale } =
        Freshness::of(reading, ctx.now, ctx.settings.stale_after_secs);
    html! {
        article.card.city-card.stale[stale] {
            h3.card-title { (city) }
            @match reading {
                Some(reading) => {
                    div.metrics {
                        span.metric.temp { (temperature(reading.reading.temperatura)) }
                        span.metric.hum { (humidity(reading.reading.humedad)) }
                    }
                    p.age {
                        time datetime=(iso_utc(reading.reading.fecha_registro)) title=(local_date_time(reading.reading.fecha_registro, zone)) {
                            (age_text(age_secs.unwrap_or_default()))
                        }
                        @if stale { " " span.tag.tag-warn { "stale" } }
                    }
                    p.tags {
                        (source_tag(reading.reading.source))
                        (node_tag(&ctx.settings.node_name))
                    }
                }
                None => {
                    p.muted { "No readings yet." }
                }
            }
        }
    }
}

pub fn weather_section(report: Option<&LiveReport>, selected: &str, zone: Tz) -> Markup {
    html! {
        section.section aria-labelledby="weather-title" {
            div.section-head {
                h2 #weather-title { "Live weather · " (selected) }
                span.tag.tag-source { "open-meteo" }
            }
            div.card.weather-card {
                @match report.and_then(|report| report.observation.as_ref().map(|observation| (report, observation))) {
                    Some((report, observation)) => { (observation_block(report, observation, zone)) }
                    None => {
                        p.muted {
                            "Live weather is unavailable right now"
                            @if let Some(kind) = report.and_then(|report| report.error) { " (" (kind.replace('_', " ")) ")" }
                            "; it will be retried shortly."
                        }
                    }
                }
            }
        }
    }
}

fn observation_block(report: &LiveReport, observation: &Observation, zone: Tz) -> Markup {
    html! {
        div.weather-main {
            span.weather-temp { (temperature(observation.temperature)) }
            span.weather-desc { (weather_description(observation.weather_code)) }
        }
        dl.weather-facts {
            div { dt { "Feels like" } dd { (temperature(observation.apparent_temperature)) } }
            div { dt { "Humidity" } dd { (humidity(observation.humidity)) } }
            div { dt { "Wind" } dd { @match observation.wind_speed { Some(speed) => { (format!("{speed:.1} km/h")) } None => { "—" } } } }
            div { dt { "Observed" } dd { (local_time(observation.observed_at, zone)) } }
        }
        @if report.outdated {
            p.tags { span.tag.tag-warn { "outdated: Open-Meteo is not answering" } }
        } @else if let Some(fetched_at) = report.fetched_at {
            p.muted.small { "Fetched " (local_time(fetched_at, zone)) ", kept for a few minutes." }
        }
    }
}

pub fn chart_figure(city: &str, svg: Option<&str>) -> Markup {
    html! {
        figure.card.chart {
            figcaption.card-title { (city) }
            @match svg {
                Some(svg) => {
                    div.chart-svg role="img" aria-label=(format!("{city}: temperature and humidity, last 24 hours")) {
                        (PreEscaped(svg))
                    }
                }
                None => { p.muted.chart-empty { "No readings in the last 24 hours." } }
            }
        }
    }
}

/// The seed's table (its five columns, same names) plus where each row came from.
pub fn recent_table(readings: &[Reading], zone: Tz, node_name: &str) -> Markup {
    html! {
        div.card.table-wrap {
            table.readings {
                thead {
                    tr {
                        th.num { "id" } th { "ciudad" } th.num { "temperatura" } th.num { "humedad" }
                        th { "fecha_registro" } th { "origin" }
                    }
                }
                tbody {
                    @for reading in readings {
                        tr {
                            td.num { (reading.id) }
                            td { (reading.reading.ciudad) }
                            td.num { (temperature(reading.reading.temperatura)) }
                            td.num { (humidity(reading.reading.humedad)) }
                            td {
                                time datetime=(iso_utc(reading.reading.fecha_registro)) {
                                    (local_date_time(reading.reading.fecha_registro, zone))
                                }
                            }
                            td.tags { (source_tag(reading.reading.source)) (node_tag(node_name)) }
                        }
                    }
                    @if readings.is_empty() {
                        tr { td.muted colspan="6" { "No readings stored yet." } }
                    }
                }
            }
        }
    }
}

pub fn source_tag(source: Source) -> Markup {
    let class = match source {
        Source::OpenMeteo => "tag tag-source",
        Source::Simulated => "tag tag-simulated",
    };
    html! { span class=(class) title="source of the reading" { (source.as_str()) } }
}

pub fn node_tag(node_name: &str) -> Markup {
    html! { span.tag.tag-node title="database node that served it" { (node_name) } }
}

/// An error page in the site's layout (unknown page, bad parameter).
pub fn error_page(title: &str, message: &str) -> Markup {
    layout(
        title,
        None,
        html! {},
        html! {
            main.panel {
                section.card.error-card {
                    h2 { (title) }
                    p { (message) }
                    p { a href="/" { "Back to the panel" } }
                }
            }
        },
    )
}

fn temperature(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |value| format!("{value:.1} °C"))
}

fn humidity(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "—".into(), |value| format!("{value} %"))
}

fn local(utc: NaiveDateTime, zone: Tz) -> chrono::DateTime<Tz> {
    zone.from_utc_datetime(&utc)
}

fn local_time(utc: NaiveDateTime, zone: Tz) -> String {
    local(utc, zone).format("%H:%M:%S").to_string()
}

fn local_date_time(utc: NaiveDateTime, zone: Tz) -> String {
    local(utc, zone).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn iso_utc(utc: NaiveDateTime) -> String {
    utc.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn age_text(seconds: i64) -> String {
    match seconds {
        0..=4 => "just now".into(),
        5..=119 => format!("{seconds} s ago"),
        120..=7199 => format!("{} min ago", seconds / 60),
        7200..=172_799 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// WMO weather interpretation codes, as Open-Meteo documents them.
pub fn weather_description(code: Option<u16>) -> &'static str {
    match code {
        Some(0) => "Clear sky",
        Some(1) => "Mainly clear",
        Some(2) => "Partly cloudy",
        Some(3) => "Overcast",
        Some(45 | 48) => "Fog",
        Some(51 | 53 | 55) => "Drizzle",
        Some(56 | 57) => "Freezing drizzle",
        Some(61) => "Light rain",
        Some(63) => "Rain",
        Some(65) => "Heavy rain",
        Some(66 | 67) => "Freezing rain",
        Some(71 | 73 | 75 | 77) => "Snow",
        Some(80..=82) => "Rain showers",
        Some(85 | 86) => "Snow showers",
        Some(95) => "Thunderstorm",
        Some(96 | 99) => "Thunderstorm with hail",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use chrono::TimeDelta;
    use telemetry_core::weather::City;
    use telemetry_core::NewReading;

    use crate::live_weather::LiveReport;
    use crate::settings::PanelSettings;
    use crate::store::{ChartPoint, PanelData};
    use crate::view::DrawnCharts;

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
            recent: vec![reading(2, HOSTILE, 30), reading(1, "Cali", 600)],
        }
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
            data: data.map(Arc::new),
            charts: Arc::new(charts),
            outage_since,
            failed: false,
        }
    }

    fn render_panel(view: &PanelView, settings: &PanelSettings) -> String {
        let observation = telemetry_core::weather::parse_reply(
            include_bytes!("../../telemetry-core/tests/fixtures/current-one.json"),
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
    fn ages_read_naturally() {
        assert_eq!(age_text(3), "just now");
        assert_eq!(age_text(45), "45 s ago");
        assert_eq!(age_text(600), "10 min ago");
        assert_eq!(age_text(3 * 86_400), "3 days ago");
    }
}
