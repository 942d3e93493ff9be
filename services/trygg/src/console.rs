//! The web console: its files, embedded in the binary and served at `/` on the API's address,
//! the headers that keep a page showing people's positions safe, and its one setting (the base
//! map) at `GET /console/config.json`.
//!
//! Embedded, not read from disk: one binary to deploy, a console that always matches the API it
//! calls, and nothing fetched or built with Node when `cargo build` runs (the libraries are
//! vendored and committed, see `console/scripts/vendor.sh`). `console/app/` is served at `/`
//! with `no-cache` (the browser revalidates on each load and mostly gets a 304 by ETag), and
//! `console/vendor/` at `/vendor/` as immutable, since each library sits in a directory named by
//! its version, so a new version is a new URL.
//!
//! Every answer of this router carries a strict Content-Security-Policy (only this origin's
//! scripts and styles, no inline code, no eval, no framing) whose `img-src` and `connect-src`
//! add only the configured base map's origins. With the default base map `none` the console
//! fetches nothing from anywhere else: a tile request would tell a third party where a person is
//! being searched for.

use std::fmt::Write as _;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Args, ValueEnum};
use rust_embed::RustEmbed;
use serde_json::json;

use crate::config::ConfigError;

/// The console's own files (HTML, modules, styles, the bundled outline map).
#[derive(RustEmbed)]
#[folder = "../../console/app/"]
struct AppFiles;

/// The vendored libraries, one directory per library and version.
#[derive(RustEmbed)]
#[folder = "../../console/vendor/"]
struct VendorFiles;

/// Vendored files never change under their URL.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// App files may change with every release: use them only after revalidating.
const REVALIDATE: &str = "no-cache";

/// Which base map the console draws under zones and positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BaseMapKind {
    /// A plain background and the bundled outline: nothing is fetched from elsewhere.
    None,
    /// Raster tiles from a `{z}/{x}/{y}` URL template.
    Xyz,
    /// A WMS GetMap URL with `{bbox-epsg-3857}` where the box goes.
    Wms,
    /// A MapLibre style document.
    Style,
}

/// `trygg serve` settings of the console's base map.
#[derive(Debug, Clone, Args)]
pub struct BaseMapArgs {
    /// The console's base map: `none` (default: a background and a bundled outline, nothing
    /// fetched from elsewhere), `xyz`, `wms` or `style`; the last three need --base-map-url and
    /// --base-map-attribution.
    #[arg(long, env = "TRYGG_BASE_MAP", value_enum, default_value = "none")]
    pub base_map: BaseMapKind,
    /// xyz: a tile URL template with `{z}`, `{x}` and `{y}`; wms: a GetMap URL with
    /// `{bbox-epsg-3857}`; style: the style document's URL. http(s).
    #[arg(long, env = "TRYGG_BASE_MAP_URL", default_value = "")]
    pub base_map_url: String,
    /// The attribution the map's licence requires (plain text), e.g. `© OpenStreetMap contributors`.
    #[arg(long, env = "TRYGG_BASE_MAP_ATTRIBUTION", default_value = "")]
    pub base_map_attribution: String,
    /// Further origins the base map loads from (comma-separated, e.g. a style's tile, glyph and
    /// sprite hosts); they are added to the console's Content-Security-Policy.
    #[arg(long, env = "TRYGG_BASE_MAP_ORIGINS", default_value = "")]
    pub base_map_origins: String,
}

/// A checked base map: what the console is told, and the origins its CSP allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BaseMap {
    kind: Option<BaseMapKind>,
    url: String,
    attribution: String,
    origins: Vec<String>,
}

/// Longest attribution accepted, in characters.
const MAX_ATTRIBUTION_CHARS: usize = 500;

impl BaseMapArgs {
    /// Checks the base map settings.
    pub fn config(&self) -> Result<BaseMap, ConfigError> {
        let bad = |what: &str| Err(ConfigError(format!("TRYGG_BASE_MAP_{what}")));
        if self.base_map == BaseMapKind::None {
            if !(self.base_map_url.is_empty() && self.base_map_origins.is_empty()) {
                return bad("URL / _ORIGINS: set only with TRYGG_BASE_MAP xyz, wms or style");
            }
            return Ok(BaseMap::default());
        }
        let url = self.base_map_url.trim();
        let needs: &[&str] = match self.base_map {
            BaseMapKind::Xyz => &["{z}", "{x}", "{y}"],
            BaseMapKind::Wms => &["{bbox-epsg-3857}"],
            BaseMapKind::Style | BaseMapKind::None => &[],
        };
        if let Some(missing) = needs.iter().find(|n| !url.contains(**n)) {
            return bad(&format!("URL: {url:?} lacks {missing}"));
        }
        let mut origins = vec![origin(url).map_err(|e| ConfigError(format!("TRYGG_BASE_MAP_URL: {e}")))?];
        for extra in self.base_map_origins.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let extra = origin(extra).map_err(|e| ConfigError(format!("TRYGG_BASE_MAP_ORIGINS: {e}")))?;
            if !origins.contains(&extra) {
                origins.push(extra);
            }
        }
        let attribution = self.base_map_attribution.trim();
        if attribution.is_empty() || attribution.chars().count() > MAX_ATTRIBUTION_CHARS {
            return bad(&format!(
                "ATTRIBUTION: required with a base map (the tiles' licence asks for it), at most {MAX_ATTRIBUTION_CHARS} characters"
            ));
        }
        // MapLibre shows the attribution as HTML; plain text keeps configuration from scripting the page.
        if attribution.contains(['<', '>']) {
            return bad("ATTRIBUTION: plain text only, no < or >");
        }
        Ok(BaseMap {
            kind: Some(self.base_map),
            url: url.to_owned(),
            attribution: attribution.to_owned(),
            origins,
        })
    }
}

/// The origin (`scheme://host[:port]`) of an http(s) URL, for the CSP.
fn origin(url: &str) -> Result<String, String> {
    // `{z}` and the like are not valid in a URL path; the origin is what comes before them.
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(format!("{url:?} is not an http(s) URL with a host"));
    }
    Ok(parsed.origin().ascii_serialization())
}

impl BaseMap {
    /// What `GET /console/config.json` says about the base map.
    fn to_json(&self) -> serde_json::Value {
        match self.kind {
            None | Some(BaseMapKind::None) => json!({ "kind": "none" }),
            Some(kind) => json!({
                "kind": kind.to_possible_value().map(|v| v.get_name().to_owned()),
                "url": self.url,
                "attribution": self.attribution,
            }),
        }
    }

    /// The Content-Security-Policy of every console answer.
    pub fn content_security_policy(&self) -> String {
        let extra: String = self.origins.iter().map(|o| format!(" {o}")).collect();
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{extra}; \
             connect-src 'self'{extra}; worker-src 'self'; font-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
    }
}

#[derive(Debug, Clone)]
struct Console {
    csp: HeaderValue,
    config: serde_json::Value,
}

/// The console's routes: `/console/config.json` and, for any other GET, the embedded file at
/// that path (`/` is `index.html`, `/vendor/…` the vendored libraries). Anything else is the
/// JSON 404 the API answers, so this router can be the last one merged.
pub fn router(base_map: &BaseMap) -> Router {
    let csp = HeaderValue::from_str(&base_map.content_security_policy())
        .expect("the CSP is built from checked origins, which are visible ASCII");
    let console = Console { csp, config: json!({ "base_map": base_map.to_json() }) };
    Router::new()
        .route("/console/config.json", get(config))
        .fallback(file)
        .layer(axum::middleware::map_response_with_state(console.clone(), security_headers))
        .with_state(console)
}

async fn security_headers(State(console): State<Console>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, console.csp);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    response
}

async fn config(State(console): State<Console>) -> Response {
    ([(header::CACHE_CONTROL, REVALIDATE)], axum::Json(console.config)).into_response()
}

async fn file(method: Method, uri: Uri, request_headers: HeaderMap) -> Response {
    let path = uri.path();
    let found = if !(method == Method::GET || method == Method::HEAD) || path.contains("..") {
        None
    } else if let Some(rest) = path.strip_prefix("/vendor/") {
        VendorFiles::get(rest).map(|f| (f, IMMUTABLE))
    } else {
        let name = match path.trim_start_matches('/') {
            "" => "index.html",
            name => name,
        };
        AppFiles::get(name).map(|f| (f, REVALIDATE))
    };
    let Some((file, cache)) = found else {
        let body = json!({ "error": "no such endpoint", "details": null });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    let fresh = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| matches_etag(tags, &etag));
    let headers = [(header::ETAG, etag), (header::CACHE_CONTROL, cache.to_owned())];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let content_type = [(header::CONTENT_TYPE, content_type(path))];
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(file.data) };
    (headers, content_type, body).into_response()
}

/// A strong ETag from the file's SHA-256 (the first 128 bits are plenty to tell versions apart).
fn etag(sha256: &[u8; 32]) -> String {
    let mut tag = String::from("\"");
    for byte in &sha256[..16] {
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    tag
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 asks for it).
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// The media type of a console file, by its extension. `nosniff` makes browsers trust it, so a
/// module must be `text/javascript` to run at all.
fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, e)| e);
    match extension {
        "" | "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "geojson" => "application/geo+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: BaseMapKind, url: &str, attribution: &str, origins: &str) -> BaseMapArgs {
        BaseMapArgs {
            base_map: kind,
            base_map_url: url.to_owned(),
            base_map_attribution: attribution.to_owned(),
            base_map_origins: origins.to_owned(),
        }
    }

    #[test]
    fn the_default_base_map_lets_the_page_reach_only_its_own_origin() {
        let none = args(BaseMapKind::None, "", "", "").config().unwrap();
        let csp = none.content_security_policy();
        assert!(csp.contains("connect-src 'self';") && csp.contains("img-src 'self' data: blob:;"), "{csp}");
        assert!(!csp.contains("unsafe") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(none.to_json(), json!({ "kind": "none" }));
    }

    #[test]
    fn a_tile_server_is_allowed_in_the_csp_by_its_origin_only() {
        let xyz = args(
            BaseMapKind::Xyz,
            "https://karta.skovde.se:8443/tiles/{z}/{x}/{y}.png",
            "© Skövde kommun",
            "https://glyphs.skovde.se/fonts",
        );
        let map = xyz.config().unwrap();
        let csp = map.content_security_policy();
        assert!(
            csp.contains("connect-src 'self' https://karta.skovde.se:8443 https://glyphs.skovde.se;"),
            "{csp}"
        );
        assert_eq!(map.to_json()["kind"], "xyz");
        assert_eq!(map.to_json()["url"], "https://karta.skovde.se:8443/tiles/{z}/{x}/{y}.png");
    }

    #[test]
    fn unusable_base_maps_are_refused_naming_the_setting() {
        let cases = [
            args(BaseMapKind::Xyz, "https://t.example/{z}/{x}.png", "©", ""),
            args(BaseMapKind::Wms, "https://w.example/wms?bbox=x", "©", ""),
            args(BaseMapKind::Style, "ftp://s.example/style.json", "©", ""),
            args(BaseMapKind::Style, "https://s.example/style.json", "", ""),
            args(BaseMapKind::Style, "https://s.example/style.json", "<img src=x onerror=alert(1)>", ""),
            args(BaseMapKind::Style, "https://s.example/style.json", "©", "not a url"),
            args(BaseMapKind::None, "https://t.example/{z}/{x}/{y}.png", "", ""),
        ];
        for case in cases {
            let error = case.config().expect_err("refused").to_string();
            assert!(error.contains("TRYGG_BASE_MAP_"), "{case:?}: {error}");
        }
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let tag = "\"abc\"";
        assert!(matches_etag("\"abc\"", tag));
        assert!(matches_etag("\"x\", W/\"abc\"", tag));
        assert!(matches_etag("*", tag));
        assert!(!matches_etag("\"abd\"", tag));
    }
}
