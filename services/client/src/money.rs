//! Money: an integer count of minor units (paise) inside, a two-place decimal string on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An amount in minor units. `Money(52500)` is `"525.00"` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub i64);

impl Money {
    pub fn minor_units(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Why a money string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an amount: use a decimal with at most two places, e.g. \"525.00\"")]
pub struct MoneyParseError(pub String);

impl FromStr for Money {
    type Err = MoneyParseError;

    /// Accepts `525`, `525.5` and `525.00`; refuses more than two places, exponents, blanks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MoneyParseError(s.to_string());
        let t = s.trim();
        let (neg, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 2
            || (digits.contains('.') && frac.is_empty())
        {
            return Err(err());
        }
        let whole: i64 = whole.parse().map_err(|_| err())?;
        let frac: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| err())? * 10,
            _ => frac.parse().map_err(|_| err())?,
        };
        let minor = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac))
            .ok_or_else(err)?;
        Ok(Money(if neg { -minor } else { minor }))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(r"^-?[0-9]+(\.[0-9]{1,2})?$"))
            .examples([serde_json::json!("525.00")])
            .description(Some("Amount as a decimal string with two places"))
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_two_places() {
        assert_eq!("525".parse::<Money>().unwrap(), Money(52500));
        assert_eq!("525.5".parse::<Money>().unwrap(), Money(52550));
        assert_eq!("0.05".parse::<Money>().unwrap(), Money(5));
        assert_eq!("-1.20".parse::<Money>().unwrap(), Money(-120));
        assert_eq!(Money(52500).to_string(), "525.00");
        assert_eq!(Money(-5).to_string(), "-0.05");
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for bad in ["", "abc", "1.234", "1e3", "1.", ".5", "1,00", "--1"] {
            assert!(bad.parse::<Money>().is_err(), "{bad} should be refused");
        }
    }
}
