//! Money rules, free of I/O. Amounts are integer minor units (paise).

/// Tax on the subtotal, in percent.
pub const TAX_PERCENT: i64 = 5;

/// `percent`% of `amount`, rounded half-up to the minor unit (amounts are never negative).
pub fn percent_half_up(amount: i64, percent: i64) -> i64 {
    (amount * percent + 50).div_euclid(100)
}

/// 5% tax of a subtotal, half-up.
pub fn tax(subtotal: i64) -> i64 {
    percent_half_up(subtotal, TAX_PERCENT)
}

/// Subtotal, tax and total of a bill's line amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

pub fn totals(line_amounts: &[i64]) -> Totals {
    let subtotal: i64 = line_amounts.iter().sum();
    let tax = tax(subtotal);
    Totals {
        subtotal,
        tax,
        total: subtotal + tax,
    }
}

/// The fee a cancellation or no-show decision bills: `half` → 50% (half-up), `full` → 100%.
pub fn fee(consultation_fee: i64, decision: &str) -> Option<i64> {
    match decision {
        "half" => Some(percent_half_up(consultation_fee, 50)),
        "full" => Some(consultation_fee),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples_round_half_up_to_the_paisa() {
        assert_eq!(tax(50_000), 2_500);
        assert_eq!(tax(69_850), 3_493, "34.925 → 34.93");
        assert_eq!(tax(69_830), 3_492, "34.915 → 34.92");
        assert_eq!(tax(69_810), 3_491, "34.905 → 34.91");
        assert_eq!(tax(1), 0, "0.05 paise → 0");
        assert_eq!(tax(10), 1, "0.5 paise → 1");
        assert_eq!(
            totals(&[50_000, 2_000, 17_850]),
            Totals {
                subtotal: 69_850,
                tax: 3_493,
                total: 73_343
            }
        );
        assert_eq!(fee(50_000, "half"), Some(25_000));
        assert_eq!(fee(50_001, "half"), Some(25_001), "250.005 → 250.01");
        assert_eq!(fee(50_000, "full"), Some(50_000));
        assert_eq!(fee(50_000, "none"), None);
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
        fn tax_is_the_nearest_paisa_ties_up(subtotal in 0i64..10_000_000_000) {
            let t = tax(subtotal);
            let exact_x100 = subtotal * 5; // the exact tax, in hundredths of a paisa
            prop_assert!((t * 100 - exact_x100).abs() <= 50);
            if (exact_x100 % 100) == 50 { prop_assert_eq!(t * 100, exact_x100 + 50); }
        }

        /// The total is the subtotal plus its tax, and never less than the lines.
        #[test]
        fn totals_add_up(lines in proptest::collection::vec(0i64..100_000_000, 0..20)) {
            let t = totals(&lines);
            prop_assert_eq!(t.subtotal, lines.iter().sum::<i64>());
            prop_assert_eq!(t.total, t.subtotal + tax(t.subtotal));
            prop_assert!(t.total >= t.subtotal);
        }
    }
}
