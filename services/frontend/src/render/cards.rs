//! The cards of the panel: one per city with its latest reading, one per
//! city with its chart, and the choice of the charts' range.

use maud::{html, Markup, PreEscaped};
use telemetry_core::Reading;

use super::format::{age_text, humidity, iso_utc, local_date_time, temperature};
use super::table::{node_tag, source_tag};
use crate::range::Range;
use crate::view::{Freshness, PageContext};

/// A city's latest reading: its values, its age, and where it came from.
pub fn city_card(city: &str, reading: Option<&Reading>, ctx: &PageContext) -> Markup {
    let zone = ctx.settings.zone();
    let Freshness {
        age_secs,
        observation_age_secs,
        stale,
    } = Freshness::of(reading, ctx.now, ctx.settings.stale_after_secs);
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
                        // The observation's own age when there is one: a
                        // row stored 5 s ago may carry a 20-minute-old one.
                        @match (reading.reading.observed_at, observation_age_secs) {
                            (Some(observed), Some(age)) => {
                                "observed "
                                time datetime=(iso_utc(observed)) title=(format!("observed {}, stored {}", local_date_time(observed, zone), local_date_time(reading.reading.fecha_registro, zone))) {
                                    (age_text(age))
                                }
                            }
                            _ => {
                                time datetime=(iso_utc(reading.reading.fecha_registro)) title=(local_date_time(reading.reading.fecha_registro, zone)) {
                                    (age_text(age_secs.unwrap_or_default()))
                                }
                            }
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

/// A city's chart over `range`, drawn by the panel reader (view.rs).
pub fn chart_figure(city: &str, svg: Option<&str>, range: Range) -> Markup {
    let phrase = range.phrase();
    html! {
        figure.card.chart {
            figcaption.card-title { (city) }
            @match svg {
                Some(svg) => {
                    div.chart-svg role="img" aria-label=(format!("{city}: temperature and humidity, {phrase}")) {
                        (PreEscaped(svg))
                    }
                }
                None => { p.muted.chart-empty { "No readings in the " (phrase) "." } }
            }
        }
    }
}

/// The charts' range, as plain links that keep the selected city: a choice
/// that needs no JavaScript.
pub fn range_choice(selected: &str, current: Range) -> Markup {
    html! {
        nav.ranges aria-label="Chart range" {
            @for range in Range::ALL {
                @let href = format!("/?{}", serde_urlencoded::to_string([("city", selected), ("range", range.param())]).unwrap_or_default());
                @if range == current {
                    a.range.current href=(href) aria-current="page" { (range.param()) }
                } @else {
                    a.range href=(href) { (range.param()) }
                }
            }
        }
    }
}
