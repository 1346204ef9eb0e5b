//! What every sample HTTP service shares: `GET /healthz` and problem+json answers for unknown
//! routes and methods, so a gateway never has to parse axum's plain-text defaults.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::problem::Problem;

/// Adds the health check and the problem+json fallbacks to a service's routes.
pub(crate) fn finish(routes: Router) -> Router {
    routes
        .route("/healthz", get(healthz))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

/// The header a Portico gateway sends with the time it will still wait for the answer, in ms.
const DEADLINE_HEADER: &str = "x-portico-timeout-ms";

/// Honours the caller's deadline: once the time it sent in [`DEADLINE_HEADER`] has passed,
/// nobody will read the answer, so the service stops working on it (the handler's future is
/// dropped) and says so with a 504.
pub(crate) async fn within_deadline(request: Request, next: Next) -> Response {
    let left = request
        .headers()
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(ms) = left else { return next.run(request).await };
    match tokio::time::timeout(Duration::from_millis(ms), next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            "the caller's deadline passed before the answer was ready",
        )
        .into_response(),
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found(method: Method, uri: Uri) -> Problem {
    Problem::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Drives a router in-process, the way the module tests exercise every service.
#[cfg(test)]
pub(crate) mod testing {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderMap, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    /// A response with its body parsed as JSON (`Value::Null` when the body is empty).
    #[derive(Debug)]
    pub(crate) struct Answer {
        pub status: StatusCode,
        pub headers: HeaderMap,
        pub json: Value,
    }

    pub(crate) async fn send(router: &Router, request: Request<Body>) -> Answer {
        let response = router.clone().oneshot(request).await.expect("routers are infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Answer { status, headers, json }
    }

    pub(crate) async fn get(router: &Router, uri: &str) -> Answer {
        let request = Request::get(uri).body(Body::empty()).expect("request");
        send(router, request).await
    }

    pub(crate) async fn post_json(router: &Router, uri: &str, body: &Value) -> Answer {
        let request = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        send(router, request).await
    }

    /// Asserts a problem+json answer with this status and code.
    pub(crate) fn assert_problem(answer: &Answer, status: StatusCode, code: &str) {
        assert_eq!(answer.status, status, "{:?}", answer.json);
        assert_eq!(
            answer.headers["content-type"],
            crate::problem::CONTENT_TYPE,
            "{:?}",
            answer.json
        );
        assert_eq!(answer.json["code"], code, "{:?}", answer.json);
        assert_eq!(answer.json["status"], status.as_u16());
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_problem, get};
    use super::*;
    use axum::routing::get as route_get;

    #[tokio::test]
    async fn healthz_and_fallbacks() {
        let router = finish(Router::new().route("/x", route_get(healthz)));
        let ok = get(&router, "/healthz").await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.json, json!({"status": "ok"}));

        let missing = get(&router, "/nope").await;
        assert_problem(&missing, StatusCode::NOT_FOUND, "not_found");

        let request =
            axum::http::Request::delete("/x").body(axum::body::Body::empty()).expect("request");
        let wrong_method = testing::send(&router, request).await;
        assert_problem(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}
