//! The page, its refreshable fragment, the embedded assets, and the
//! operational endpoints.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::Markup;
use serde_json::json;
use telemetry_core::metrics::CONTENT_TYPE;
use telemetry_core::time::now_utc;

use crate::assets;
use crate::errors::{html, PageError};
use crate::params::PageParams;
use crate::query;
use crate::render;
use crate::state::AppState;
use crate::view::PageContext;

/// `GET /`: the whole page. `?city=` picks the live weather shown.
pub async fn page(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    render_panel(&request, &state, render::page).await
}

/// `GET /fragment/panel`: the refreshable part of the page, for panel.js.
pub async fn fragment(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    render_panel(&request, &state, render::panel).await
}

async fn render_panel(
    request: &HttpRequest,
    state: &AppState,
    view: fn(&PageContext) -> Markup,
) -> Result<HttpResponse, PageError> {
    let selected = selected_city(request.query_string(), state)?;
    // The page's data is the background reader's last snapshot, its charts
    // already drawn: only the live weather may have to be fetched.
    let (panel, weather) = tokio::join!(state.panel.current(), state.weather.report(&selected));
    let ctx = PageContext {
        settings: &state.settings,
        now: now_utc(),
        view: &panel,
        weather: weather.as_ref(),
        selected: &selected,
    };
    Ok(html(StatusCode::OK, view(&ctx)))
}

/// The page ignores parameters it does not know (tracking tags and the like);
/// a city it does not know is an error, not a silent switch to another.
fn selected_city(query_string: &str, state: &AppState) -> Result<String, PageError> {
    match query::lenient::<PageParams>(query_string).city {
        None => Ok(state.city_names[0].clone()),
        Some(city) if state.city_names.contains(&city) => Ok(city),
        Some(_) => Err(PageError::UnknownCity {
            shown: state.city_names.clone(),
        }),
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
