//! The console's static files, compiled into the binary: its own stylesheet and script,
//! and htmx with its SSE extension (vendored: no CDN, no npm, no build step).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::http::problem::ApiError;

/// A file the console serves under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/console.js"),
    },
    // htmx 2.0.10 (Zero-Clause BSD; assets/vendor/htmx.LICENSE).
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/vendor/htmx-2.0.10.min.js"),
    },
    // htmx-ext-sse 2.2.3 (Zero-Clause BSD; assets/vendor/htmx-ext-sse.LICENSE).
    Asset {
        name: "sse.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/vendor/htmx-ext-sse-2.2.3.js"),
    },
];

/// `GET /assets/{name}`.
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name.as_str())
        .ok_or_else(|| ApiError::NotFound("no such console asset".into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        // Revalidated after five minutes: a new Berth brings new files under the same names.
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(asset.body))
}
