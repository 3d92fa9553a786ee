//! The console's static files, embedded in the binary: htmx, cytoscape.js, dagre and
//! cytoscape-dagre (vendored from the npm registry with their licences, `collector/web/vendor/`), the console's own stylesheet and
//! script. Served with a long cache lifetime under a versioned path.
use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

/// Part of every asset's path, so a new build is never served a stale copy.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/htmx/htmx.min.js"),
    ),
    (
        "htmx.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/htmx/LICENSE"),
    ),
    (
        "cytoscape.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/cytoscape/cytoscape.min.js"),
    ),
    (
        "cytoscape.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/cytoscape/LICENSE"),
    ),
    (
        "dagre.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/dagre/dagre.min.js"),
    ),
    (
        "dagre.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/dagre/LICENSE"),
    ),
    (
        "cytoscape-dagre.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/cytoscape-dagre/cytoscape-dagre.js"),
    ),
    (
        "cytoscape-dagre.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/cytoscape-dagre/LICENSE"),
    ),
    (
        "console-map.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/console-map.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/console.js"),
    ),
];

/// `/console/assets/{version}/{name}`.
pub async fn serve(Path((_version, name)): Path<(String, String)>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The path of asset `name`.
pub fn path(name: &str) -> String {
    format!("/console/assets/{VERSION}/{name}")
}
