//! `POST /partner/v1/orders` places an order for the calling partner, charged at the catalog's
//! prices (a partner never sends prices); `GET /partner/v1/orders/{id}` reads one back. The
//! partner is the verified caller ([`Partner`]). A partner sees only its own orders: anyone
//! else's is answered exactly like a missing one.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{FromRequest, Path, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::IntoResponse,
};
use portico_edge::{EdgeError, compose, json, params};

use super::stock_levels;
use crate::{
    AppState,
    backend::{self, NewOrder, ProductPage},
    partner::Partner,
    validate,
    view::{Order, PlaceOrder},
};

/// The body of `POST /partner/v1/orders`. A body that is not JSON of the right shape is a 400
/// `invalid_order` with the parser's explanation, like any other fault in an order; other
/// rejections (wrong media type, too large, nested too deeply) keep their own status and code.
#[derive(Debug)]
pub struct OrderBody(PlaceOrder);

impl<S: Send + Sync> FromRequest<S> for OrderBody {
    type Rejection = EdgeError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match json::Json::<PlaceOrder>::from_request(request, state).await {
            Ok(json::Json(order)) => Ok(Self(order)),
            Err(error) if error.code() == json::INVALID_JSON => {
                Err(validate::invalid_order(error.problem().detail.unwrap_or_default().to_owned()))
            }
            Err(other) => Err(other),
        }
    }
}

/// Places an order.
#[utoipa::path(post, path = "/partner/v1/orders", tag = "partner",
    request_body = PlaceOrder,
    security(("api_key" = ["orders:write"]), ("bearer" = ["orders:write"])),
    responses(
        (status = 201, description = "The order was placed", body = Order,
         headers(("Location" = String, description = "`/partner/v1/orders/{id}` of the new order"))),
        (status = 400, description = "A malformed order (`invalid_order`, naming the fault), \
including one the orders service refuses as sent, such as lines priced in different \
currencies; or a body nested deeper than the limit, 32 levels by default (`json_too_deep`), refused before it is \
parsed. Nothing was ordered", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::PartnerUnauthorized,
        portico_edge::openapi::Forbidden,
        portico_edge::openapi::RateLimited,
        (status = 409, description = "Not enough stock for some lines (`insufficient_stock`, \
naming the SKUs when known); nothing was ordered", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::PayloadTooLarge,
        portico_edge::openapi::UnsupportedMediaType,
        (status = 422, description = "Some SKUs do not exist (`unknown_sku`, naming them); \
nothing was ordered", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn place_order(
    State(state): State<Arc<AppState>>,
    partner: Partner,
    OrderBody(order): OrderBody,
) -> Result<impl IntoResponse, EdgeError> {
    validate::order(&order)?;

    // Prices and stock are independent, so they are fetched at once; both are required; an
    // order is never placed on a guess.
    let skus: Vec<String> = order.lines.iter().map(|l| l.sku.clone()).collect();
    let joined = skus.join(",");
    let (products, stock) = tokio::join!(
        compose::required(
            "products",
            state
                .catalog
                .get("/products")
                .query(&[("skus", joined.as_str())])
                .fetch::<ProductPage>()
        ),
        compose::required("stock", stock_levels(&state.inventory, skus)),
    );
    let (products, stock) = (products?, stock?);

    let prices: HashMap<&str, &backend::Money> =
        products.items.iter().map(|p| (p.sku.as_str(), &p.price)).collect();
    let unknown: Vec<&str> = order
        .lines
        .iter()
        .map(|l| l.sku.as_str())
        .filter(|sku| !prices.contains_key(sku))
        .collect();
    if !unknown.is_empty() {
        return Err(EdgeError::from_status(StatusCode::UNPROCESSABLE_ENTITY, "unknown_sku")
            .with_detail(format!("no product has the SKU {}", unknown.join(", "))));
    }
    let available: HashMap<&str, u32> =
        stock.items.iter().map(|l| (l.sku.as_str(), l.total_available)).collect();
    let short: Vec<String> = order
        .lines
        .iter()
        .filter_map(|l| {
            // A SKU the inventory does not know has no stock to sell.
            let has = available.get(l.sku.as_str()).copied().unwrap_or(0);
            (has < l.quantity).then(|| format!("{} ({has} available)", l.sku))
        })
        .collect();
    if !short.is_empty() {
        return Err(EdgeError::from_status(StatusCode::CONFLICT, "insufficient_stock")
            .with_detail(format!("not enough stock for {}", short.join(", "))));
    }

    let new = NewOrder {
        customer_id: partner.customer_id(),
        lines: order
            .lines
            .iter()
            .filter_map(|l| {
                Some(backend::OrderLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price: (*prices.get(l.sku.as_str())?).clone(),
                })
            })
            .collect(),
    };
    let placed: backend::Order =
        compose::required("order", state.orders.post("/orders").json(&new).fetch())
            .await
            .map_err(refused_lines)?;
    // The id goes into a header and, later, into an upstream path: it must be an id.
    let location = params::id("id", &placed.id)
        .ok()
        .and_then(|id| HeaderValue::try_from(format!("/partner/v1/orders/{id}")).ok())
        .ok_or_else(|| {
            EdgeError::upstream_failed("orders", format!("placed an order with id {:?}", placed.id))
        })?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(Order::new(placed, order.reference)),
    ))
}

/// The orders service's refusal of the lines the partner sent, as this API's own problem.
///
/// Our checks above mirror the service's (line count, quantities; SKUs and stock against the
/// catalog and the inventory), so what it still refuses is about the order as sent: lines
/// priced in different currencies (400), stock that ran out since we looked (409), SKUs it
/// does not sell (422). The partner can fix those; nothing was ordered. Anything else it
/// answers, including a 404, stays our failure.
fn refused_lines(error: EdgeError) -> EdgeError {
    match error.upstream_answered() {
        Some(StatusCode::BAD_REQUEST) => error.client_caused(
            "invalid_order",
            "the order cannot be placed as sent (for example, its lines are priced in \
different currencies); nothing was ordered",
        ),
        Some(StatusCode::CONFLICT) => error.client_caused(
            "insufficient_stock",
            "not enough stock for some lines any more; nothing was ordered",
        ),
        Some(StatusCode::UNPROCESSABLE_ENTITY) => {
            error.client_caused("unknown_sku", "some SKUs cannot be ordered; nothing was ordered")
        }
        _ => error,
    }
}

/// One of the calling partner's orders.
#[utoipa::path(get, path = "/partner/v1/orders/{id}", tag = "partner",
    params(("id" = String, Path, description = "Order id, as returned when it was placed")),
    security(("api_key" = ["orders:read"]), ("bearer" = ["orders:read"])),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 400, description = "A malformed id (`invalid_id`)", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::PartnerUnauthorized,
        portico_edge::openapi::Forbidden,
        portico_edge::openapi::RateLimited,
        (status = 404, description = "No such order for this partner (`not_found`), whether it \
does not exist or is another partner's", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn get_order(
    State(state): State<Arc<AppState>>,
    partner: Partner,
    Path(id): Path<String>,
) -> Result<Json<Order>, EdgeError> {
    let id = params::id("id", &id)?;
    let order: backend::Order =
        compose::required("order", state.orders.get(&format!("/orders/{id}")).fetch())
            .await
            .map_err(|error| if error.code() == "not_found" { order_not_found() } else { error })?;
    // Another partner's order does not exist for this one: the same answer as a missing order,
    // so ids cannot be probed.
    if order.customer_id != partner.customer_id() {
        return Err(order_not_found());
    }
    Ok(Json(Order::new(order, None)))
}

/// The one answer for an order this partner cannot see, whether or not it exists.
fn order_not_found() -> EdgeError {
    EdgeError::not_found("no order with this id")
}
