//! Money as every service sends it — integer minor units plus an ISO 4217 code — and its one
//! display format, so every client sees `€129.99` the same way.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in minor units (cents), never a float.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// The amount in the currency's minor unit.
    pub amount_minor: i64,
    /// The ISO 4217 currency code, e.g. `EUR`.
    pub currency: String,
}

impl fmt::Display for Money {
    /// `€129.99`, `$5.00`, `£1,234.50`; other currencies as `1,234.50 CHF`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let minor = self.amount_minor.unsigned_abs();
        let (units, cents) = (group_thousands(minor / 100), minor % 100);
        match self.currency.as_str() {
            "EUR" => write!(f, "{sign}€{units}.{cents:02}"),
            "USD" => write!(f, "{sign}${units}.{cents:02}"),
            "GBP" => write!(f, "{sign}£{units}.{cents:02}"),
            other => write!(f, "{sign}{units}.{cents:02} {other}"),
        }
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount_minor: i64, currency: &str) -> String {
        Money { amount_minor, currency: currency.to_owned() }.to_string()
    }

    #[test]
    fn formats_for_display() {
        assert_eq!(money(12999, "EUR"), "€129.99");
        assert_eq!(money(500, "USD"), "$5.00");
        assert_eq!(money(123_450, "GBP"), "£1,234.50");
        assert_eq!(money(100_000_001, "CHF"), "1,000,000.01 CHF");
        assert_eq!(money(-5, "EUR"), "-€0.05");
    }
}
