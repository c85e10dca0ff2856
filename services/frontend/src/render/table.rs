//! The latest readings as the seed's table, and the tags that say where a
//! reading came from.

use chrono_tz::Tz;
use maud::{html, Markup};
use telemetry_core::{Reading, Source};

use super::format::{humidity, iso_utc, local_date_time, local_time, temperature};

/// The seed's table (its five columns, same names) plus the observation
/// each row carries (consecutive rows of one observation are repeats of it)
/// and where it came from.
pub fn recent_table(readings: &[Reading], zone: Tz, node_name: &str) -> Markup {
    html! {
        div.card.table-wrap {
            table.readings {
                thead {
                    tr {
                        th.num { "id" } th { "ciudad" } th.num { "temperatura" } th.num { "humedad" }
                        th { "fecha_registro" } th { "observed" } th { "origin" }
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
                            td {
                                @match reading.reading.observed_at {
                                    Some(observed) => {
                                        time datetime=(iso_utc(observed)) { (local_time(observed, zone)) }
                                    }
                                    None => { span.muted { "—" } }
                                }
                            }
                            td.tags { (source_tag(reading.reading.source)) (node_tag(node_name)) }
                        }
                    }
                    @if readings.is_empty() {
                        tr { td.muted colspan="7" { "No readings stored yet." } }
                    }
                }
            }
        }
    }
}

pub fn source_tag(source: Source) -> Markup {
    let (class, title) = match source {
        Source::OpenMeteo => ("tag tag-source", "source of the reading"),
        Source::Simulated => ("tag tag-simulated", "source of the reading"),
        Source::Backfill => (
            "tag tag-backfill",
            "filled in after the sensor was down, from Open-Meteo's past hourly data",
        ),
        Source::Interpolated => (
            "tag tag-interpolated",
            "filled in after the sensor was down: interpolated by Open-Meteo from hourly data",
        ),
        Source::Seed => (
            "tag tag-seed",
            "measured by the seed, copied from its table when its database was adopted",
        ),
    };
    html! { span class=(class) title=(title) { (source.as_str()) } }
}

pub fn node_tag(node_name: &str) -> Markup {
    html! { span.tag.tag-node title="database node that served it" { (node_name) } }
}
