//! Checks on what partners send, before any upstream is called: a partner's integration gets
//! a precise 400 naming the fault rather than a backend's guess, and nothing malformed is
//! copied into an upstream request.

use portico_edge::{EdgeError, params};

use crate::view::PlaceOrder;

/// Feed page size when the partner names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest feed page (also the catalog's own maximum).
pub const MAX_LIMIT: u32 = 100;
/// The longest cursor accepted; the catalog's are far shorter.
const MAX_CURSOR_LEN: usize = 200;
/// At most this many lines per order.
pub const MAX_LINES: usize = 50;
/// Quantities a line may have (the orders service's own range).
pub const QUANTITY: std::ops::RangeInclusive<u32> = 1..=999;
/// The longest partner reference, in characters.
const MAX_REFERENCE: usize = 64;

/// The feed's `limit`: absent means the default; anything but 1–100 is a 400.
pub fn limit(raw: Option<&str>) -> Result<u32, EdgeError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(DEFAULT_LIMIT);
    };
    raw.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
        EdgeError::invalid(
            "invalid_parameter",
            format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
        )
    })
}

/// The feed's `cursor`, passed through opaque but only if it could be one of ours: base64url
/// characters, bounded, so nothing else reaches the catalog's query string.
pub fn cursor(raw: Option<&str>) -> Result<Option<&str>, EdgeError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let ok = raw.len() <= MAX_CURSOR_LEN
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'=' | b'-'));
    if ok { Ok(Some(raw)) } else { Err(invalid_cursor()) }
}

/// The detail of a 400 `invalid_cursor`.
pub const INVALID_CURSOR: &str =
    "`cursor` was not issued by this API; pass a `next_cursor` unchanged, or start without one";

/// The 400 for a cursor this API did not issue.
pub fn invalid_cursor() -> EdgeError {
    EdgeError::invalid("invalid_cursor", INVALID_CURSOR)
}

/// A 400 `invalid_order` naming what is wrong with the order.
pub fn invalid_order(detail: impl Into<std::borrow::Cow<'static, str>>) -> EdgeError {
    EdgeError::invalid("invalid_order", detail)
}

/// Checks a new order: 1–50 lines, valid and distinct SKUs, quantities 1–999, and a short
/// reference. Lines are numbered from 1 in the details, as a partner counts them.
pub fn order(order: &PlaceOrder) -> Result<(), EdgeError> {
    if let Some(reference) = &order.reference
        && reference.chars().count() > MAX_REFERENCE
    {
        return Err(invalid_order(format!(
            "`reference` is longer than {MAX_REFERENCE} characters"
        )));
    }
    if order.lines.is_empty() || order.lines.len() > MAX_LINES {
        return Err(invalid_order(format!(
            "an order has 1 to {MAX_LINES} lines; this one has {}",
            order.lines.len()
        )));
    }
    for (i, line) in order.lines.iter().enumerate() {
        let n = i + 1;
        // The SKU is not echoed: it is whatever the partner sent, and may be long.
        params::id("sku", &line.sku).map_err(|_| {
            invalid_order(format!("line {n}: `sku` must be 1–64 letters, digits, `-` or `_`"))
        })?;
        if !QUANTITY.contains(&line.quantity) {
            return Err(invalid_order(format!(
                "line {n}: quantity {} is outside {}..={}",
                line.quantity,
                QUANTITY.start(),
                QUANTITY.end()
            )));
        }
        if let Some(first) = order.lines[..i].iter().position(|l| l.sku == line.sku) {
            return Err(invalid_order(format!(
                "line {n}: SKU {} is already on line {}; one line per SKU",
                line.sku,
                first + 1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::PlaceOrderLine;

    fn order_of(lines: &[(&str, u32)]) -> PlaceOrder {
        PlaceOrder {
            reference: None,
            lines: lines
                .iter()
                .map(|&(sku, quantity)| PlaceOrderLine { sku: sku.into(), quantity })
                .collect(),
        }
    }

    fn detail(error: &EdgeError) -> String {
        error.problem().detail.unwrap_or_default().to_owned()
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("")).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("1")).unwrap(), 1);
        assert_eq!(limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            assert_eq!(limit(Some(bad)).unwrap_err().code(), "invalid_parameter", "{bad}");
        }
    }

    #[test]
    fn cursors_pass_through_only_if_they_could_be_ours() {
        assert_eq!(cursor(None).unwrap(), None);
        assert_eq!(cursor(Some("")).unwrap(), None);
        assert_eq!(cursor(Some("bzoyMA")).unwrap(), Some("bzoyMA"));
        assert_eq!(cursor(Some("a_b-c==")).unwrap(), Some("a_b-c=="));
        for bad in ["a&limit=5", "a/b", "a+b", "ä", &"a".repeat(201)] {
            assert_eq!(cursor(Some(bad)).unwrap_err().code(), "invalid_cursor");
        }
    }

    #[test]
    fn good_orders_pass() {
        assert!(order(&order_of(&[("SKU-1", 1), ("SKU-2", 999)])).is_ok());
        let mut with_reference = order_of(&[("SKU-1", 1)]);
        with_reference.reference = Some("é".repeat(64));
        assert!(order(&with_reference).is_ok(), "64 characters, not bytes");
    }

    #[test]
    fn bad_orders_are_refused_with_the_reason() {
        let cases: [(PlaceOrder, &str); 6] = [
            (order_of(&[]), "1 to 50 lines"),
            (order_of(&[("SKU-1", 1); 51]), "this one has 51"),
            (order_of(&[("SKU-1", 1), ("SKU-2", 0)]), "line 2: quantity 0"),
            (order_of(&[("SKU-1", 1000)]), "line 1: quantity 1000"),
            (order_of(&[("../orders", 1)]), "line 1: `sku`"),
            (
                order_of(&[("SKU-1", 1), ("SKU-2", 1), ("SKU-1", 2)]),
                "line 3: SKU SKU-1 is already on line 1",
            ),
        ];
        for (bad, expected) in cases {
            let error = order(&bad).unwrap_err();
            assert_eq!(error.code(), "invalid_order");
            assert!(detail(&error).contains(expected), "{}", detail(&error));
        }
        let mut long = order_of(&[("SKU-1", 1)]);
        long.reference = Some("x".repeat(65));
        assert!(detail(&order(&long).unwrap_err()).contains("`reference`"));
    }
}
