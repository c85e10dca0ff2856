//! frontend: the web panel over `mediciones` (latest reading per city, 24 h
//! charts, the latest readings, live weather) and its JSON/CSV API. It keeps
//! answering while the database is down, with the last data it read.

pub mod api;
pub mod assets;
pub mod chart;
pub mod errors;
pub mod live_weather;
pub mod metrics;
pub mod page_cache;
pub mod panel;
pub mod params;
pub mod query;
pub mod range;
pub mod recent_replies;
pub mod render;
pub mod routes;
pub mod settings;
pub mod state;
pub mod store;
pub mod view;

use std::future::Future;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{self, Compress, DefaultHeaders, Next};
use actix_web::{web, App, FromRequest, Handler, HttpServer, Resource, Responder};
use mysql_async::Pool;
use telemetry_core::service::{Listener, StartupError, DRAIN_DEADLINE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::live_weather::LiveWeather;
use crate::metrics::Metrics;
use crate::page_cache::PageCache;
use crate::panel::panel_source;
use crate::recent_replies::RecentReplies;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Database;

/// Sent on every response. Nothing inline is allowed: scripts and styles
/// come from /static, the charts are inline SVG without style attributes.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub struct Application {
    port: u16,
    server: Server,
    pool: Pool,
    /// The background reader of the page's data; it stops when this is
    /// sent or dropped.
    stop_reader: oneshot::Sender<()>,
    reader: JoinHandle<()>,
}

impl Application {
    /// Binds the listener and prepares the (lazy) database pool: nothing is
    /// connected yet, so the panel starts, and says so, with the database down.
    /// Call it inside the Tokio runtime that is to own database connections.
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        tokio::runtime::Handle::try_current().map_err(|_| StartupError::NoRuntime)?;
        let listener = Listener::bind(&settings.http)?;
        let port = listener.port();
        let metrics = Arc::new(Metrics::default());
        let pool = settings.database.pool()?;
        let database = Database::new(pool.clone(), settings.database.timeout(), metrics.clone());
        let client = settings.weather.client()?;
        let panel_settings = settings.panel.clone();
        let city_names: Arc<[String]> = panel_settings
            .cities
            .iter()
            .map(|city| city.name.clone())
            .collect();
        let (reader, panel) = panel_source(database.clone(), &panel_settings, metrics.clone());
        // Started now, so the first read is under way before the first request.
        let (stop_reader, reader_stopped) = oneshot::channel::<()>();
        let reader = tokio::spawn(reader.run(async {
            let _ = reader_stopped.await;
        }));
        let state = web::Data::new(AppState {
            weather: LiveWeather::new(
                client,
                settings.weather.cache_ttl(),
                &panel_settings.cities,
                metrics.clone(),
            ),
            panel,
            pages: PageCache::new(&city_names, panel_settings.data_refresh()),
            recent_replies: RecentReplies::default(),
            settings: panel_settings,
            city_names,
            database,
            metrics,
        });
        let server = listener.serve(|listener| {
            Ok(HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .wrap(middleware::from_fn(count_requests))
                    .wrap(security_headers())
                    // The pages come compressed from the page cache; the
                    // rest is compressed per response.
                    .service(get("/", routes::page))
                    .service(get("/fragment/panel", routes::fragment))
                    .service(get("/api/readings", api::readings).wrap(Compress::default()))
                    .service(get("/api/readings.csv", api::readings_csv).wrap(Compress::default()))
                    .service(get("/api/aggregates", api::aggregates).wrap(Compress::default()))
                    .service(
                        get("/api/aggregates.csv", api::aggregates_csv).wrap(Compress::default()),
                    )
                    .service(get("/api/cities", api::cities).wrap(Compress::default()))
                    .service(get("/api/weather", api::weather).wrap(Compress::default()))
                    .service(get("/healthz", routes::healthz))
                    .service(get("/readyz", routes::readyz))
                    .service(get("/metrics", routes::metrics).wrap(Compress::default()))
                    .service(get("/static/{name}", routes::asset).wrap(Compress::default()))
                    .default_service(web::to(errors::not_found))
            })
            // Signals are the service shell's, not actix's; in-flight requests
            // get most of the shell's drain deadline, then are cut.
            .disable_signals()
            .shutdown_timeout(DRAIN_DEADLINE.as_secs() - 2)
            .listen(listener)?
            .run())
        })?;
        tracing::info!(
            message = "panel started",
            port,
            cities = settings.panel.cities.len(),
            node = %settings.panel.node_name,
            database = %format!("{}:{}/{}", settings.database.host, settings.database.port, settings.database.name),
        );
        Ok(Self {
            port,
            server,
            pool,
            stop_reader,
            reader,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish
    /// (up to 7 s), stops the panel reader and closes the database
    /// connections.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let result = tokio::select! {
            finished = &mut server => finished,
            () = shutdown => {
                handle.stop(true).await;
                server.await
            }
        };
        let _ = self.stop_reader.send(());
        if let Err(error) = self.reader.await {
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        self.pool.disconnect().await.ok();
        tracing::info!(message = "panel stopped");
        result.map_err(std::io::Error::other)?
    }
}

/// A GET route that answers HEAD too (monitors and `curl -I` use it; actix
/// leaves the body out). Other methods get a 405.
fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("X-Frame-Options", "DENY"))
}

/// Counts each request by route pattern and status once it is answered.
async fn count_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(request).await?;
    if let Some(state) = state {
        // The pattern is known only after routing, hence read from the
        // response. Patterns are the registered ones, so the labels stay few
        // however many paths are asked for.
        let route = response.request().match_pattern();
        state.metrics.request(
            route.as_deref().unwrap_or("unmatched"),
            response.status().as_u16(),
        );
    }
    Ok(response)
}
