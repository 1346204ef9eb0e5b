//! Checks for values a gateway copies from a client request into an upstream request.
//!
//! An id taken from the path ends up inside an upstream URL: `../orders` or an encoded `/` must
//! never let a client reach another upstream endpoint than the one the gateway meant to call.

use crate::error::EdgeError;

/// The longest id accepted.
const MAX_ID_LEN: usize = 64;

/// Accepts an identifier (a product id, a SKU, an order id) made of letters, digits, `-` and
/// `_`; anything else is a 400 `invalid_id`.
pub fn id<'a>(what: &str, value: &'a str) -> Result<&'a str, EdgeError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(value)
    } else {
        Err(EdgeError::invalid(
            "invalid_id",
            format!("`{what}` must be 1–{MAX_ID_LEN} letters, digits, `-` or `_`"),
        ))
    }
}

/// Splits a comma-separated list of ids (`?skus=a,b`), checking each, dropping duplicates and
/// refusing more than `max`.
pub fn id_list<'a>(what: &str, raw: &'a str, max: usize) -> Result<Vec<&'a str>, EdgeError> {
    let mut out: Vec<&str> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = id(what, item)?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if out.is_empty() {
        return Err(EdgeError::invalid("invalid_parameter", format!("`{what}` names nothing")));
    }
    if out.len() > max {
        return Err(EdgeError::invalid(
            "invalid_parameter",
            format!("`{what}` names {} items; at most {max} are allowed", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_change_the_upstream_path_are_refused() {
        for bad in ["", "../orders", "a/b", "a?b=c", "a%2Fb", "a b", &"x".repeat(65)] {
            assert_eq!(id("id", bad).unwrap_err().code(), "invalid_id", "{bad:?}");
        }
        assert_eq!(id("id", "p-00042").unwrap(), "p-00042");
        assert_eq!(id("sku", "SKU_1").unwrap(), "SKU_1");
    }

    #[test]
    fn lists_are_deduplicated_and_bounded() {
        assert_eq!(id_list("skus", "a, b,a,,c", 3).unwrap(), ["a", "b", "c"]);
        assert!(id_list("skus", "a,b,c,d", 3).is_err());
        assert!(id_list("skus", " , ", 3).is_err());
        assert!(id_list("skus", "a,../x", 3).is_err());
    }
}
