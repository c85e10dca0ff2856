//! The view model: what a page shows. The background reader (panel.rs)
//! fills it, the renderer (render/) reads it; this module imports neither,
//! so data flows one way, from the database to the markup.

use std::sync::Arc;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use telemetry_core::Reading;

use crate::chart;
use crate::live_weather::LiveReport;
use crate::range::Range;
use crate::settings::PanelSettings;
use crate::store::PanelData;

/// Everything a render needs; cheap to build per request.
pub struct PageContext<'a> {
    pub settings: &'a PanelSettings,
    /// Time of the render (UTC), against which ages are measured.
    pub now: NaiveDateTime,
    pub view: &'a PanelView,
    pub weather: Option<&'a LiveReport>,
    /// The city whose live weather is shown.
    pub selected: &'a str,
    /// The range the charts show.
    pub range: Range,
}

/// The page's data as a request finds it.
#[derive(Debug, Clone)]
pub struct PanelView {
    /// Which background read this is (1, 2, …); 0 before the first.
    pub read: u64,
    /// The latest good read, fresh or (during an outage) last known; `None`
    /// when the database has not answered once since start.
    pub data: Option<Arc<PanelData>>,
    /// The charts of `data`, drawn when it was read.
    pub charts: Arc<DrawnCharts>,
    /// Set during an outage: the database has been unreachable since then (UTC).
    pub outage_since: Option<NaiveDateTime>,
    /// The last read failed for another reason (a query error): the data shown
    /// is the last good read, but the database itself is up.
    pub failed: bool,
}

impl PanelView {
    /// True when `data` is not what the database holds now, as far as we know.
    pub fn is_last_known(&self) -> bool {
        self.outage_since.is_some() || self.failed
    }
}

/// The charts of one read, drawn once by the reader rather than per
/// request: plotting them is most of the CPU a page costs. The rest of the
/// page is cheap markup, drawn per request.
#[derive(Debug, Default)]
pub struct DrawnCharts {
    /// By [`Range`], then per city in configuration order: its chart as
    /// SVG, or `None` when there is nothing to draw.
    by_range: [Vec<(String, Option<String>)>; Range::ALL.len()],
}

impl DrawnCharts {
    pub fn draw(data: &PanelData, zone: Tz) -> Self {
        let now = data.taken_at;
        let by_range = Range::ALL.map(|range| match range {
            Range::Day => data
                .charts
                .iter()
                .map(|(city, points)| (city.clone(), chart::render(points, now, zone)))
                .collect(),
            _ => data
                .latest
                .iter()
                .map(|(city, _)| {
                    let aggregates = data.aggregates(city, range).unwrap_or_default();
                    let svg = chart::render_aggregates(aggregates, range, now, zone);
                    (city.clone(), svg)
                })
                .collect(),
        });
        Self { by_range }
    }

    /// Each city's chart over `range`, in configuration order.
    pub fn of(&self, range: Range) -> &[(String, Option<String>)] {
        &self.by_range[range as usize]
    }
}

/// How old a city's latest reading is, as the page and `/api/cities` tell it.
pub struct Freshness {
    /// Seconds since the reading's tick; `None` without a reading.
    pub age_secs: Option<i64>,
    /// Seconds since the observation the reading carries was made (the
    /// API's own time); `None` for readings without one (simulated).
    pub observation_age_secs: Option<i64>,
    /// No reading, one whose tick is older than `panel.stale_after_secs`
    /// (the sensor stopped), or one whose observation is older than
    /// [`OBSERVATION_STALE_SECS`] (the API stopped answering).
    pub stale: bool,
}

/// Open-Meteo's current weather changes every 15 minutes; an observation
/// older than two of those intervals is one the API should have replaced.
pub const OBSERVATION_STALE_SECS: i64 = 2 * 15 * 60;

impl Freshness {
    pub fn of(reading: Option<&Reading>, now: NaiveDateTime, stale_after_secs: u64) -> Self {
        let since = |at: NaiveDateTime| (now - at).num_seconds().max(0);
        let age_secs = reading.map(|reading| since(reading.reading.fecha_registro));
        let observation_age_secs = reading
            .and_then(|reading| reading.reading.observed_at)
            .map(since);
        let stale = age_secs.is_none_or(|age| age as u64 > stale_after_secs)
            || observation_age_secs.is_some_and(|age| age > OBSERVATION_STALE_SECS);
        Self {
            age_secs,
            observation_age_secs,
            stale,
        }
    }
}
