//! The web console's files as a browser gets them: the bytes on disk, the right media type (the
//! browser trusts it: `nosniff`), revalidation by ETag, immutable vendored libraries, and the
//! security headers with a CSP that follows the configured base map.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use trygg::console::{BaseMap, BaseMapArgs, BaseMapKind, router};

fn console_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../console").join(sub)
}

/// Every file under `dir`, as paths relative to it with `/` separators.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().components();
                out.push(
                    rel.map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/"),
                );
            }
        }
    }
    out.sort();
    out
}

async fn get(app: &Router, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder().uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap().to_vec();
    (status, headers, body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_page_has_a_strict_csp_and_is_revalidated_by_etag() {
    let app = router(&BaseMap::default());
    let (status, headers, body) = get(&app, "/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(console_dir("app/index.html")).unwrap());
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    let csp = header(&headers, "content-security-policy");
    for directive in
        ["default-src 'self'", "script-src 'self'", "worker-src 'self';", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-"), "{csp}");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "referrer-policy"), "strict-origin-when-cross-origin");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    let etag = header(&headers, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

    let (status, again, body) = get(&app, "/", &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(header(&again, "etag"), etag);
    let (status, _, _) = get(&app, "/", &[("if-none-match", "\"something-else\"")]).await;
    assert_eq!(status, 200, "another version is sent whole");
}

#[tokio::test]
async fn every_app_and_vendored_file_is_served_as_on_disk_with_a_known_media_type() {
    let app = router(&BaseMap::default());
    for (dir, prefix, cache) in
        [("app", "/", "no-cache"), ("vendor", "/vendor/", "public, max-age=31536000, immutable")]
    {
        let names = files(&console_dir(dir));
        assert!(!names.is_empty(), "console/{dir} has files");
        for name in names {
            let (status, headers, body) = get(&app, &format!("{prefix}{name}"), &[]).await;
            assert_eq!(status, 200, "{name}");
            assert_eq!(body, std::fs::read(console_dir(dir).join(&name)).unwrap(), "{name}");
            assert_eq!(header(&headers, "cache-control"), cache, "{name}");
            let media = header(&headers, "content-type");
            if name.ends_with(".js") || name.ends_with(".mjs") {
                assert_eq!(media, "text/javascript; charset=utf-8", "{name}: modules run only as JavaScript");
            }
            let unknown = media == "application/octet-stream";
            assert!(!unknown || name.ends_with("SHA256SUMS") || !name.contains('.'), "{name}: {media}");
        }
    }
}

#[tokio::test]
async fn what_is_not_a_console_file_is_the_apis_json_404() {
    let app = router(&BaseMap::default());
    for path in
        ["/nope.js", "/vendor/nope/x.mjs", "/../Cargo.toml", "/vendor/../app/index.html", "/api/v1/nope"]
    {
        let (status, headers, body) = get(&app, path, &[]).await;
        assert_eq!(status, 404, "{path}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "no such endpoint", "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    }
    let post = Request::builder().method("POST").uri("/").body(Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(post).await.unwrap().status(), 404);
}

#[tokio::test]
async fn the_configured_base_map_is_told_to_the_console_and_allowed_by_its_csp_only() {
    let (status, _, body) = get(&router(&BaseMap::default()), "/console/config.json", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({ "base_map": { "kind": "none" } }));

    let wms = BaseMapArgs {
        base_map: BaseMapKind::Wms,
        base_map_url: "https://karta.skovde.se/wms?service=WMS&request=GetMap&bbox={bbox-epsg-3857}".into(),
        base_map_attribution: "© Skövde kommun".into(),
        base_map_origins: String::new(),
    }
    .config()
    .unwrap();
    let app = router(&wms);
    let (_, headers, body) = get(&app, "/console/config.json", &[]).await;
    let config: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["base_map"]["kind"], "wms");
    assert_eq!(config["base_map"]["attribution"], "© Skövde kommun");
    let csp = header(&headers, "content-security-policy");
    assert!(csp.contains("connect-src 'self' https://karta.skovde.se;"), "{csp}");
    let (_, headers, _) = get(&app, "/", &[]).await;
    assert_eq!(header(&headers, "content-security-policy"), csp, "the page has the same policy");
}
