//! HTML error pages, rendered in one place: a handler returns a
//! `PageError` and its `ResponseError` impl draws the page. The API's errors
//! are JSON, in api.rs.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use maud::Markup;
use serde_json::json;

use crate::range::Range;
use crate::render;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Nothing is routed at the address, or no such asset.
    #[error("nothing at this address")]
    NotFound,
    /// `?city=` names a city the panel does not show.
    #[error("unknown city")]
    UnknownCity { shown: Arc<[String]> },
    /// `?range=` names a range the charts do not offer.
    #[error("unknown chart range")]
    UnknownRange,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::UnknownCity { .. } | Self::UnknownRange => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            Self::NotFound => ("Not found", "There is nothing at this address.".to_owned()),
            Self::UnknownCity { shown } => (
                "Unknown city",
                format!("This panel shows {}.", shown.join(", ")),
            ),
            Self::UnknownRange => (
                "Unknown chart range",
                format!("The charts show {}.", Range::accepted()),
            ),
        };
        html(self.status_code(), render::error_page(title, &message))
    }
}

/// Anything unrouted: JSON under `/api/`, a page elsewhere.
pub async fn not_found(request: HttpRequest) -> Result<HttpResponse, PageError> {
    if request.path().starts_with("/api/") {
        Ok(HttpResponse::NotFound().json(json!({"error": "not found"})))
    } else {
        Err(PageError::NotFound)
    }
}

/// Every HTML response, page or error page, leaves through here.
pub fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // Live data: a cached copy would show old readings as current.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}
