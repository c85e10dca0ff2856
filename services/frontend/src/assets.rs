//! CSS, JavaScript and icon, compiled into the binary: the image needs no
//! files beside it, and the CSP allows only same-origin scripts and styles.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

pub struct Asset {
    name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../static/style.css"),
    },
    Asset {
        name: "panel.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../static/panel.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../static/favicon.svg"),
    },
];

/// A digest of all assets, put in their URLs: a new build gets new URLs, so
/// browsers may cache the old ones forever.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for asset in ASSETS {
            asset.body.hash(&mut hasher);
        }
        format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
    })
}

/// The versioned URL of an asset.
pub fn url(name: &str) -> String {
    format!("/static/{name}?v={}", version())
}

/// The embedded asset called `name`, if any.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// The Cache-Control of an asset asked for with `query`: only a request
/// for the current version may be cached for good.
pub fn cache_control(query: &str) -> &'static str {
    if query == format!("v={}", version()) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    }
}
