//! Prescription rules, free of I/O: dosage, days, quantity, and whether an appointment allows
//! a prescription.

use hms_client::models::Appointment;
use hms_kit::Error;

/// Longest course one prescription may cover.
pub const MAX_DAYS: i64 = 365;

/// A `morning-noon-night` dosage such as `1-0-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dosage {
    pub morning: u8,
    pub noon: u8,
    pub night: u8,
}

impl Dosage {
    /// `1-0-1`, `0-1-1`, `1-1-1`, `2-0-2`…: three whole numbers 0–9, at least one dose a day.
    pub fn parse(s: &str) -> Result<Dosage, Error> {
        let bad = || {
            Error::validation(
                "dosage",
                format!("dosage '{s}' must be morning-noon-night doses, e.g. 1-0-1"),
            )
        };
        let parts: Vec<&str> = s.trim().split('-').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let n = |p: &str| -> Result<u8, Error> {
            if p.len() == 1 && p.as_bytes()[0].is_ascii_digit() {
                Ok(p.as_bytes()[0] - b'0')
            } else {
                Err(bad())
            }
        };
        let d = Dosage {
            morning: n(parts[0])?,
            noon: n(parts[1])?,
            night: n(parts[2])?,
        };
        if d.per_day() == 0 {
            return Err(Error::validation(
                "dosage",
                "a dosage needs at least one dose a day",
            ));
        }
        Ok(d)
    }

    pub fn per_day(self) -> i64 {
        i64::from(self.morning) + i64::from(self.noon) + i64::from(self.night)
    }
}

impl std::fmt::Display for Dosage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.morning, self.noon, self.night)
    }
}

/// Days of the course: 1 to 365.
pub fn check_days(days: i64) -> Result<i64, Error> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::validation(
            "days",
            format!("days must be between 1 and {MAX_DAYS}"),
        ));
    }
    Ok(days)
}

/// Units to dispense: doses per day × days.
pub fn quantity(dosage: Dosage, days: i64) -> i64 {
    dosage.per_day() * days
}

/// The appointment a legacy prescription was written at, as far as its checks need it.
pub struct Visit<'a> {
    pub appointment_id: i64,
    pub status: &'a str,
    pub patient_id: i64,
    pub doctor_id: i64,
}

/// What the old system wrote as history, and what today's rules would have said of it: each
/// difference is a warning, never a refusal (history is not re-judged). An unreadable dosage
/// is kept as written and counted as one dose a day.
pub fn legacy_warnings(
    a: &Visit<'_>,
    patient_id: i64,
    doctor_id: i64,
    dosage: &str,
    days: i64,
) -> (i64, Vec<String>) {
    let mut warnings = Vec::new();
    if matches!(a.status, "CANCELLED" | "NO_SHOW") {
        warnings.push(format!(
            "appointment {} is {}; kept as history",
            a.appointment_id, a.status
        ));
    }
    if a.patient_id != patient_id {
        warnings.push(format!(
            "patient {patient_id} differs from appointment {}'s patient {}; kept as written",
            a.appointment_id, a.patient_id
        ));
    }
    if a.doctor_id != doctor_id {
        warnings.push(format!(
            "doctor {doctor_id} differs from appointment {}'s doctor {}; kept as written",
            a.appointment_id, a.doctor_id
        ));
    }
    let quantity = match Dosage::parse(dosage) {
        Ok(d) => quantity(d, days),
        Err(_) => {
            warnings.push(format!(
                "dosage '{}' is not morning-noon-night; kept as written, counted as one dose a day",
                dosage.trim()
            ));
            days
        }
    };
    (quantity, warnings)
}

/// A prescription needs an appointment that exists, is not CANCELLED or NO_SHOW, and is of
/// the same patient and doctor.
pub fn check_appointment(a: &Appointment, patient_id: i64, doctor_id: i64) -> Result<(), Error> {
    let refuse = |why: String| Error::rule("appointment_required", why);
    if matches!(a.status.as_str(), "CANCELLED" | "NO_SHOW") {
        return Err(refuse(format!(
            "appointment {} is {}; a prescription needs an appointment that took place or is scheduled",
            a.appointment_id, a.status
        )));
    }
    if a.patient_id != patient_id {
        return Err(refuse(format!(
            "appointment {} is not patient {patient_id}'s",
            a.appointment_id
        )));
    }
    if a.doctor_id != doctor_id {
        return Err(refuse(format!(
            "appointment {} is not with doctor {doctor_id}",
            a.appointment_id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dosages_parse_and_quantities_follow() {
        let d = Dosage::parse("1-0-1").unwrap();
        assert_eq!((d.per_day(), quantity(d, 5)), (2, 10));
        assert_eq!(quantity(Dosage::parse("1-1-1").unwrap(), 7), 21);
        assert_eq!(Dosage::parse(" 2-0-2 ").unwrap().to_string(), "2-0-2");
        for bad in [
            "", "1-0", "1-0-1-1", "a-0-1", "10-0-1", "0-0-0", "1/0/1", "-1-0-1",
        ] {
            assert!(Dosage::parse(bad).is_err(), "{bad}");
        }
        assert!(check_days(0).is_err() && check_days(366).is_err() && check_days(1).is_ok());
    }
}
