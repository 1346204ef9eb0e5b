//! `GET /partner/v1/usage`: the calling partner's plan and what is left of it today. Asking
//! does not count against the plan, and is answered even when the plan is used up.

use axum::{Json, http::StatusCode};
use portico_edge::{
    EdgeError,
    ratelimit::{PlanUsage, Usage},
};

/// The caller's plan and today's usage.
#[utoipa::path(get, path = "/partner/v1/usage", tag = "partner",
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The plan, what it allows and what is left of today's quota", body = Usage),
        (status = 404, description = "No plan limits this partner (`no_plan`)", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::PartnerUnauthorized,
        portico_edge::openapi::Forbidden,
    ))]
pub async fn usage(PlanUsage(usage): PlanUsage) -> Result<Json<Usage>, EdgeError> {
    usage.map(Json).ok_or_else(|| {
        EdgeError::from_status(StatusCode::NOT_FOUND, "no_plan")
            .with_detail("no plan limits this partner")
    })
}
