//! The page's data, read in the background. One task (`PanelReader`) reads
//! the database every `panel.data_refresh_secs`, draws the charts once, and
//! publishes the result as a snapshot; requests take the latest snapshot as
//! a view model (view.rs) and never wait for the database. When a read
//! fails, the last good snapshot stays, marked as such.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::metrics::Metrics;
use crate::settings::PanelSettings;
use crate::store::{Database, PanelData, StoreError};
use crate::view::{DrawnCharts, PanelView};

/// What the reader publishes after each attempt.
#[derive(Debug)]
struct Snapshot {
    /// 1 for the first attempt, then one more per attempt.
    read: u64,
    data: Option<Arc<PanelData>>,
    charts: Arc<DrawnCharts>,
    failed: bool,
}

/// The request side: cheap to ask, any number of times at once.
pub struct PanelSource {
    database: Database,
    /// `None` until the reader's first attempt has finished.
    snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    /// How long a request made before the first attempt finished waits for
    /// it: the time bound of that read, plus a little.
    first_read_patience: Duration,
}

impl PanelSource {
    pub async fn current(&self) -> PanelView {
        // Clone the Arc and let the channel's lock go at once.
        let published = self.snapshot.borrow().clone();
        let snapshot = match published {
            Some(snapshot) => Some(snapshot),
            None => self.first_snapshot().await,
        };
        // Outages are the database's state now, not at the last read: any
        // query (a readiness probe, the API) that notices one shows it here.
        let outage_since = self.database.outage_since();
        match snapshot {
            Some(snapshot) => PanelView {
                read: snapshot.read,
                data: snapshot.data.clone(),
                charts: snapshot.charts.clone(),
                outage_since,
                failed: snapshot.failed,
            },
            None => PanelView {
                read: 0,
                data: None,
                charts: Arc::default(),
                outage_since,
                failed: false,
            },
        }
    }

    /// The latest good read and its number, as the API serves it: an error
    /// while the database is unreachable, the last read failed, or none has
    /// finished yet, as a query would give.
    pub async fn last_read(&self) -> Result<(u64, Arc<PanelData>), StoreError> {
        let view = self.current().await;
        if let Some(since) = view.outage_since {
            return Err(StoreError::Unreachable(since));
        }
        if view.failed {
            return Err(StoreError::ReadFailed);
        }
        let data = view.data.ok_or(StoreError::NotReadYet)?;
        Ok((view.read, data))
    }

    /// Only at start: waits for the reader's first attempt, so the first
    /// page shows data (or the outage) rather than nothing.
    async fn first_snapshot(&self) -> Option<Arc<Snapshot>> {
        let mut receiver = self.snapshot.clone();
        let first =
            tokio::time::timeout(self.first_read_patience, receiver.wait_for(Option::is_some))
                .await;
        match first {
            Ok(Ok(snapshot)) => snapshot.clone(),
            // Timed out, or the reader stopped (shutting down).
            _ => None,
        }
    }
}

/// The one background task that reads the page's data.
pub struct PanelReader {
    database: Database,
    cities: Arc<[String]>,
    settings: PanelSettings,
    publish: watch::Sender<Option<Arc<Snapshot>>>,
    metrics: Arc<Metrics>,
}

/// A reader and the source its snapshots go to.
pub fn panel_source(
    database: Database,
    settings: &PanelSettings,
    metrics: Arc<Metrics>,
) -> (PanelReader, PanelSource) {
    let (publish, snapshot) = watch::channel(None);
    let source = PanelSource {
        first_read_patience: database.timeout() + Duration::from_secs(1),
        database: database.clone(),
        snapshot,
    };
    let reader = PanelReader {
        database,
        cities: settings
            .cities
            .iter()
            .map(|city| city.name.clone())
            .collect(),
        settings: settings.clone(),
        publish,
        metrics,
    };
    (reader, source)
}

impl PanelReader {
    /// Reads now, then every `every` (measured from the start of each read)
    /// until `shutdown` resolves; a read in progress is abandoned then.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(self.settings.data_refresh());
        // After a read slower than the period (a dead database costs the
        // timeout), the next starts a full period later, not at once.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.read_once() => {}
            }
        }
        tracing::debug!(message = "panel reader stopped");
    }

    async fn read_once(&self) {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let result = self.database.panel_data(self.cities.clone()).await;
        let previous = self.publish.borrow().clone();
        let read = previous.as_ref().map_or(1, |last| last.read + 1);
        let snapshot = match result {
            Ok(data) => {
                // Drawn once per read, not per request: this is most of the
                // CPU a page costs.
                let charts = DrawnCharts::draw(&data, self.settings.zone());
                self.metrics.panel_read(started_at, started.elapsed());
                Snapshot {
                    read,
                    data: Some(Arc::new(data)),
                    charts: Arc::new(charts),
                    failed: false,
                }
            }
            // Store has logged and counted the error; keep the last good data.
            Err(error) => Snapshot {
                read,
                data: previous.as_ref().and_then(|last| last.data.clone()),
                charts: previous
                    .as_ref()
                    .map(|last| last.charts.clone())
                    .unwrap_or_default(),
                failed: !error.is_unavailable(),
            },
        };
        self.publish.send_replace(Some(Arc::new(snapshot)));
    }
}
