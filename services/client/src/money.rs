//! Money: an integer count of minor units (paise) inside, a two-place decimal string on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An amount in minor units. `Money(52500)` is `"525.00"` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);
    /// The smallest positive amount, one paisa.
    pub const MIN_POSITIVE: Money = Money(1);
    /// The largest amount any one HMS amount may be: 10,000,000,000.00 (₹1,000 crore). Every
    /// amount is checked against a bound where it enters, so a price × quantity, a bill's sum
    /// of lines and its tax all stay far inside `i64`, and checked arithmetic only ever
    /// refuses what slipped past a bound.
    pub const MAX: Money = Money(1_000_000_000_000);
    /// The largest unit price or consultation fee: 1,000,000.00 (₹10 lakh).
    pub const MAX_PRICE: Money = Money(100_000_000);

    pub fn minor_units(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `self × n` (a unit price times a quantity).
    pub fn checked_mul(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).map(Money)
    }

    /// `percent`% of this amount, rounded half-up to the paisa; `None` if out of range.
    pub fn checked_percent(self, percent: i64) -> Option<Money> {
        let x = i128::from(self.0) * i128::from(percent) + 50;
        i64::try_from(x.div_euclid(100)).ok().map(Money)
    }

    /// This amount if `min <= self <= max`, else why not, naming `field` and the bounds.
    pub fn within(self, field: &str, min: Money, max: Money) -> Result<Money, String> {
        if self < min || self > max {
            return Err(format!(
                "{field} must be between {min} and {max}, not {self}"
            ));
        }
        Ok(self)
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
            // At most 16 whole digits: every such amount fits the paise count (i64).
            .pattern(Some(r"^\s*-?[0-9]{1,16}(\.[0-9]{1,2})?\s*$"))
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
    fn bounds_and_checked_arithmetic() {
        assert!(Money(5)
            .within("amount", Money::MIN_POSITIVE, Money::MAX)
            .is_ok());
        let e = Money(0)
            .within("amount", Money::MIN_POSITIVE, Money::MAX)
            .unwrap_err();
        assert_eq!(
            e,
            "amount must be between 0.01 and 10000000000.00, not 0.00"
        );
        assert!(Money(i64::MAX).checked_add(Money(1)).is_none());
        assert!(Money(i64::MAX / 2 + 1).checked_mul(2).is_none());
        assert_eq!(Money(50_001).checked_percent(50), Some(Money(25_001)));
        assert_eq!(
            Money(i64::MAX).checked_percent(5),
            Some(Money(461_168_601_842_738_790))
        );
        assert!(Money(i64::MAX).checked_percent(200).is_none());
    }

    proptest::proptest! {
        /// Any two amounts within the bounds add, and any bounded price times the largest
        /// quantity a prescription can have multiplies, without overflow.
        #[test]
        fn bounded_amounts_never_overflow(a in 0i64..=Money::MAX.0, b in 0i64..=Money::MAX.0,
                                          p in 0i64..=Money::MAX_PRICE.0, q in 1i64..=27 * 365) {
            proptest::prop_assert!(Money(a).checked_add(Money(b)).is_some());
            let line = Money(p).checked_mul(q).unwrap();
            proptest::prop_assert!(line <= Money::MAX);
            proptest::prop_assert!(line.checked_percent(5).is_some());
        }

        /// Past the bounds, arithmetic says so instead of wrapping.
        #[test]
        fn overflow_is_reported(a in (i64::MAX / 2 + 1)..=i64::MAX) {
            proptest::prop_assert!(Money(a).checked_add(Money(a)).is_none());
            proptest::prop_assert!(Money(a).checked_mul(3).is_none());
        }
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for bad in ["", "abc", "1.234", "1e3", "1.", ".5", "1,00", "--1"] {
            assert!(bad.parse::<Money>().is_err(), "{bad} should be refused");
        }
    }
}
