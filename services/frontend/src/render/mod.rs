//! All markup: small partials around one layout, drawn from the view model
//! (view.rs). maud escapes every value interpolated here; the only
//! pre-escaped content is the chart SVG, whose text plotters escapes itself.

mod cards;
mod format;
mod layout;
mod table;
#[cfg(test)]
mod tests;
mod weather;

use chrono::TimeZone;
use chrono_tz::Tz;
use maud::{html, Markup};

use self::cards::{chart_figure, city_card, range_choice};
use self::format::{local_date_time, local_time};
pub use self::layout::error_page;
use self::layout::{city_selector, layout};
use self::table::recent_table;
use self::weather::weather_section;
use crate::range::Range;
use crate::view::{PageContext, PanelView};

/// The full page: header with the city selector, then the refreshable panel.
pub fn page(ctx: &PageContext) -> Markup {
    let refresh = ctx.settings.refresh_secs;
    layout(
        "Telemetría — weather panel",
        Some(refresh),
        city_selector(ctx),
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
                    h2 #charts-title { (capitalized(ctx.range.phrase())) }
                    (range_choice(ctx.selected, ctx.range))
                    span.legend {
                        @if ctx.range == Range::Day {
                            span.key.key-temp { "temperature (°C, left)" }
                        } @else {
                            span.key.key-temp { "temperature (°C, left): mean, band from min to max" }
                        }
                        span.key.key-hum { "humidity (%, right)" }
                    }
                }
                div.charts {
                    @for (city, svg) in view.charts.of(ctx.range) {
                        (chart_figure(city, svg.as_deref(), ctx.range))
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
fn banner(view: &PanelView, zone: Tz) -> Markup {
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

/// "last 24 hours" as a heading: "Last 24 hours".
fn capitalized(phrase: &str) -> String {
    let mut chars = phrase.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
