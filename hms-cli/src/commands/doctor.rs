//! `hmsctl doctor …`: doctors, their weekly hours and leave, and free slots.

use super::{Ctx, PageArgs, Yes};
use crate::desk;
use crate::output::{drop, emit, keep, shrink, Format, View};
use crate::Failure;
use clap::Subcommand;
use hms_client::models::*;
use hms_client::Money;
use serde::Serialize;

#[derive(Subcommand)]
pub enum DoctorCmd {
    /// Add a doctor (admin).
    #[command(
        after_help = "Example:\n  hmsctl doctor add --name \"Dr. Meera Iyer\" --department Cardiology --specialization Interventional --fee 800.00"
    )]
    Add {
        /// Full name, e.g. "Dr. Meera Iyer".
        #[arg(long)]
        name: String,
        /// Department, e.g. Cardiology.
        #[arg(long)]
        department: String,
        /// Specialization within the department.
        #[arg(long)]
        specialization: String,
        /// Consultation fee [default: the clinic's default, 500.00 unless configured].
        #[arg(long)]
        fee: Option<Money>,
        /// E-mail address (optional).
        #[arg(long)]
        email: Option<String>,
        /// Phone number (optional).
        #[arg(long)]
        phone: Option<String>,
    },
    /// List doctors (filters optional), a page at a time.
    List {
        /// Of this department (any case).
        #[arg(long)]
        department: Option<String>,
        /// Of this specialization (any case).
        #[arg(long)]
        specialization: Option<String>,
        /// Whose name contains this (any case).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One doctor's record.
    Show {
        /// Doctor id.
        id: i64,
    },
    /// Change a doctor's department, specialization, fee or activity (admin).
    Update {
        /// Doctor id.
        id: i64,
        /// New department.
        #[arg(long)]
        department: Option<String>,
        /// New specialization.
        #[arg(long)]
        specialization: Option<String>,
        /// New consultation fee (bookings made from now on carry it).
        #[arg(long)]
        fee: Option<Money>,
        /// false to deactivate (no new bookings), true to reactivate.
        #[arg(long)]
        active: Option<bool>,
    },
    /// Weekly working hours: show or set them.
    #[command(subcommand)]
    Hours(HoursCmd),
    /// Leave: list, add or remove a doctor's days away.
    #[command(subcommand)]
    Leave(LeaveCmd),
    /// Free slots of a doctor (ID) or of a department (--department) on a date.
    #[command(
        after_help = "Examples:\n  hmsctl doctor availability 3 --date tomorrow\n  hmsctl doctor availability --department Cardiology --date 2026-12-01"
    )]
    Availability {
        /// Doctor id (or give --department).
        id: Option<i64>,
        /// Every doctor of this department.
        #[arg(long)]
        department: Option<String>,
        /// A clinic day: YYYY-MM-DD, today or tomorrow.
        #[arg(long)]
        date: String,
    },
}

#[derive(Subcommand)]
pub enum HoursCmd {
    /// A doctor's week, in clinic time.
    Show {
        /// Doctor id.
        id: i64,
    },
    /// Replace a doctor's week: each SHIFT is DAYS=HH:MM-HH:MM in clinic time.
    #[command(
        after_help = "DAYS is a day (mon … sun), a range (mon-fri) or a list (mon,wed,fri).\n\nExamples:\n  hmsctl doctor hours set 2 mon-fri=09:00-13:00 mon-fri=14:00-17:00 sat=09:00-12:00\n  hmsctl doctor hours set 2 --none     (not working any day)"
    )]
    Set {
        /// Doctor id.
        id: i64,
        /// The shifts of the week, e.g. mon-fri=09:00-17:00.
        #[arg(required_unless_present = "none", conflicts_with = "none")]
        shifts: Vec<String>,
        /// No hours at all: the doctor takes no bookings on any day.
        #[arg(long)]
        none: bool,
    },
}

#[derive(Subcommand)]
pub enum LeaveCmd {
    /// A doctor's leave.
    List {
        /// Doctor id.
        id: i64,
    },
    /// Record leave from one day to another (inclusive); those days have no free slots.
    #[command(
        after_help = "Example:\n  hmsctl doctor leave add 2 --from 2026-12-24 --to 2026-12-26 --reason \"family\""
    )]
    Add {
        /// Doctor id.
        id: i64,
        /// First day away: YYYY-MM-DD, today or tomorrow.
        #[arg(long)]
        from: String,
        /// Last day away [default: the first].
        #[arg(long)]
        to: Option<String>,
        /// Why (kept with the leave).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove a leave (the doctor is bookable on those days again).
    Remove {
        /// Doctor id.
        id: i64,
        /// The leave's id (`doctor leave list`).
        leave_id: i64,
        #[command(flatten)]
        yes: Yes,
    },
}

pub const DOCTOR: View<Doctor> = View {
    id: |d| d.doctor_id.into(),
    cols: &[
        keep("ID", "doctor_id", |d| d.doctor_id.into()),
        keep("Name", "name", |d| (&d.name).into()),
        keep("Department", "department", |d| (&d.department).into()),
        shrink("Specialization", "specialization", |d| {
            (&d.specialization).into()
        }),
        keep("Fee", "consultation_fee", |d| d.consultation_fee.into()),
        drop("Active", "active", |d| d.active.into()),
    ],
};

const LEAVE: View<Leave> = View {
    id: |l| l.leave_id.into(),
    cols: &[
        keep("ID", "leave_id", |l| l.leave_id.into()),
        keep("From", "start_date", |l| l.start_date.to_string().into()),
        keep("To", "end_date", |l| l.end_date.to_string().into()),
        shrink("Reason", "reason", |l| (&l.reason).into()),
    ],
};

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const HOURS: View<WorkingHours> = View {
    id: |h| h.weekday.to_string().into(),
    cols: &[
        keep("Day", "weekday", |h| day_name(h.weekday).into()),
        keep("From", "start", |h| (&h.start).into()),
        keep("To", "end", |h| (&h.end).into()),
    ],
};

fn day_name(weekday: u8) -> String {
    match weekday {
        1..=7 => {
            let n = WEEKDAYS[weekday as usize - 1];
            let mut c = n.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// `mon`, `mon-fri` or `mon,wed,fri` as ISO weekdays.
fn days(s: &str) -> Result<Vec<u8>, String> {
    let one = |d: &str| -> Result<u8, String> {
        let d = d.trim().to_lowercase();
        WEEKDAYS
            .iter()
            .position(|w| d.starts_with(w) && w.len() <= d.len())
            .map(|i| i as u8 + 1)
            .ok_or_else(|| format!("'{d}' is not a day: use mon, tue, wed, thu, fri, sat or sun"))
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                if a > b {
                    return Err(format!("'{part}': a range runs forward, e.g. mon-fri"));
                }
                out.extend(a..=b);
            }
            None => out.push(one(part)?),
        }
    }
    Ok(out)
}

/// `mon-fri=09:00-17:00` as one shift per day.
fn shifts(spec: &str) -> Result<Vec<WorkingHours>, String> {
    let why =
        || format!("'{spec}' is not a shift: expected DAYS=HH:MM-HH:MM, e.g. mon-fri=09:00-17:00");
    let (d, hours) = spec.split_once('=').ok_or_else(why)?;
    let (start, end) = hours.split_once('-').ok_or_else(why)?;
    for t in [start, end] {
        chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| why())?;
    }
    Ok(days(d)?
        .into_iter()
        .map(|weekday| WorkingHours {
            weekday,
            start: start.trim().to_string(),
            end: end.trim().to_string(),
        })
        .collect())
}

fn show_week(cx: &Ctx, week: &WeeklyHours) {
    if cx.out.format == Format::Json && !cx.out.quiet {
        emit!("{}", serde_json::to_string_pretty(week).unwrap_or_default());
        return;
    }
    let mut rows = week.hours.clone();
    rows.sort_by(|a, b| (a.weekday, &a.start).cmp(&(b.weekday, &b.start)));
    cx.out.list(&rows, &HOURS);
    if cx.out.for_people() {
        emit!("Times are clinic time ({}).", cx.tz);
    }
}

pub async fn run(cx: &Ctx, cmd: DoctorCmd) -> Result<(), Failure> {
    let (c, out) = (&cx.c, &cx.out);
    match cmd {
        DoctorCmd::Add {
            name,
            department,
            specialization,
            fee,
            email,
            phone,
        } => {
            let d = NewDoctor {
                doctor_id: None,
                name,
                email,
                phone,
                department,
                specialization,
                consultation_fee: fee,
                working_hours: None,
                created_at: None,
            };
            out.record(&c.create_doctor(&d).await?, &DOCTOR);
        }
        DoctorCmd::List {
            department,
            specialization,
            name,
            page,
        } => {
            let q = DoctorQuery {
                department,
                specialization,
                name,
                ..Default::default()
            };
            let rows = desk::rows(page.paging()?, |limit, cursor| {
                let q = DoctorQuery {
                    limit: Some(limit),
                    cursor,
                    ..q.clone()
                };
                async move { c.list_doctors(&q).await }
            })
            .await?;
            out.list(&rows, &DOCTOR);
        }
        DoctorCmd::Show { id } => out.record(&c.get_doctor(id).await?, &DOCTOR),
        DoctorCmd::Update {
            id,
            department,
            specialization,
            fee,
            active,
        } => {
            let u = DoctorUpdate {
                department,
                specialization,
                consultation_fee: fee,
                active,
                ..Default::default()
            };
            out.record(&c.update_doctor(id, &u).await?, &DOCTOR);
        }
        DoctorCmd::Hours(HoursCmd::Show { id }) => show_week(cx, &c.working_hours(id).await?),
        DoctorCmd::Hours(HoursCmd::Set {
            id,
            shifts: specs,
            none,
        }) => {
            let mut hours = Vec::new();
            if !none {
                for s in &specs {
                    hours.extend(shifts(s).map_err(Failure::usage)?);
                }
            }
            let week = c.set_working_hours(id, &WeeklyHours { hours }).await?;
            show_week(cx, &week);
        }
        DoctorCmd::Leave(LeaveCmd::List { id }) => {
            let mut rows = c.list_leave(id).await?.items;
            rows.sort_by_key(|l| (l.start_date, l.leave_id));
            out.list(&rows, &LEAVE);
        }
        DoctorCmd::Leave(LeaveCmd::Add {
            id,
            from,
            to,
            reason,
        }) => {
            let start_date = desk::day(&from, cx.tz)?;
            let end_date = match to {
                Some(t) => desk::day(&t, cx.tz)?,
                None => start_date,
            };
            let l = c
                .add_leave(
                    id,
                    &NewLeave {
                        start_date,
                        end_date,
                        reason,
                    },
                )
                .await?;
            out.record(&l, &LEAVE);
        }
        DoctorCmd::Leave(LeaveCmd::Remove { id, leave_id, yes }) => {
            cx.confirm(yes, &format!("Remove leave {leave_id} of doctor {id}"))?;
            c.remove_leave(id, leave_id).await?;
            if out.for_people() {
                emit!("Leave {leave_id} of doctor {id} removed.");
            }
        }
        DoctorCmd::Availability {
            id,
            department,
            date,
        } => {
            let date = desk::day(&date, cx.tz)?;
            match (id, department) {
                (Some(id), _) => availability(cx, c.doctor_availability(id, date).await?),
                (None, Some(dep)) => {
                    let a = c.department_availability(&dep, date).await?;
                    if out.format == Format::Json && !out.quiet {
                        emit!("{}", serde_json::to_string_pretty(&a).unwrap_or_default());
                        return Ok(());
                    }
                    let rows: Vec<FreeSlot> = a
                        .doctors
                        .iter()
                        .flat_map(|d| {
                            d.slots.iter().map(move |slot| FreeSlot {
                                doctor_id: d.doctor_id,
                                name: d.name.clone(),
                                slot: slot.clone(),
                            })
                        })
                        .collect();
                    out.list(&rows, &FREE_SLOT);
                }
                (None, None) => return Err(Failure::usage("give a doctor id or --department")),
            }
        }
    }
    Ok(())
}

/// A free slot with its doctor (a department's availability).
#[derive(Serialize)]
struct FreeSlot {
    doctor_id: i64,
    name: String,
    #[serde(flatten)]
    slot: Slot,
}

const FREE_SLOT: View<FreeSlot> = View {
    id: |s| s.slot.slot_start.into(),
    cols: &[
        keep("Doctor", "doctor_id", |s| s.doctor_id.into()),
        keep("Name", "name", |s| (&s.name).into()),
        keep("Starts", "slot_start", |s| s.slot.slot_start.into()),
    ],
};

const SLOT: View<Slot> = View {
    id: |s| s.slot_start.into(),
    cols: &[
        keep("Starts", "slot_start", |s| s.slot_start.into()),
        keep("Ends", "slot_end", |s| s.slot_end.into()),
    ],
};

fn availability(cx: &Ctx, a: DoctorAvailability) {
    let out = &cx.out;
    if out.format == Format::Json && !out.quiet {
        emit!("{}", serde_json::to_string_pretty(&a).unwrap_or_default());
    } else if a.slots.is_empty() && out.for_people() {
        // Why there is nothing, in words.
        let why = match a.unavailable_reason.as_deref() {
            Some("on_leave") => "on leave",
            Some("not_working") => "not working that day",
            Some("inactive") => "no longer active",
            Some(other) => other,
            None => "every slot is taken",
        };
        emit!("No free slots: {} is {why} on {}.", a.name, a.date);
    } else {
        out.list(&a.slots, &SLOT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_as_typed() {
        let week = shifts("mon-wed=09:00-13:00").unwrap();
        assert_eq!(
            week.iter().map(|s| s.weekday).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(week[0].start, "09:00");
        assert_eq!(days("Sat,sun").unwrap(), [6, 7]);
        assert!(shifts("mon 9-5").unwrap_err().contains("DAYS=HH:MM-HH:MM"));
        assert!(days("fri-mon").is_err());
        assert!(days("funday").unwrap_err().contains("mon, tue"));
    }
}
