//! The texts patients receive, free of I/O. Times are shown in the clinic's zone; money with
//! its currency.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use hms_client::contract::FeeDecision;
use hms_client::Money;

/// What a message needs to say about an appointment.
#[derive(Debug, Clone)]
pub struct AppointmentFacts<'a> {
    pub appointment_id: i64,
    pub doctor: &'a str,
    pub department: &'a str,
    pub slot_start: DateTime<Utc>,
    pub tz: Tz,
    pub currency: &'a str,
}

/// `Tue 01 Dec 2026, 09:00 IST`.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%a %d %b %Y, %H:%M %Z")
        .to_string()
}

/// `₹250.00` for INR, else `USD 250.00`.
pub fn money(m: Money, currency: &str) -> String {
    match currency {
        "INR" => format!("₹{m}"),
        c => format!("{c} {m}"),
    }
}

impl AppointmentFacts<'_> {
    fn when(&self) -> String {
        local_time(self.slot_start, self.tz)
    }

    pub fn booked(&self) -> String {
        format!(
            "Your appointment with {} ({}) is confirmed for {}. Reference #{}.",
            self.doctor,
            self.department,
            self.when(),
            self.appointment_id
        )
    }

    pub fn rescheduled(&self, previous: Option<DateTime<Utc>>) -> String {
        let was = previous
            .map(|p| format!(" (was {})", local_time(p, self.tz)))
            .unwrap_or_default();
        format!(
            "Your appointment #{} with {} ({}) is moved to {}{}.",
            self.appointment_id,
            self.doctor,
            self.department,
            self.when(),
            was
        )
    }

    /// `fee_decision` `half`: half the consultation fee is billed; `none`: nothing is, and
    /// anything paid is refunded.
    pub fn cancelled(&self, fee_decision: FeeDecision, consultation_fee: Money) -> String {
        let fee = match fee_decision {
            // Half, rounded half up to the paisa as billing rounds it.
            FeeDecision::Half => format!(
                "As it was cancelled within 2 hours of the start, a fee of {} (50% of the consultation fee, plus tax) applies.",
                money(
                    consultation_fee.checked_percent(50).unwrap_or(consultation_fee),
                    self.currency
                )
            ),
            _ => "No fee applies; anything already paid will be refunded in full.".to_string(),
        };
        format!(
            "Your appointment #{} with {} on {} is cancelled. {fee}",
            self.appointment_id,
            self.doctor,
            self.when()
        )
    }

    pub fn no_show(&self, consultation_fee: Money) -> String {
        format!(
            "We missed you at your appointment #{} with {} on {}. A no-show fee of {} (plus tax) applies. Call us to book again.",
            self.appointment_id,
            self.doctor,
            self.when(),
            money(consultation_fee, self.currency)
        )
    }

    pub fn reminder(&self, offset_minutes: i64) -> String {
        let ahead = if offset_minutes % 60 == 0 {
            format!("{} hours", offset_minutes / 60)
        } else {
            format!("{offset_minutes} minutes")
        };
        format!(
            "Reminder: your appointment with {} ({}) is on {} (in {ahead}). Reference #{}.",
            self.doctor,
            self.department,
            self.when(),
            self.appointment_id
        )
    }
}

/// A bill for a patient: `bill.created`.
pub fn bill_created(bill_id: i64, total: Money, currency: &str) -> String {
    format!(
        "Your bill #{bill_id} of {} is ready.",
        money(total, currency)
    )
}

/// `payment.captured`.
pub fn payment_received(bill_id: i64, amount: Money, currency: &str) -> String {
    format!(
        "We received your payment of {} for bill #{bill_id}. Thank you.",
        money(amount, currency)
    )
}

/// `payment.refunded`.
pub fn refund_issued(bill_id: i64, amount: Money, currency: &str) -> String {
    format!(
        "A refund of {} for bill #{bill_id} is on its way.",
        money(amount, currency)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> AppointmentFacts<'static> {
        AppointmentFacts {
            appointment_id: 7,
            doctor: "Dr. Aditya Iyer",
            department: "Cardiology",
            slot_start: "2026-12-01T03:30:00Z".parse().unwrap(),
            tz: chrono_tz::Asia::Kolkata,
            currency: "INR",
        }
    }

    #[test]
    fn messages_say_who_where_and_when_in_clinic_time() {
        assert_eq!(
            facts().booked(),
            "Your appointment with Dr. Aditya Iyer (Cardiology) is confirmed for Tue 01 Dec 2026, 09:00 IST. Reference #7."
        );
        assert!(facts()
            .cancelled(FeeDecision::Half, Money(50_000))
            .contains("₹250.00"));
        assert!(facts()
            .cancelled(FeeDecision::None, Money(50_000))
            .contains("refunded in full"));
        assert!(facts().no_show(Money(50_000)).contains("₹500.00"));
        assert!(facts().reminder(1440).contains("in 24 hours"));
        assert!(facts().reminder(90).contains("in 90 minutes"));
        assert_eq!(money(Money(1234), "USD"), "USD 12.34");
    }
}
