//! JSON request bodies the gateway parses itself, refused before parsing when they nest too
//! deeply.
//!
//! serde builds a value by recursion, one stack frame per level, so a small body of ten
//! thousand `[` costs far more than its size suggests. The edge caps the body's *size*; this
//! module caps its *depth*: [`Json`] scans the bytes once ([`depth_within`]) and answers
//! 400 `json_too_deep` before serde sees them. Pass-through bodies are never parsed here and
//! never inspected.
//!
//! The limit comes from the request extension [`MaxDepth`] (the edge pipeline inserts it from
//! `limits.max_json_depth`), or [`DEFAULT_MAX_DEPTH`] without one.

use axum::{
    extract::{FromRequest, Request},
    http::{HeaderMap, StatusCode, header},
};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::EdgeError;

/// The nesting depth allowed when the request carries no [`MaxDepth`]: deeper than any body
/// our APIs define, far shallower than what strains a stack.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// The problem code of a body that is not JSON, or not JSON of the expected shape.
pub const INVALID_JSON: &str = "invalid_json";

/// The problem code of a body nested deeper than the limit.
pub const JSON_TOO_DEEP: &str = "json_too_deep";

/// Request extension: how many levels of `[`/`{` nesting a parsed body may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxDepth(pub usize);

/// Whether `bytes` nests arrays and objects at most `max` levels deep.
///
/// One pass, no allocation, and it stops at the first level too many, so a hostile body costs
/// no more than its prefix. Brackets inside strings do not count; the scan does not otherwise
/// check the JSON (serde does that next), so for malformed input the answer only bounds what
/// the parser would recurse into.
pub fn depth_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0_usize;
    let mut in_string = false;
    // Inside a string, whether the previous byte began an escape: `\"` does not end the
    // string, and `\\"` does.
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            // Unbalanced closers are a syntax error for serde to name; they never deepen.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Extractor: a JSON request body deserialised into `T`, like axum's `Json`, with every
/// rejection a problem+json [`EdgeError`]:
///
/// - not `Content-Type: application/json` (or `+json`): 415 `unsupported_media_type`;
/// - larger than the edge's body limit: 413 `payload_too_large`;
/// - nested deeper than [`MaxDepth`]: 400 [`JSON_TOO_DEEP`];
/// - not JSON, or not of `T`'s shape: 400 [`INVALID_JSON`], the detail naming the fault and
///   where it is (`lines[0].quantity: invalid value …`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = EdgeError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(EdgeError::from_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
            .with_detail("expected a request with `Content-Type: application/json`"));
        }
        let max = request.extensions().get::<MaxDepth>().map_or(DEFAULT_MAX_DEPTH, |m| m.0);
        let bytes = request.into_body().collect().await.map_err(|e| body_error(&e))?.to_bytes();
        if !depth_within(&bytes, max) {
            return Err(EdgeError::invalid(
                JSON_TOO_DEEP,
                format!("the JSON body is nested deeper than {max} levels"),
            ));
        }
        parse(&bytes).map(Self)
    }
}

/// Deserialises a whole body into `T`; trailing characters are an error, as in axum.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EdgeError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // The path (`lines[0].quantity`) tells a client which value to fix, which serde_json's
    // own message ("at line 1 column 37") does not.
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let detail = if e.inner().is_data() {
            format!("the JSON body does not have the expected shape: {e}")
        } else {
            format!("the body is not valid JSON: {e}")
        };
        EdgeError::invalid(INVALID_JSON, detail)
    })?;
    deserializer.end().map_err(|e| {
        EdgeError::invalid(INVALID_JSON, format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

/// Whether the request declares a JSON body: `application/json` or `application/*+json`,
/// with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.as_bytes();
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case(b"json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// A body that could not be read: over the edge's size limit (the limit layer caps the body,
/// and its error surfaces somewhere in the cause chain), or broken off by the client.
fn body_error(error: &axum::Error) -> EdgeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            // The limit is the edge's configuration, which this extractor does not see.
            return EdgeError::from_status(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                .with_detail("the request body exceeds the configured limit");
        }
        source = e.source();
    }
    EdgeError::bad_request("the request body could not be read")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, body::Body, response::Response, routing::post};
    use serde::Deserialize;
    use tower::ServiceExt;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert!(depth_within(b"", 0));
        assert!(depth_within(b"42", 0));
        assert!(!depth_within(b"[]", 0));
        assert!(depth_within(b"{\"a\": [1, {\"b\": []}]}", 4));
        assert!(!depth_within(b"{\"a\": [1, {\"b\": []}]}", 3));
        // Siblings do not add up: depth is nesting, not count.
        assert!(depth_within(b"[[], [], {}, [[]]]", 3));
        assert!(depth_within(nested(32).as_bytes(), 32));
        assert!(!depth_within(nested(33).as_bytes(), 32));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert!(depth_within(br#"{"a": "[[[[{{{{"}"#, 1));
        // An escaped quote does not end the string, so the brackets after it are still text.
        assert!(depth_within(br#"["say \"[[[[\" twice"]"#, 1));
        // An escaped backslash does not escape the quote after it: the string ends there and
        // the bracket after it counts.
        assert!(!depth_within(br#"["a\\", ["b"]]"#, 1));
        assert!(depth_within(br#"["a\\", ["b"]]"#, 2));
        // Keys are strings too.
        assert!(depth_within(br#"{"[[": {"}}": 1}}"#, 2));
    }

    #[test]
    fn the_scan_stops_at_the_first_level_too_many() {
        // Unbalanced input after the limit is never looked at.
        let mut body = nested(40).into_bytes();
        body.extend_from_slice(b"\"unterminated");
        assert!(!depth_within(&body, 32));
        // Stray closers are serde's to reject; they never make room for deeper nesting.
        assert!(!depth_within(b"]]]][[", 1));
    }

    #[derive(Debug, Deserialize)]
    struct Order {
        lines: Vec<Line>,
    }

    #[derive(Debug, Deserialize)]
    struct Line {
        #[allow(dead_code)] // read by serde's checks only
        quantity: u32,
    }

    fn app() -> Router {
        Router::new().route(
            "/orders",
            post(|Json(order): Json<Order>| async move { order.lines.len().to_string() }),
        )
    }

    async fn send(request: http::request::Builder, body: impl Into<Body>) -> Response {
        app().oneshot(request.body(body.into()).unwrap()).await.unwrap()
    }

    fn json_post() -> http::request::Builder {
        Request::post("/orders").header(header::CONTENT_TYPE, "application/json")
    }

    async fn problem(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        assert_eq!(response.headers()[header::CONTENT_TYPE], crate::error::PROBLEM_JSON);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn well_formed_bodies_are_parsed() {
        let response = send(json_post(), r#"{"lines": [{"quantity": 1}, {"quantity": 2}]}"#).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"2");

        let vendor = Request::post("/orders")
            .header(header::CONTENT_TYPE, "application/vnd.portico+json; charset=utf-8");
        assert_eq!(send(vendor, r#"{"lines": []}"#).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn deep_bodies_are_refused_before_parsing() {
        let body = format!(r#"{{"lines": [{{"quantity": 1, "x": {}}}]}}"#, nested(40));
        let (status, problem) = problem(send(json_post(), body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["code"], JSON_TOO_DEEP);
        assert_eq!(problem["detail"], "the JSON body is nested deeper than 32 levels");
    }

    #[tokio::test]
    async fn the_limit_comes_from_the_request_extension() {
        let body = r#"{"lines": [{"quantity": 1}]}"#; // three levels
        let request = json_post().extension(MaxDepth(2));
        let (status, problem) = problem(send(request, body).await).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(JSON_TOO_DEEP))
        );
        assert_eq!(problem["detail"], "the JSON body is nested deeper than 2 levels");
        let request = json_post().extension(MaxDepth(3));
        assert_eq!(send(request, body).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_naming_the_fault() {
        let cases = [
            (r#"{"lines": ["#, "not valid JSON"),
            (r#"{"lines": []} trailing"#, "not valid JSON"),
            (r#"{"lines": [{"quantity": -1}]}"#, "lines[0].quantity"),
            (r#"{"reference": "x"}"#, "missing field `lines`"),
        ];
        for (body, expected) in cases {
            let (status, problem) = problem(send(json_post(), body).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(problem["code"], INVALID_JSON, "{body}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(expected), "{body}: {detail}");
        }
    }

    #[tokio::test]
    async fn other_media_types_are_415() {
        for request in [
            Request::post("/orders"),
            Request::post("/orders").header(header::CONTENT_TYPE, "text/plain"),
            Request::post("/orders").header(header::CONTENT_TYPE, "application/jsonx"),
        ] {
            let (status, problem) = problem(send(request, r#"{"lines": []}"#).await).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(problem["code"], "unsupported_media_type");
        }
    }

    #[tokio::test]
    async fn bodies_over_the_size_limit_are_413() {
        let app =
            app().layer(axum::middleware::from_fn_with_state(8_u64, crate::limits::body_limit));
        // Streamed, so only reading the body finds out.
        let chunks =
            futures::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(b"[[[[".to_vec())));
        let request = json_post().body(Body::from_stream(chunks)).unwrap();
        let (status, problem) = problem(app.oneshot(request).await.unwrap()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(problem["code"], "payload_too_large");
    }
}
