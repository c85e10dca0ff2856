//! The page, its refreshable fragment, the embedded assets, and the
//! operational endpoints.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use telemetry_core::metrics::CONTENT_TYPE;
use telemetry_core::time::now_utc;

use crate::assets;
use crate::errors::PageError;
use crate::page_cache::{matches_etag, Encoding, PageKind, Version};
use crate::params::PageParams;
use crate::query;
use crate::range::Range;
use crate::render;
use crate::state::AppState;
use crate::view::PageContext;

/// `GET /`: the whole page. `?city=` picks the live weather shown,
/// `?range=` the charts' range (24h, 7d, 30d, 1y).
pub async fn page(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    serve_page(&request, &state, PageKind::Page).await
}

/// `GET /fragment/panel`: the refreshable part of the page, for panel.js.
pub async fn fragment(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    serve_page(&request, &state, PageKind::Fragment).await
}

/// Serves a page from the page cache, in the best coding the client takes,
/// or 304 when the client holds this very version.
async fn serve_page(
    request: &HttpRequest,
    state: &AppState,
    kind: PageKind,
) -> Result<HttpResponse, PageError> {
    let params = query::lenient::<PageParams>(request.query_string());
    let selected = selected_city(params.city.as_deref(), state)?;
    let range = selected_range(params.range.as_deref())?;
    // The page's data is the background reader's last snapshot, its charts
    // already drawn: only the live weather may have to be fetched.
    let (panel, weather) = tokio::join!(state.panel.current(), state.weather.version(selected));
    let version = Version {
        read: panel.read,
        outage_since: panel.outage_since,
        failed: panel.failed,
        weather,
    };
    // Rendered only when this version is not cached yet.
    let render = || {
        let weather = state.weather.held(selected);
        let ctx = PageContext {
            settings: &state.settings,
            now: now_utc(),
            view: &panel,
            weather: weather.as_ref(),
            selected,
            range,
        };
        match kind {
            PageKind::Page => render::page(&ctx),
            PageKind::Fragment => render::panel(&ctx),
        }
        .into_string()
    };
    let rendered = state
        .pages
        .get(selected, kind, range, version, render)
        .await
        .ok_or(PageError::NotFound)?;
    let encoding = Encoding::negotiate(request.headers());
    let etag = rendered.etag(encoding);
    let not_modified = matches_etag(request.headers(), etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::VARY, "Accept-Encoding"))
        // Stored, but checked again before each use: a copy is never shown
        // as current without the server saying it still is.
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if not_modified {
        return Ok(response.finish());
    }
    if let Some(coding) = encoding.header_value() {
        response.insert_header((header::CONTENT_ENCODING, coding));
    }
    Ok(response
        .content_type("text/html; charset=utf-8")
        .body(rendered.body(encoding)))
}

/// The page ignores parameters it does not know (tracking tags and the like);
/// a city it does not know is an error, not a silent switch to another.
fn selected_city<'a>(city: Option<&str>, state: &'a AppState) -> Result<&'a str, PageError> {
    match city {
        None => Ok(&state.city_names[0]),
        Some(city) => state.city(city).ok_or_else(|| PageError::UnknownCity {
            shown: state.city_names.clone(),
        }),
    }
}

/// The charts' range; like a city, one the page does not offer is an error.
fn selected_range(range: Option<&str>) -> Result<Range, PageError> {
    match range {
        None => Ok(Range::default()),
        Some(range) => Range::parse(range).ok_or(PageError::UnknownRange),
    }
}

/// `GET /static/{name}`: CSS, JavaScript and icon, from the binary.
pub async fn asset(
    request: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let asset = assets::find(&name).ok_or(PageError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((
            header::CACHE_CONTROL,
            assets::cache_control(request.query_string()),
        ))
        .body(asset.body))
}

/// Liveness: the process serves requests. The database is `/readyz`'s concern.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the database answers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.database.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "database": "reachable"})),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "database": "unreachable"})),
    }
}

/// Prometheus scrape. It pings the database first, so `frontend_database_up`
/// is current even when nobody is looking at the page.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let _ = state.database.ping().await;
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render())
}
