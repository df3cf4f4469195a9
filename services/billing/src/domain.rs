//! Money rules, free of I/O. Amounts are integer minor units (paise); every operation is
//! checked, and one that leaves the range is refused (`amount_out_of_range`), never wrapped.

use hms_client::contract::FeeDecision;
use hms_client::Money;
use hms_kit::money::overflow;
use hms_kit::Error;

/// Tax on the subtotal, in percent.
pub const TAX_PERCENT: i64 = 5;

/// `percent`% of `amount`, rounded half-up to the minor unit (amounts are never negative).
pub fn percent_half_up(amount: i64, percent: i64) -> Result<i64, Error> {
    Money(amount)
        .checked_percent(percent)
        .map(|m| m.0)
        .ok_or_else(|| overflow("a percentage of the amount"))
}

/// 5% tax of a subtotal, half-up.
pub fn tax(subtotal: i64) -> Result<i64, Error> {
    percent_half_up(subtotal, TAX_PERCENT)
}

/// A line's amount: quantity × unit price, within [`Money::MAX`].
pub fn line_amount(quantity: i64, unit_price: i64) -> Result<i64, Error> {
    Money(unit_price)
        .checked_mul(quantity)
        .filter(|m| *m <= Money::MAX)
        .map(|m| m.0)
        .ok_or_else(|| overflow("the line's amount"))
}

/// Subtotal, tax and total of a bill's line amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

pub fn totals(line_amounts: &[i64]) -> Result<Totals, Error> {
    let subtotal = line_amounts
        .iter()
        .try_fold(0i64, |s, a| s.checked_add(*a))
        .ok_or_else(|| overflow("the bill's subtotal"))?;
    with_tax(subtotal)
}

/// Subtotal, its tax and the total, checked: a total beyond [`Money::MAX`] is refused.
pub fn with_tax(subtotal: i64) -> Result<Totals, Error> {
    let tax = tax(subtotal)?;
    let total = subtotal
        .checked_add(tax)
        .filter(|t| *t <= Money::MAX.0)
        .ok_or_else(|| overflow("the bill's total"))?;
    Ok(Totals {
        subtotal,
        tax,
        total,
    })
}

/// The fee a cancellation or no-show decision bills: `half` → 50% (half-up), `full` → 100%.
pub fn fee(consultation_fee: i64, decision: FeeDecision) -> Result<Option<i64>, Error> {
    Ok(match decision {
        FeeDecision::Half => Some(percent_half_up(consultation_fee, 50)?),
        FeeDecision::Full => Some(consultation_fee),
        FeeDecision::None => None,
    })
}

/// A bill's state, derived from its totals (never from the order events arrived in).
pub fn status(void: bool, amount_due: i64, paid: i64, refunded: i64) -> &'static str {
    if void {
        "VOID"
    } else if refunded > 0 && refunded >= paid {
        "REFUNDED"
    } else if refunded > 0 {
        "PARTIALLY_REFUNDED"
    } else if paid >= amount_due {
        // Fully paid, or nothing owed (credited down to zero).
        "PAID"
    } else {
        "OPEN"
    }
}

/// What an imported bill's figures are, given its legacy status and what has been recorded
/// against it since: the legacy amount is the total (tax was the old system's business); a
/// legacy PAID (or refunded) bill counts as paid in full even if its payments never came in.
/// Its legacy status stands — legacy payments are history and change nothing — until live
/// money moves on it (`live_moved`); from then on the live rule settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legacy {
    pub paid: i64,
    pub refunded: i64,
    pub status: &'static str,
}

pub fn legacy(
    legacy_status: &str,
    total: i64,
    credits: i64,
    paid: i64,
    refunded: i64,
    live_moved: bool,
) -> Legacy {
    let settled = matches!(legacy_status, "PAID" | "PARTIALLY_REFUNDED" | "REFUNDED");
    let paid = if settled { paid.max(total) } else { paid };
    let refunded = if legacy_status == "REFUNDED" {
        refunded.max(paid)
    } else {
        refunded
    };
    let status = match legacy_status {
        "VOID" => "VOID",
        _ if live_moved => status(false, total - credits, paid, refunded),
        "OPEN" => "OPEN",
        "PAID" => "PAID",
        "PARTIALLY_REFUNDED" => "PARTIALLY_REFUNDED",
        _ => "REFUNDED",
    };
    Legacy {
        paid,
        refunded: refunded.min(paid),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legacy_bills_keep_their_figures_and_status() {
        let paid_in_full = Legacy {
            paid: 75_050,
            refunded: 0,
            status: "PAID",
        };
        // A PAID bill stays PAID and paid in full, with or without its payments.
        assert_eq!(legacy("PAID", 75_050, 0, 0, 0, false), paid_in_full);
        assert_eq!(legacy("PAID", 75_050, 0, 75_050, 0, false), paid_in_full);
        // Legacy payments change no status; live ones settle an OPEN bill by the live rule.
        assert_eq!(legacy("OPEN", 20_000, 0, 20_000, 0, false).status, "OPEN");
        assert_eq!(legacy("OPEN", 20_000, 0, 15_000, 0, true).status, "OPEN");
        assert_eq!(legacy("OPEN", 20_000, 0, 20_000, 0, true).status, "PAID");
        // A live refund on a legacy PAID bill moves it on.
        let refunded = legacy("PAID", 20_000, 0, 20_000, 5_000, true);
        assert_eq!(refunded.status, "PARTIALLY_REFUNDED");
        let all_back = legacy("REFUNDED", 20_000, 0, 0, 0, false);
        assert_eq!(
            (all_back.paid, all_back.refunded, all_back.status),
            (20_000, 20_000, "REFUNDED")
        );
        assert_eq!(legacy("VOID", 20_000, 0, 0, 0, true).status, "VOID");
    }

    #[test]
    fn examples_round_half_up_to_the_paisa() {
        let tax = |s| tax(s).unwrap();
        let fee = |f, d| fee(f, d).unwrap();
        assert_eq!(tax(50_000), 2_500);
        assert_eq!(tax(69_850), 3_493, "34.925 → 34.93");
        assert_eq!(tax(69_830), 3_492, "34.915 → 34.92");
        assert_eq!(tax(69_810), 3_491, "34.905 → 34.91");
        assert_eq!(tax(1), 0, "0.05 paise → 0");
        assert_eq!(tax(10), 1, "0.5 paise → 1");
        assert_eq!(
            totals(&[50_000, 2_000, 17_850]).unwrap(),
            Totals {
                subtotal: 69_850,
                tax: 3_493,
                total: 73_343
            }
        );
        assert_eq!(fee(50_000, FeeDecision::Half), Some(25_000));
        assert_eq!(
            fee(50_001, FeeDecision::Half),
            Some(25_001),
            "250.005 → 250.01"
        );
        assert_eq!(fee(50_000, FeeDecision::Full), Some(50_000));
        assert_eq!(fee(50_000, FeeDecision::None), None);
    }

    #[test]
    fn what_overflows_is_refused_not_wrapped() {
        use hms_kit::money::refund_credit;
        // The case: 46116860184273880.04 × 4 wrapped to 4.00.
        assert_eq!(
            line_amount(4, 4_611_686_018_427_388_004).unwrap_err().code,
            "amount_out_of_range"
        );
        assert!(totals(&[i64::MAX, 1]).is_err());
        assert!(
            with_tax(Money::MAX.0).is_err(),
            "tax on the largest amount passes the bound"
        );
        assert!(with_tax(Money::MAX.0 * 100 / 105).is_ok());
        assert_eq!(
            refund_credit(4_600, 4_600),
            4_600,
            "a refund on a paid bill is credited whole"
        );
        assert_eq!(
            refund_credit(4_600, 0),
            0,
            "returning an overpayment credits nothing"
        );
        assert_eq!(refund_credit(4_600, 1_000), 1_000);
        assert_eq!(refund_credit(4_600, -500), 0);
    }

    #[test]
    fn status_follows_the_totals() {
        assert_eq!(status(false, 1000, 0, 0), "OPEN");
        assert_eq!(status(false, 1000, 400, 0), "OPEN");
        assert_eq!(status(false, 1000, 1000, 0), "PAID");
        assert_eq!(status(false, 1000, 1000, 300), "PARTIALLY_REFUNDED");
        assert_eq!(status(false, 1000, 1000, 1000), "REFUNDED");
        assert_eq!(status(true, 1000, 0, 0), "VOID");
    }

    proptest! {
        /// Half-up rounding: the tax is within half a paisa of the exact 5%, and ties go up.
        #[test]
        fn tax_is_the_nearest_paisa_ties_up(subtotal in 0i64..=Money::MAX.0) {
            let t = tax(subtotal).unwrap();
            let exact_x100 = subtotal * 5; // the exact tax, in hundredths of a paisa
            prop_assert!((t * 100 - exact_x100).abs() <= 50);
            if (exact_x100 % 100) == 50 { prop_assert_eq!(t * 100, exact_x100 + 50); }
        }

        /// The total is the subtotal plus its tax, and never less than the lines.
        #[test]
        fn totals_add_up(lines in proptest::collection::vec(0i64..100_000_000, 0..20)) {
            let t = totals(&lines).unwrap();
            prop_assert_eq!(t.subtotal, lines.iter().sum::<i64>());
            prop_assert_eq!(t.total, t.subtotal + tax(t.subtotal).unwrap());
            prop_assert!(t.total >= t.subtotal);
        }

        /// Any line of bounded price and quantity has an amount; any sum either fits under
        /// the bound or is refused, never wrapped.
        #[test]
        fn bounded_lines_always_price(q in 1i64..=9_855, p in 0i64..=Money::MAX_PRICE.0,
                                       lines in proptest::collection::vec(0i64..=i64::MAX, 0..4)) {
            prop_assert!(line_amount(q, p).is_ok());
            match totals(&lines) {
                Ok(t) => prop_assert!(t.total <= Money::MAX.0 && t.total >= t.subtotal),
                Err(e) => prop_assert_eq!(e.code, "amount_out_of_range"),
            }
        }
    }
}
