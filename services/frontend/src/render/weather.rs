//! The live weather block, and the words for Open-Meteo's weather codes.

use chrono_tz::Tz;
use maud::{html, Markup};
use telemetry_core::weather::Observation;

use super::format::{humidity, local_time, temperature};
use crate::live_weather::LiveReport;

/// The selected city's live weather, or why there is none.
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

/// WMO weather interpretation codes, as Open-Meteo documents them.
fn weather_description(code: Option<u16>) -> &'static str {
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
