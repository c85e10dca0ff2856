//! The panel's pages as bytes: each page (a city selection, whole or as the
//! fragment panel.js fetches) is rendered once per version of what it shows
//! and compressed at most once per encoding, then served to every request
//! until that version changes. A version is the background read it shows,
//! the database's outage state, and the live weather it includes; a render
//! is also redone once it is `max_age` old, so the ages and the "rendered at"
//! time it prints are never older than one data refresh.
//!
//! Memory: one render per (city, whole page or fragment, chart range) —
//! 2 × 4 × the configured cities, 56 for the default seven — each held as
//! the page plus its gzip and brotli forms once asked for. Pages grow with
//! the points their charts draw: measured with seven cities, 68 KB for 24
//! hours and 75 KB for 7 days (168 points a chart); a full 30 days (720
//! points) comes to about 200 KB and a full year (365) to about 110 KB by
//! the same measure. So about 0.45 MB per city and form, compressed copies
//! (a sixth of that) included: at most about 7 MB for the default seven
//! cities, once every variant has been asked for.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderValue};
use actix_web::web::Bytes;
use chrono::NaiveDateTime;

use crate::live_weather::WeatherVersion;
use crate::range::Range;

/// The two forms of the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// `GET /`: the whole page.
    Page = 0,
    /// `GET /fragment/panel`: the part panel.js refreshes.
    Fragment = 1,
}

/// What a render shows; a cached render stands while this is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// The background read shown (its sequence number).
    pub read: u64,
    pub outage_since: Option<NaiveDateTime>,
    pub failed: bool,
    /// The live weather shown.
    pub weather: Option<WeatherVersion>,
}

/// A content coding the panel serves its pages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity = 0,
    Gzip = 1,
    Brotli = 2,
}

impl Encoding {
    /// The best coding `Accept-Encoding` allows: brotli, then gzip, else
    /// none. A coding with `q=0` is refused; `*` stands for any other.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let mut brotli = None;
        let mut gzip = None;
        let mut any = None;
        for value in headers.get_all(actix_web::http::header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or_default().trim();
                let accepted = parts
                    .filter_map(|parameter| parameter.trim().strip_prefix("q="))
                    .all(|quality| quality.trim().parse::<f32>().map_or(true, |q| q > 0.0));
                let slot = if name.eq_ignore_ascii_case("br") {
                    &mut brotli
                } else if name.eq_ignore_ascii_case("gzip") {
                    &mut gzip
                } else if name == "*" {
                    &mut any
                } else {
                    continue;
                };
                *slot = Some(accepted);
            }
        }
        if brotli.or(any) == Some(true) {
            Self::Brotli
        } else if gzip.or(any) == Some(true) {
            Self::Gzip
        } else {
            Self::Identity
        }
    }

    /// The `Content-Encoding` value; `None` for identity.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }
}

/// One render of one page, and its compressed forms once asked for.
pub struct Rendered {
    version: Version,
    rendered_at: Instant,
    identity: Bytes,
    /// The strong `ETag` of each form, by [`Encoding`]: a hash of the page
    /// plus the coding, so no two forms share one.
    etags: [HeaderValue; 3],
    gzip: OnceLock<Bytes>,
    brotli: OnceLock<Bytes>,
}

impl Rendered {
    fn new(version: Version, html: String) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        html.hash(&mut hasher);
        let digest = hasher.finish();
        let etags = [Encoding::Identity, Encoding::Gzip, Encoding::Brotli].map(|encoding| {
            let etag = match encoding.header_value() {
                None => format!("\"{digest:016x}\""),
                Some(coding) => format!("\"{digest:016x}-{coding}\""),
            };
            HeaderValue::from_str(&etag).expect("hex and a coding name")
        });
        Self {
            version,
            rendered_at: Instant::now(),
            etags,
            identity: Bytes::from(html),
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
        }
    }

    /// The page in `encoding`, compressed now if this is the first ask.
    pub fn body(&self, encoding: Encoding) -> Bytes {
        match encoding {
            Encoding::Identity => self.identity.clone(),
            Encoding::Gzip => self.gzip.get_or_init(|| gzip(&self.identity)).clone(),
            Encoding::Brotli => self.brotli.get_or_init(|| brotli(&self.identity)).clone(),
        }
    }

    /// The strong validator of the page in `encoding`, quoted.
    pub fn etag(&self, encoding: Encoding) -> &HeaderValue {
        &self.etags[encoding as usize]
    }
}

/// The latest render of each page.
pub struct PageCache {
    max_age: Duration,
    /// Per city: the whole page, then the fragment (by [`PageKind`]), each
    /// by chart [`Range`].
    pages: HashMap<String, [[Slot; Range::ALL.len()]; 2]>,
}

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Arc<Rendered>>>,
    /// Held while rendering, so that concurrent requests for a page whose
    /// version just changed wait for one render instead of each making one.
    rendering: tokio::sync::Mutex<()>,
}

impl PageCache {
    pub fn new(cities: &[String], max_age: Duration) -> Self {
        let pages = cities
            .iter()
            .map(|city| (city.clone(), Default::default()))
            .collect();
        Self { max_age, pages }
    }

    /// The render of `kind` for `city` with its charts over `range`, at
    /// `version`: the cached one if it still stands, else a new one from
    /// `render`. `None` for a city not configured.
    pub async fn get(
        &self,
        city: &str,
        kind: PageKind,
        range: Range,
        version: Version,
        render: impl FnOnce() -> String,
    ) -> Option<Arc<Rendered>> {
        let slot = self.slot(city, kind, range)?;
        if let Some(rendered) = self.standing(slot, version) {
            return Some(rendered);
        }
        let _rendering = slot.rendering.lock().await;
        if let Some(rendered) = self.standing(slot, version) {
            return Some(rendered);
        }
        let rendered = Arc::new(Rendered::new(version, render()));
        *slot.current.write().expect("page cache lock") = Some(rendered.clone());
        Some(rendered)
    }

    fn slot(&self, city: &str, kind: PageKind, range: Range) -> Option<&Slot> {
        self.pages
            .get(city)
            .map(|slots| &slots[kind as usize][range as usize])
    }

    fn standing(&self, slot: &Slot, version: Version) -> Option<Arc<Rendered>> {
        let current = slot.current.read().expect("page cache lock");
        current
            .as_ref()
            .filter(|rendered| {
                rendered.version == version && rendered.rendered_at.elapsed() < self.max_age
            })
            .cloned()
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks
/// for this header), or is `*`.
pub fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.to_str().unwrap_or_default();
    headers
        .get_all(actix_web::http::header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

fn gzip(page: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(page.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(page).expect("writing to memory");
    Bytes::from(encoder.finish().expect("writing to memory"))
}

/// Quality 6 of 11: within a few percent of the best size for a page this
/// small, at a few milliseconds once per refresh rather than tens.
fn brotli(page: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(page.len() / 5);
    let params = brotli::enc::BrotliEncoderParams {
        quality: 6,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &page[..], &mut out, &params).expect("writing to memory");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        headers
    }

    #[test]
    fn negotiates_the_best_accepted_coding() {
        let negotiate = |value| Encoding::negotiate(&headers("accept-encoding", value));
        assert_eq!(negotiate("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(negotiate("gzip, deflate"), Encoding::Gzip);
        assert_eq!(negotiate("br;q=0, gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(negotiate("deflate"), Encoding::Identity);
        assert_eq!(negotiate("*"), Encoding::Brotli);
        assert_eq!(negotiate("*;q=0"), Encoding::Identity);
        assert_eq!(negotiate("identity"), Encoding::Identity);
        assert_eq!(Encoding::negotiate(&HeaderMap::new()), Encoding::Identity);
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_any() {
        let etag = HeaderValue::from_static("\"00000000000000ff-br\"");
        let matches = |value| matches_etag(&headers("if-none-match", value), &etag);
        assert!(matches("\"00000000000000ff-br\""));
        assert!(matches("W/\"00000000000000ff-br\""));
        assert!(matches("\"x\", \"00000000000000ff-br\""));
        assert!(matches("*"));
        assert!(!matches("\"00000000000000ff\""));
        assert!(!matches_etag(&HeaderMap::new(), &etag));
    }

    #[test]
    fn every_form_decodes_to_the_page() {
        let page = "<p>Medellín</p>".repeat(500);
        let rendered = Rendered::new(
            Version {
                read: 1,
                outage_since: None,
                failed: false,
                weather: None,
            },
            page.clone(),
        );
        let mut unzipped = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&rendered.body(Encoding::Gzip)[..]),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, page);
        let mut unbrotlied = Vec::new();
        brotli::BrotliDecompress(&mut &rendered.body(Encoding::Brotli)[..], &mut unbrotlied)
            .unwrap();
        assert_eq!(unbrotlied, page.as_bytes());
        let etags = [Encoding::Identity, Encoding::Gzip, Encoding::Brotli]
            .map(|encoding| rendered.etag(encoding).clone());
        assert!(etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2]);
    }
}
