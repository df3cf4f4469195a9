//! Payment's rules, apart from HTTP and storage: which methods the desk takes, and how a charge
//! or a refund the ledger refused is explained.

use crate::store::Balance;
use hms_client::contract::PaymentMethod;
use hms_client::models::Payment;
use hms_client::Money;
use hms_kit::Error;
use serde_json::json;

/// A live payment method (CASH, CARD, UPI), read in any case; legacy imports keep whatever
/// the old system recorded.
pub fn method(raw: &str) -> Result<PaymentMethod, Error> {
    PaymentMethod::live(raw)
        .ok_or_else(|| Error::validation("method", "method must be CASH, CARD or UPI"))
}

/// A legacy payment's method: a live one in any case, or whatever else the old system wrote
/// (a cheque, a bank transfer), kept as written with a warning. Only an empty one is refused.
pub fn legacy_method(raw: &str) -> Result<(PaymentMethod, Vec<String>), Error> {
    if let Some(m) = PaymentMethod::live(raw) {
        return Ok((m, Vec::new()));
    }
    let written = raw.trim();
    if written.is_empty() {
        return Err(Error::validation("method", "method is empty"));
    }
    Ok((
        PaymentMethod::Legacy(written.to_string()),
        vec![format!(
            "method '{written}' is not one HMS takes live (CASH, CARD, UPI); kept as written"
        )],
    ))
}

/// Why the ledger refused to capture `amount` on the bill as it now stands.
pub fn not_capturable(b: &Balance, amount: Money) -> Error {
    if b.status != "OPEN" || b.outstanding() <= 0 {
        let state = if b.status == "OPEN" {
            "paid"
        } else {
            b.status.as_str()
        };
        return Error::rule(
            "bill_not_payable",
            format!("bill {} is {state}; nothing is owed on it", b.bill_id),
        );
    }
    Error::rule(
        "overpayment",
        format!(
            "bill {} has {} outstanding; {amount} is more",
            b.bill_id,
            Money(b.outstanding())
        ),
    )
    .with_details(json!({ "outstanding": Money(b.outstanding()) }))
}

/// Why a refund of `amount` was refused: more than is left of the payment.
pub fn not_refundable(p: &Payment, amount: Money) -> Error {
    Error::rule(
        "refund_exceeds_paid",
        format!(
            "payment {} has {} left to refund; {amount} is more",
            p.payment_id,
            Money(p.amount.0 - p.refunded.0)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bill(total: i64, captured: i64, status: &str) -> Balance {
        Balance {
            bill_id: 7,
            patient_id: 1,
            total,
            captured,
            refunded: 0,
            status: status.into(),
        }
    }

    #[test]
    fn methods_are_read_in_any_case_and_nothing_else() {
        assert_eq!(method(" upi ").unwrap(), PaymentMethod::Upi);
        assert_eq!(method("Card").unwrap(), PaymentMethod::Card);
        assert_eq!(method("CHEQUE").unwrap_err().code, "validation_failed");
        let (m, warnings) = legacy_method(" Cheque ").unwrap();
        assert_eq!(
            (m, warnings.len()),
            (PaymentMethod::Legacy("Cheque".into()), 1)
        );
        assert_eq!(legacy_method("upi").unwrap(), (PaymentMethod::Upi, vec![]));
        assert!(legacy_method("  ").is_err());
    }

    #[test]
    fn a_refused_charge_says_whether_anything_is_owed() {
        assert_eq!(
            not_capturable(&bill(100, 100, "PAID"), Money(1)).code,
            "bill_not_payable"
        );
        assert_eq!(
            not_capturable(&bill(100, 0, "VOID"), Money(1)).code,
            "bill_not_payable"
        );
        let e = not_capturable(&bill(100, 40, "OPEN"), Money(61));
        assert_eq!(e.code, "overpayment");
        assert!(e.message.contains("0.60 outstanding"), "{}", e.message);
    }
}
