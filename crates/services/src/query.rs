//! Query-string parsing shared by the HTTP services, with problem+json errors that say which
//! parameter was wrong and what would have been accepted.

use std::ops::RangeInclusive;

use axum::extract::rejection::QueryRejection;

use crate::problem::Problem;

/// The most ids a batch query (`ids=…`) may name.
pub(crate) const MAX_IDS: usize = 100;

/// Maps axum's plain-text query rejection to a problem.
// By value so it fits `map_err` directly.
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn rejected(rejection: QueryRejection) -> Problem {
    Problem::invalid_parameter(rejection.body_text())
}

/// An integer parameter within `range`, or `default` when absent.
pub(crate) fn int_in(
    name: &str,
    value: Option<&str>,
    default: u32,
    range: RangeInclusive<u32>,
) -> Result<u32, Problem> {
    let Some(raw) = value else {
        return Ok(default);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(Problem::invalid_parameter(format!(
            "{name} must be an integer in {}..={}, got {raw:?}",
            range.start(),
            range.end()
        ))),
    }
}

/// A comma-separated id list (`ids=a,b,c`) of at most [`MAX_IDS`] entries; empty entries are
/// skipped so `ids=` means "none" rather than an error.
pub(crate) fn id_list(raw: &str) -> Result<Vec<&str>, Problem> {
    let ids: Vec<&str> = raw.split(',').map(str::trim).filter(|id| !id.is_empty()).collect();
    if ids.len() > MAX_IDS {
        return Err(Problem::invalid_parameter(format!(
            "ids names {} ids, at most {MAX_IDS} are allowed",
            ids.len()
        )));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_in_defaults_and_bounds() {
        assert_eq!(int_in("limit", None, 20, 1..=100), Ok(20));
        assert_eq!(int_in("limit", Some("100"), 20, 1..=100), Ok(100));
        assert!(int_in("limit", Some("0"), 20, 1..=100).is_err());
        assert!(int_in("limit", Some("101"), 20, 1..=100).is_err());
        let err = int_in("limit", Some("abc"), 20, 1..=100).expect_err("not a number");
        assert!(err.detail.contains("limit"), "{}", err.detail);
    }

    #[test]
    fn id_list_skips_empty_and_caps() {
        assert_eq!(id_list("a, b,,c").expect("ok"), ["a", "b", "c"]);
        assert!(id_list("").expect("ok").is_empty());
        let many = vec!["p"; MAX_IDS + 1].join(",");
        assert!(id_list(&many).is_err());
    }
}
