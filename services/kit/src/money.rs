//! Amounts where they enter a service: each checked against its bound, and the refusal a 400
//! naming the field and the bound. The arithmetic itself is `hms_client::Money`'s, checked.

use crate::error::Error;
use hms_client::Money;

/// `m` if `min <= m <= max`; else 400 `validation_failed` naming `field` and the bounds.
pub fn bounded(field: &str, m: Money, min: Money, max: Money) -> Result<Money, Error> {
    m.within(field, min, max)
        .map_err(|msg| Error::validation(field, msg))
}

/// A sum of money actually paid, refunded or credited: 0.01 up to [`Money::MAX`].
pub fn positive(field: &str, m: Money) -> Result<Money, Error> {
    bounded(field, m, Money::MIN_POSITIVE, Money::MAX)
}

/// A price or fee: 0.00 up to [`Money::MAX_PRICE`].
pub fn price(field: &str, m: Money) -> Result<Money, Error> {
    bounded(field, m, Money::ZERO, Money::MAX_PRICE)
}

/// The credit note a refund issues: its amount, except what only returns an overpayment (a
/// bill credited below what was paid owes nothing more, so that part is not credited again).
/// `balance_after` is the bill's balance with the refund counted and no new credit. Billing
/// issues the credit note; the payment service lowers its copy of the amount due by the same.
pub fn refund_credit(refund: i64, balance_after: i64) -> i64 {
    refund.min(balance_after).max(0)
}

/// Arithmetic that left the bounds: a bug or a bound missed at entry, never silently wrapped.
pub fn overflow(what: &str) -> Error {
    Error::rule(
        "amount_out_of_range",
        format!("{what} would exceed {}; refused", Money::MAX),
    )
}
