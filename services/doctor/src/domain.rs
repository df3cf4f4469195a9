//! Doctor and scheduling rules, free of I/O: valid doctors, weekly hours, leave, and which
//! standard slots of a day are free.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use hms_client::models::{DoctorUpdate, NewDoctor, NewLeave, Slot, WorkingHours};
use hms_client::Money;
use hms_kit::config::parse_hhmm;
use hms_kit::pii::{Email, PersonName, Phone};
use hms_kit::Error;

/// Length of a standard slot; slots start on :00 and :30.
pub const SLOT_MINUTES: u32 = 30;

/// A doctor that passed every rule.
#[derive(Debug, Clone)]
pub struct ValidDoctor {
    pub doctor_id: Option<i64>,
    pub name: PersonName,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub department: String,
    pub specialization: String,
    pub fee: Money,
    pub hours: Vec<Shift>,
    pub created_at: Option<DateTime<Utc>>,
}

/// A change that passed every rule; `None` fields stay.
#[derive(Debug, Clone, Default)]
pub struct ValidDoctorUpdate {
    pub name: Option<PersonName>,
    pub email: Option<Option<Email>>,
    pub phone: Option<Option<Phone>>,
    pub department: Option<String>,
    pub specialization: Option<String>,
    pub fee: Option<Money>,
    pub active: Option<bool>,
}

/// Hours on one weekday, in clinic-local minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub weekday: u8,
    pub start: u32,
    pub end: u32,
}

impl Shift {
    pub fn to_wire(self) -> WorkingHours {
        let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        WorkingHours {
            weekday: self.weekday,
            start: hhmm(self.start),
            end: hhmm(self.end),
        }
    }
}

/// Monday to Friday, 09:00–18:00: the week of a doctor created without hours.
pub fn default_week(open: u32, close: u32) -> Vec<Shift> {
    (1..=5)
        .map(|weekday| Shift {
            weekday,
            start: open,
            end: close,
        })
        .collect()
}

fn text(field: &'static str, raw: &str, max: usize) -> Result<String, Error> {
    let s = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        return Err(Error::validation(field, format!("{field} is required")));
    }
    if s.chars().count() > max {
        return Err(Error::validation(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(s)
}

fn fee(m: Money) -> Result<Money, Error> {
    hms_kit::money::price("consultation_fee", m)
}

fn optional_email(raw: Option<&str>) -> Result<Option<Email>, Error> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Email::parse(s)
            .map(Some)
            .map_err(|m| Error::validation("email", format!("email {m}"))),
    }
}

fn optional_phone(raw: Option<&str>) -> Result<Option<Phone>, Error> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Phone::parse(s)
            .map(Some)
            .map_err(|m| Error::validation("phone", format!("phone {m}"))),
    }
}

impl ValidDoctor {
    /// `default_fee` is the clinic's fee for a doctor created without one.
    pub fn parse(d: NewDoctor, clinic: (u32, u32), default_fee: Money) -> Result<Self, Error> {
        if let Some(id) = d.doctor_id {
            hms_kit::import::legacy_id("doctor_id", id)?;
        }
        Ok(ValidDoctor {
            doctor_id: d.doctor_id,
            name: PersonName::parse(&d.name)
                .map_err(|m| Error::validation("name", format!("name {m}")))?,
            email: optional_email(d.email.as_deref())?,
            phone: optional_phone(d.phone.as_deref())?,
            department: text("department", &d.department, 100)?,
            specialization: text("specialization", &d.specialization, 100)?,
            fee: fee(d.consultation_fee.unwrap_or(default_fee))?,
            hours: match d.working_hours {
                Some(h) => parse_week(&h)?,
                None => default_week(clinic.0, clinic.1),
            },
            created_at: d.created_at,
        })
    }
}

impl ValidDoctorUpdate {
    pub fn parse(u: DoctorUpdate) -> Result<Self, Error> {
        let v = ValidDoctorUpdate {
            name: u
                .name
                .map(|n| {
                    PersonName::parse(&n)
                        .map_err(|m| Error::validation("name", format!("name {m}")))
                })
                .transpose()?,
            email: u.email.map(|e| optional_email(Some(&e))).transpose()?,
            phone: u.phone.map(|p| optional_phone(Some(&p))).transpose()?,
            department: u
                .department
                .map(|d| text("department", &d, 100))
                .transpose()?,
            specialization: u
                .specialization
                .map(|s| text("specialization", &s, 100))
                .transpose()?,
            fee: u.consultation_fee.map(fee).transpose()?,
            active: u.active,
        };
        if v.fields().is_empty() {
            return Err(Error::rule(
                "nothing_to_change",
                "nothing to change: give at least one field",
            ));
        }
        Ok(v)
    }

    pub fn fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        let mut add = |present: bool, name| {
            if present {
                f.push(name)
            }
        };
        add(self.name.is_some(), "name");
        add(self.email.is_some(), "email");
        add(self.phone.is_some(), "phone");
        add(self.department.is_some(), "department");
        add(self.specialization.is_some(), "specialization");
        add(self.fee.is_some(), "consultation_fee");
        add(self.active.is_some(), "active");
        f
    }
}

/// A weekly schedule: weekdays 1–7, `HH:MM` times, start before end, no overlaps in a day.
pub fn parse_week(hours: &[WorkingHours]) -> Result<Vec<Shift>, Error> {
    let mut shifts = Vec::with_capacity(hours.len());
    for h in hours {
        if !(1..=7).contains(&h.weekday) {
            return Err(Error::validation(
                "weekday",
                "weekday must be 1 (Monday) to 7 (Sunday)",
            ));
        }
        let start = parse_hhmm(&h.start)
            .filter(|m| *m < 24 * 60)
            .ok_or_else(|| {
                Error::validation("start", format!("start '{}' is not HH:MM", h.start))
            })?;
        let end = parse_hhmm(&h.end)
            .ok_or_else(|| Error::validation("end", format!("end '{}' is not HH:MM", h.end)))?;
        // Rules between fields are business rules (422): each field alone is well formed.
        if end <= start {
            return Err(Error::rule(
                "invalid_hours",
                format!("end {} must be after start {}", h.end, h.start),
            ));
        }
        shifts.push(Shift {
            weekday: h.weekday,
            start,
            end,
        });
    }
    shifts.sort_by_key(|s| (s.weekday, s.start));
    for pair in shifts.windows(2) {
        if pair[0].weekday == pair[1].weekday && pair[1].start < pair[0].end {
            return Err(Error::rule(
                "invalid_hours",
                format!("hours overlap on weekday {}", pair[0].weekday),
            ));
        }
    }
    Ok(shifts)
}

/// A leave request: end on or after start, at most a year.
pub fn check_leave(l: &NewLeave) -> Result<(), Error> {
    if l.end_date < l.start_date {
        return Err(Error::rule(
            "invalid_leave",
            "end_date must not be before start_date",
        ));
    }
    if (l.end_date - l.start_date).num_days() > 366 {
        return Err(Error::rule(
            "invalid_leave",
            "a leave can be at most a year long",
        ));
    }
    Ok(())
}

/// What decides a doctor's free slots on one date.
#[derive(Debug, Clone)]
pub struct DayPlan<'a> {
    pub date: NaiveDate,
    pub tz: Tz,
    /// Clinic hours, clinic-local minutes.
    pub clinic: (u32, u32),
    pub active: bool,
    pub on_leave: bool,
    /// The doctor's shifts (any weekday; only the date's weekday counts).
    pub shifts: &'a [Shift],
    /// Slots taken already (starts, UTC).
    pub booked: &'a [DateTime<Utc>],
    /// Slots starting before this cannot be booked any more (now + lead time).
    pub earliest: DateTime<Utc>,
}

/// The free standard slots of a day, in time order, or why there are none.
pub fn free_slots(plan: &DayPlan<'_>) -> (Vec<Slot>, Option<&'static str>) {
    if !plan.active {
        return (Vec::new(), Some("inactive"));
    }
    if plan.on_leave {
        return (Vec::new(), Some("on_leave"));
    }
    let weekday = plan.date.weekday().number_from_monday() as u8;
    let today: Vec<&Shift> = plan
        .shifts
        .iter()
        .filter(|s| s.weekday == weekday)
        .collect();
    if today.is_empty() {
        return (Vec::new(), Some("not_working"));
    }
    let mut slots = Vec::new();
    for s in today {
        let from = s.start.max(plan.clinic.0);
        let to = s.end.min(plan.clinic.1);
        // First :00/:30 boundary at or after the shift starts.
        let mut m = from.div_ceil(SLOT_MINUTES) * SLOT_MINUTES;
        while m + SLOT_MINUTES <= to {
            let local = plan
                .date
                .and_time(NaiveTime::from_hms_opt(m / 60, m % 60, 0).expect("minute of day"));
            // A local time skipped by a DST change has no slot; a repeated one takes the first.
            if let Some(start) = plan.tz.from_local_datetime(&local).earliest() {
                let start = start.with_timezone(&Utc);
                if start >= plan.earliest && !plan.booked.contains(&start) {
                    slots.push(Slot {
                        slot_start: start,
                        slot_end: start + Duration::minutes(i64::from(SLOT_MINUTES)),
                    });
                }
            }
            m += SLOT_MINUTES;
        }
    }
    slots.sort_by_key(|s| s.slot_start);
    slots.dedup_by_key(|s| s.slot_start);
    let reason = slots.is_empty().then_some("fully_booked_or_past");
    (slots, reason)
}

/// The working periods of a clinic-local date, in UTC (shifts of that weekday).
pub fn working_periods(date: NaiveDate, tz: Tz, shifts: &[Shift]) -> Vec<Slot> {
    let weekday = date.weekday().number_from_monday() as u8;
    let at = |m: u32| {
        let local = if m >= 24 * 60 {
            date.succ_opt()?.and_hms_opt(0, 0, 0)?
        } else {
            date.and_hms_opt(m / 60, m % 60, 0)?
        };
        tz.from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    shifts
        .iter()
        .filter(|s| s.weekday == weekday)
        .filter_map(|s| {
            Some(Slot {
                slot_start: at(s.start)?,
                slot_end: at(s.end)?,
            })
        })
        .collect()
}

/// The UTC bounds of a clinic-local date: `[midnight, next midnight)`.
pub fn day_bounds(date: NaiveDate, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
    };
    (start(date), start(date.succ_opt().unwrap_or(date)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(
        shifts: &'a [Shift],
        booked: &'a [DateTime<Utc>],
        date: &str,
        tz: Tz,
    ) -> DayPlan<'a> {
        DayPlan {
            date: date.parse().unwrap(),
            tz,
            clinic: (9 * 60, 18 * 60),
            active: true,
            on_leave: false,
            shifts,
            booked,
            earliest: "2000-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_full_clinic_day_has_eighteen_half_hour_slots_in_utc() {
        let week = default_week(9 * 60, 18 * 60);
        // 2026-12-01 is a Tuesday; Kolkata is UTC+05:30.
        let (slots, reason) = free_slots(&plan(&week, &[], "2026-12-01", chrono_tz::Asia::Kolkata));
        assert_eq!(reason, None);
        assert_eq!(slots.len(), 18);
        assert_eq!(
            slots[0].slot_start.to_rfc3339(),
            "2026-12-01T03:30:00+00:00"
        );
        assert_eq!(slots[17].slot_end.to_rfc3339(), "2026-12-01T12:30:00+00:00");
    }

    #[test]
    fn shifts_are_clipped_to_clinic_hours_and_aligned() {
        let shifts = [Shift {
            weekday: 2,
            start: 8 * 60 + 10,
            end: 10 * 60 + 15,
        }];
        let (slots, _) = free_slots(&plan(&shifts, &[], "2026-12-01", chrono_tz::UTC));
        let starts: Vec<String> = slots
            .iter()
            .map(|s| s.slot_start.format("%H:%M").to_string())
            .collect();
        assert_eq!(starts, ["09:00", "09:30"]);
    }

    #[test]
    fn booked_past_leave_weekend_and_inactive_take_slots_away() {
        let week = default_week(9 * 60, 18 * 60);
        let booked = ["2026-12-01T09:00:00Z".parse().unwrap()];
        let mut p = plan(&week, &booked, "2026-12-01", chrono_tz::UTC);
        p.earliest = "2026-12-01T17:00:00Z".parse().unwrap();
        let (slots, _) = free_slots(&p);
        assert_eq!(slots.len(), 2, "17:00 and 17:30 remain");
        assert!(slots.iter().all(|s| s.slot_start != booked[0]));
        assert_eq!(
            free_slots(&plan(&week, &[], "2026-12-05", chrono_tz::UTC)).1,
            Some("not_working")
        );
        let mut p = plan(&week, &[], "2026-12-01", chrono_tz::UTC);
        p.on_leave = true;
        assert_eq!(free_slots(&p).1, Some("on_leave"));
        p.active = false;
        assert_eq!(free_slots(&p).1, Some("inactive"));
    }

    #[test]
    fn clinic_hours_follow_daylight_saving() {
        let week = default_week(9 * 60, 18 * 60);
        let ny = chrono_tz::America::New_York;
        let summer = free_slots(&plan(&week, &[], "2026-07-01", ny)).0;
        let winter = free_slots(&plan(&week, &[], "2026-12-01", ny)).0;
        assert_eq!(summer[0].slot_start.format("%H:%M").to_string(), "13:00");
        assert_eq!(winter[0].slot_start.format("%H:%M").to_string(), "14:00");
    }

    #[test]
    fn working_periods_are_the_days_shifts_in_utc() {
        let week = default_week(9 * 60, 18 * 60);
        let p = working_periods(
            "2026-12-01".parse().unwrap(),
            chrono_tz::Asia::Kolkata,
            &week,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].slot_start.to_rfc3339(), "2026-12-01T03:30:00+00:00");
        assert_eq!(p[0].slot_end.to_rfc3339(), "2026-12-01T12:30:00+00:00");
        assert!(working_periods("2026-12-05".parse().unwrap(), chrono_tz::UTC, &week).is_empty());
        let (a, b) = day_bounds("2026-12-01".parse().unwrap(), chrono_tz::Asia::Kolkata);
        assert_eq!(
            (a.to_rfc3339(), b.to_rfc3339()),
            (
                "2026-11-30T18:30:00+00:00".into(),
                "2026-12-01T18:30:00+00:00".into()
            )
        );
    }

    #[test]
    fn overlapping_or_inverted_hours_are_refused() {
        let h = |d, s: &str, e: &str| WorkingHours {
            weekday: d,
            start: s.into(),
            end: e.into(),
        };
        assert!(parse_week(&[h(1, "09:00", "12:00"), h(1, "11:00", "13:00")]).is_err());
        assert!(parse_week(&[h(1, "12:00", "09:00")]).is_err());
        assert!(parse_week(&[h(8, "09:00", "10:00")]).is_err());
        assert_eq!(
            parse_week(&[h(1, "09:00", "12:00"), h(1, "13:00", "17:00")])
                .unwrap()
                .len(),
            2
        );
    }
}
