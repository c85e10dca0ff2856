//! What every request handler shares.

use std::sync::Arc;

use crate::live_weather::LiveWeather;
use crate::metrics::Metrics;
use crate::page_cache::PageCache;
use crate::panel::PanelSource;
use crate::recent_replies::RecentReplies;
use crate::settings::PanelSettings;
use crate::store::Database;

pub struct AppState {
    pub settings: PanelSettings,
    pub city_names: Arc<[String]>,
    pub database: Database,
    pub panel: PanelSource,
    pub pages: PageCache,
    pub recent_replies: RecentReplies,
    pub weather: LiveWeather,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// The configured city `typed` names, accents and case aside.
    pub fn city(&self, typed: &str) -> Option<&str> {
        telemetry_core::weather::canonical_city(&self.city_names, typed)
    }
}
