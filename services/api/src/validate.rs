//! Reading and checking request bodies: one extractor and one validation helper.
//!
//! [`Body`] deserializes with the path of the offending field, so a wrong type or a missing
//! field is a 422 that names the field, not a bare serde message. [`Check`] collects every
//! field problem of a request before answering, so a caseworker fixing a form sees them all.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body; wrong types and missing fields are answered with 422 naming the field.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError::Malformed(e.body_text()))?;
        let mut json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Malformed(e.to_string()))?;
        integral_numbers_as_integers(&mut json);
        match serde_path_to_error::deserialize(json) {
            Ok(value) => Ok(Self(value)),
            Err(e) => {
                let inner = e.inner();
                if inner.is_syntax() || inner.is_eof() {
                    return Err(ApiError::Malformed(inner.to_string()));
                }
                let message = inner.to_string();
                let path = e.path().to_string();
                // serde reports a missing field at its parent; name the field itself.
                let field = match message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
                    Some(name) if path == "." => name.to_owned(),
                    Some(name) => format!("{path}.{name}"),
                    None => path,
                };
                let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
                Err(ApiError::field(field, message))
            }
        }
    }
}

/// Writes `60.0` as `60`: JSON (and JSON Schema, which the OpenAPI document uses) counts a
/// number without a fraction as an integer however it is written, while serde reads an integer
/// field only from digits without a decimal point.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let integral = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15);
            if let Some(f) = integral {
                *n = serde_json::Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// Collects field problems; [`Check::done`] answers 422 with all of them, or lets the request on.
#[derive(Debug, Default)]
pub(crate) struct Check(BTreeMap<String, String>);

impl Check {
    /// Records a problem with `field` unless `ok`.
    pub(crate) fn ensure(&mut self, ok: bool, field: &str, message: impl Into<String>) -> &mut Self {
        if !ok {
            self.0.entry(field.to_owned()).or_insert_with(|| message.into());
        }
        self
    }

    /// Text of `min..=max` characters as sent, and (unless `min` is 0) not only white space:
    /// what the schema says with `minLength`, `maxLength` and the pattern `\S`. Handlers store
    /// it trimmed.
    pub(crate) fn text(&mut self, field: &str, value: &str, min: usize, max: usize) -> &mut Self {
        let len = value.chars().count();
        if min > 0 && value.trim().is_empty() {
            return self.ensure(false, field, "must not be empty");
        }
        self.ensure((min..=max).contains(&len), field, format!("must be {min} to {max} characters"))
    }

    /// A number within `range`.
    pub(crate) fn range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        field: &str,
        value: T,
        range: std::ops::RangeInclusive<T>,
    ) -> &mut Self {
        let message = format!("must be between {} and {}", range.start(), range.end());
        self.ensure(range.contains(&value), field, message)
    }

    /// A webhook URL with one of `schemes`, a host, no whitespace, at most 2,000 characters.
    pub(crate) fn webhook_url(&mut self, field: &str, url: &str, schemes: &[&str]) -> &mut Self {
        let rest = url.split_once("://").filter(|(scheme, _)| schemes.contains(scheme)).map(|(_, rest)| rest);
        let ok =
            rest.is_some_and(|r| !r.is_empty()) && url.len() <= 2000 && !url.contains(char::is_whitespace);
        self.ensure(ok, field, format!("must be a {} URL", schemes.join(" or ")))
    }

    /// Parses `value` as `T`, recording the parse error under `field`.
    pub(crate) fn parse<T: std::str::FromStr>(&mut self, field: &str, value: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        value.parse().map_err(|e: T::Err| self.ensure(false, field, e.to_string())).ok()
    }

    /// Records the error of `result` under `field` and returns its value.
    pub(crate) fn result<T, E: std::fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.ensure(false, field, e.to_string())).ok()
    }

    /// 422 with every problem found, or `Ok`.
    pub(crate) fn done(&mut self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::Invalid(std::mem::take(&mut self.0))) }
    }
}

/// A list's `limit` query parameter: `default` when absent, 400 outside `1..=max` (the bounds
/// the document publishes).
pub(crate) fn limit(value: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match value.unwrap_or(default) {
        limit @ 1.. if limit <= max => Ok(limit),
        limit => Err(ApiError::Malformed(format!("limit {limit}: expected 1 to {max}"))),
    }
}

/// Query parameters; unparsable ones are a 400 in the API's JSON error shape.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| ApiError::Malformed(e.body_text()))
    }
}
