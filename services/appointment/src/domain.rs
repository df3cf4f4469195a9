//! Appointment rules, free of I/O: what a bookable slot is, the state machine, fees and
//! time limits. Every function takes "now" as an argument; the service passes its clock.

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use hms_client::models::DoctorSchedule;
use hms_kit::config::Config;
use hms_kit::Error;
use std::fmt;
use std::str::FromStr;

/// Length of a standard slot.
pub const SLOT_MINUTES: i64 = 30;
/// Most reschedules of one appointment (also a CHECK in the schema).
pub const MAX_RESCHEDULES: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Scheduled,
    Cancelled,
    NoShow,
    Completed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "SCHEDULED",
            Status::Cancelled => "CANCELLED",
            Status::NoShow => "NO_SHOW",
            Status::Completed => "COMPLETED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_uppercase().as_str() {
            "SCHEDULED" => Ok(Status::Scheduled),
            "CANCELLED" => Ok(Status::Cancelled),
            "NO_SHOW" => Ok(Status::NoShow),
            "COMPLETED" => Ok(Status::Completed),
            _ => Err(Error::validation(
                "status",
                "status must be SCHEDULED, CANCELLED, NO_SHOW or COMPLETED",
            )),
        }
    }
}

/// What can happen to an appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reschedule,
    Cancel,
    NoShow,
    Complete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reschedule => "reschedule",
            Action::Cancel => "cancel",
            Action::NoShow => "no-show",
            Action::Complete => "complete",
        }
    }

    /// The state an action leads to; every action starts from `SCHEDULED`.
    pub fn target(self) -> Status {
        match self {
            Action::Reschedule => Status::Scheduled,
            Action::Cancel => Status::Cancelled,
            Action::NoShow => Status::NoShow,
            Action::Complete => Status::Completed,
        }
    }

    /// The event an action announces.
    pub fn event_type(self) -> &'static str {
        match self {
            Action::Reschedule => "appointment.rescheduled",
            Action::Cancel => "appointment.cancelled",
            Action::NoShow => "appointment.no_show",
            Action::Complete => "appointment.completed",
        }
    }
}

/// The state machine: every action is legal only from `SCHEDULED`.
pub fn allowed(from: Status, _action: Action) -> bool {
    from == Status::Scheduled
}

/// 409 `invalid_transition`, saying what was attempted from which state.
pub fn invalid_transition(from: Status, action: Action) -> Error {
    Error::conflict(
        "invalid_transition",
        format!("cannot {} an appointment that is {from}", action.as_str()),
    )
    .with_details(serde_json::json!({ "status": from.as_str(), "action": action.as_str() }))
}

/// The fee a cancellation or no-show carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeDecision {
    None,
    Half,
    Full,
}

impl FeeDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            FeeDecision::None => "none",
            FeeDecision::Half => "half",
            FeeDecision::Full => "full",
        }
    }
}

/// A requested slot that passed every rule that needs no other service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotChoice {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The clinic-local date (what the daily cap counts).
    pub day: NaiveDate,
}

/// The configured rules.
#[derive(Debug, Clone)]
pub struct Rules {
    pub tz: Tz,
    /// Clinic hours, clinic-local minutes after midnight.
    pub open: u32,
    pub close: u32,
    pub lead: Duration,
    /// The furthest ahead a slot may start.
    pub horizon: Duration,
    pub daily_cap: i64,
    pub fee_window: Duration,
    pub no_show_grace: Duration,
    pub reschedule_cutoff: Duration,
}

impl Rules {
    pub fn from_config(c: &Config) -> Self {
        let (open, close) = c.clinic_hours();
        Rules {
            tz: c.clinic_tz(),
            open,
            close,
            lead: Duration::minutes(c.booking_lead_minutes),
            horizon: Duration::days(c.booking_horizon_days),
            daily_cap: c.daily_cap,
            fee_window: Duration::minutes(c.cancellation_fee_window_minutes),
            no_show_grace: Duration::minutes(c.no_show_grace_minutes),
            reschedule_cutoff: Duration::minutes(c.reschedule_cutoff_minutes),
        }
    }

    /// A standard slot (30 minutes from :00 or :30), inside clinic hours in the clinic's zone,
    /// at least the lead time ahead.
    pub fn check_slot(
        &self,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<SlotChoice, Error> {
        let standard_end = start + Duration::minutes(SLOT_MINUTES);
        let local = start.with_timezone(&self.tz);
        if start.second() != 0
            || start.nanosecond() != 0
            || !local.minute().is_multiple_of(30)
            || end.is_some_and(|e| e != standard_end)
        {
            return Err(Error::rule(
                "slot_not_standard",
                "a slot is 30 minutes starting on :00 or :30 (slot_end = slot_start + 30 min)",
            ));
        }
        let local_end = standard_end.with_timezone(&self.tz);
        let minute = |t: chrono::DateTime<Tz>| t.hour() * 60 + t.minute();
        let end_minute = if local_end.date_naive() != local.date_naive() {
            24 * 60
        } else {
            minute(local_end)
        };
        if minute(local) < self.open || end_minute > self.close {
            return Err(Error::rule(
                "outside_clinic_hours",
                format!(
                    "the clinic is open {:02}:{:02}–{:02}:{:02} ({}); that slot is at {}",
                    self.open / 60,
                    self.open % 60,
                    self.close / 60,
                    self.close % 60,
                    self.tz,
                    local.format("%H:%M")
                ),
            ));
        }
        if start < now + self.lead {
            return Err(Error::rule(
                "lead_time",
                format!(
                    "appointments must be booked at least {} minutes ahead",
                    self.lead.num_minutes()
                ),
            ));
        }
        if start > now + self.horizon {
            return Err(Error::rule(
                "too_far_ahead",
                format!(
                    "appointments can be booked at most {} days ahead (until {})",
                    self.horizon.num_days(),
                    (now + self.horizon)
                        .with_timezone(&self.tz)
                        .format("%Y-%m-%d")
                ),
            ));
        }
        Ok(SlotChoice {
            start,
            end: standard_end,
            day: local.date_naive(),
        })
    }

    /// The latest start a cancellation may have to carry the 50% fee: `now + window`.
    pub fn fee_threshold(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.fee_window
    }

    /// The fee of cancelling a slot starting at `start`: none if more than the window away.
    pub fn cancellation_fee(&self, start: DateTime<Utc>, now: DateTime<Utc>) -> FeeDecision {
        if start > self.fee_threshold(now) {
            FeeDecision::None
        } else {
            FeeDecision::Half
        }
    }

    /// A no-show may be recorded for slots that started at or before this.
    pub fn no_show_latest_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.no_show_grace
    }

    /// A reschedule is allowed only for slots starting after this.
    pub fn reschedule_earliest_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.reschedule_cutoff
    }
}

/// The doctor side of booking: active, in the requested department, not on leave, working then.
pub fn check_doctor(
    schedule: &DoctorSchedule,
    department: &str,
    slot: &SlotChoice,
) -> Result<(), Error> {
    let d = &schedule.doctor;
    if !d.active {
        return Err(Error::rule(
            "doctor_inactive",
            format!("doctor {} is not active", d.doctor_id),
        ));
    }
    if !d.department.trim().eq_ignore_ascii_case(department.trim()) {
        return Err(Error::rule(
            "department_mismatch",
            format!(
                "doctor {} is in {}, not {}",
                d.doctor_id,
                d.department,
                department.trim()
            ),
        ));
    }
    if schedule.on_leave {
        return Err(Error::rule(
            "doctor_unavailable",
            format!("doctor {} is on leave on {}", d.doctor_id, schedule.date),
        ));
    }
    let working = schedule
        .working
        .iter()
        .any(|w| w.slot_start <= slot.start && slot.end <= w.slot_end);
    if !working {
        return Err(Error::rule(
            "doctor_unavailable",
            format!("doctor {} does not work at that time", d.doctor_id),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            tz: chrono_tz::Asia::Kolkata,
            open: 9 * 60,
            close: 18 * 60,
            lead: Duration::hours(2),
            horizon: Duration::days(365),
            daily_cap: 8,
            fee_window: Duration::hours(2),
            no_show_grace: Duration::minutes(15),
            reschedule_cutoff: Duration::hours(1),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn code(r: Result<SlotChoice, Error>) -> &'static str {
        r.map(|_| "ok").unwrap_or_else(|e| e.code)
    }

    #[test]
    fn slots_are_standard_in_clinic_hours_and_far_enough_ahead() {
        let now = t("2026-11-30T00:00:00Z");
        let r = rules();
        // 09:00 IST = 03:30 UTC
        assert_eq!(
            code(r.check_slot(t("2026-12-01T03:30:00Z"), None, now)),
            "ok"
        );
        assert_eq!(
            code(r.check_slot(
                t("2026-12-01T03:30:00Z"),
                Some(t("2026-12-01T04:00:00Z")),
                now
            )),
            "ok"
        );
        assert_eq!(
            code(r.check_slot(t("2026-12-01T03:45:00Z"), None, now)),
            "slot_not_standard"
        );
        assert_eq!(
            code(r.check_slot(
                t("2026-12-01T03:30:00Z"),
                Some(t("2026-12-01T04:30:00Z")),
                now
            )),
            "slot_not_standard"
        );
        assert_eq!(
            code(r.check_slot(t("2026-12-01T03:30:10Z"), None, now)),
            "slot_not_standard"
        );
        assert_eq!(
            code(r.check_slot(t("2026-12-01T03:00:00Z"), None, now)),
            "outside_clinic_hours"
        ); // 08:30
        assert_eq!(
            code(r.check_slot(t("2026-12-01T12:00:00Z"), None, now)),
            "ok"
        ); // 17:30–18:00
        assert_eq!(
            code(r.check_slot(t("2026-12-01T12:30:00Z"), None, now)),
            "outside_clinic_hours"
        ); // 18:00
        assert_eq!(
            code(r.check_slot(t("2026-11-30T03:30:00Z"), None, t("2026-11-30T02:00:00Z"))),
            "lead_time"
        );
        assert_eq!(
            code(r.check_slot(t("2026-11-30T02:00:00Z"), None, t("2026-11-30T00:00:00Z"))),
            "outside_clinic_hours"
        );
        // Exactly the lead time ahead is allowed.
        assert_eq!(
            code(r.check_slot(t("2026-12-01T03:30:00Z"), None, t("2026-12-01T01:30:00Z"))),
            "ok"
        );
        assert_eq!(
            code(r.check_slot(t("2026-12-01T03:30:00Z"), None, t("2026-12-01T01:30:01Z"))),
            "lead_time"
        );
        // The horizon: a year ahead, to the slot.
        let now = t("2026-11-30T03:30:00Z");
        assert_eq!(
            code(r.check_slot(t("2027-11-30T03:30:00Z"), None, now)),
            "ok"
        );
        assert_eq!(
            code(r.check_slot(t("2027-11-30T04:00:00Z"), None, now)),
            "too_far_ahead"
        );
        assert_eq!(
            code(r.check_slot(t("9999-12-31T04:00:00Z"), None, now)),
            "too_far_ahead"
        );
    }

    #[test]
    fn the_clinic_day_is_local() {
        // 18:30 UTC on the 1st is 00:00 IST on the 2nd; 03:30 UTC on the 2nd is 09:00 IST.
        let c = rules()
            .check_slot(t("2026-12-02T03:30:00Z"), None, t("2026-11-30T00:00:00Z"))
            .unwrap();
        assert_eq!(c.day.to_string(), "2026-12-02");
    }

    #[test]
    fn fee_boundary_is_two_hours_inclusive() {
        let r = rules();
        let start = t("2026-12-01T10:00:00Z");
        assert_eq!(
            r.cancellation_fee(start, t("2026-12-01T07:59:59Z")),
            FeeDecision::None
        );
        assert_eq!(
            r.cancellation_fee(start, t("2026-12-01T08:00:00Z")),
            FeeDecision::Half
        );
        assert_eq!(
            r.cancellation_fee(start, t("2026-12-01T11:00:00Z")),
            FeeDecision::Half
        );
    }

    #[test]
    fn only_scheduled_appointments_move() {
        for a in [
            Action::Reschedule,
            Action::Cancel,
            Action::NoShow,
            Action::Complete,
        ] {
            assert!(allowed(Status::Scheduled, a));
            for s in [Status::Cancelled, Status::NoShow, Status::Completed] {
                assert!(!allowed(s, a));
                assert_eq!(invalid_transition(s, a).code, "invalid_transition");
            }
        }
        assert_eq!("no_show".parse::<Status>().unwrap(), Status::NoShow);
        assert!("DONE".parse::<Status>().is_err());
    }
}
