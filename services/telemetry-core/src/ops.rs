//! The small HTTP listener of the background services: `/healthz` for the
//! container healthcheck and `/metrics` for Prometheus.

use std::future::Future;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::metrics::CONTENT_TYPE;

/// What a service exposes on its ops listener.
pub trait Observable: Send + Sync + 'static {
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// Body of `/healthz`: the process is alive; details for a human.
    fn health(&self) -> serde_json::Value;
    /// False while the service cannot do its work at all for a reason only
    /// an operator can fix (an unwritable directory): `/healthz` answers 503
    /// so compose's healthcheck shows it. A dead database is not that.
    fn healthy(&self) -> bool {
        true
    }
}

/// Why a service cannot do its work, for a reason only an operator can fix
/// (an unwritable directory, a database that refuses the writes): while it
/// is set, the service's [`Observable::healthy`] says no and `/healthz` shows
/// the reason.
#[derive(Debug, Default)]
pub struct Problem(Mutex<Option<String>>);

impl Problem {
    pub fn set(&self, reason: String) {
        *self.0.lock().expect("problem lock") = Some(reason);
    }

    /// Clears the problem; true if there was one.
    pub fn clear(&self) -> bool {
        self.0.lock().expect("problem lock").take().is_some()
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("problem lock").clone()
    }
}

/// Serves `/healthz` and `/metrics` on `listener` with one worker. Signals are
/// left to the caller, which stops the returned server when it drains.
pub fn serve<T: Observable>(listener: TcpListener, state: Arc<T>) -> std::io::Result<Server> {
    let state = web::Data::from(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz::<T>))
            .route("/metrics", web::get().to(metrics::<T>))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run())
}

/// Serves `server` while `work` runs; when `work` returns, stops the server
/// (letting its requests finish) and returns how it ended.
pub async fn serve_while(server: Server, work: impl Future<Output = ()>) -> std::io::Result<()> {
    let handle = server.handle();
    let server = tokio::spawn(server);
    work.await;
    handle.stop(true).await;
    server.await.map_err(std::io::Error::other)?
}

async fn healthz<T: Observable>(state: web::Data<T>) -> HttpResponse {
    if state.healthy() {
        HttpResponse::Ok().json(state.health())
    } else {
        HttpResponse::ServiceUnavailable().json(state.health())
    }
}

async fn metrics<T: Observable>(state: web::Data<T>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics())
}
