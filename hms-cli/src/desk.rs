//! What the front desk needs beyond one call per command: the clinic's time zone, lists that
//! page the same way everywhere, the day sheet with names, the payments of a bill, and a
//! payment a nervous clerk cannot take twice.

use crate::exit;
use crate::output::{emit, Printer};
use crate::Failure;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use hms_client::models::*;
use hms_client::{ClientError, HmsClient, Money, Service};
use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;

/// The clinic's zone: `HMS_CLINIC_TIMEZONE`, else what the services say (`/health`), else
/// Asia/Kolkata (the services' default).
pub async fn clinic_zone(c: &HmsClient) -> Tz {
    if let Some(tz) = std::env::var("HMS_CLINIC_TIMEZONE")
        .ok()
        .and_then(|z| z.parse().ok())
    {
        return tz;
    }
    for svc in [Service::Appointment, Service::Doctor, Service::Patient] {
        if let Ok(h) = c.health(svc).await {
            if let Some(tz) = h.clinic_timezone.and_then(|z| z.parse().ok()) {
                return tz;
            }
        }
    }
    chrono_tz::Asia::Kolkata
}

/// A date as the desk types it: `today`, `tomorrow`, `yesterday` (in the clinic's zone) or
/// `YYYY-MM-DD`.
pub fn day(s: &str, tz: Tz) -> Result<NaiveDate, Failure> {
    let today = Utc::now().with_timezone(&tz).date_naive();
    match s.trim().to_lowercase().as_str() {
        "today" => Ok(today),
        "tomorrow" => Ok(today + Duration::days(1)),
        "yesterday" => Ok(today - Duration::days(1)),
        other => NaiveDate::parse_from_str(other, "%Y-%m-%d").map_err(|_| {
            Failure::usage(format!(
                "'{s}' is not a date: use YYYY-MM-DD, today or tomorrow"
            ))
        }),
    }
}

/// How many rows a list shows: a page (`--limit`, at most the API's 500), or everything
/// (`--all`, following the cursors).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub limit: u32,
    pub all: bool,
}

impl Paging {
    pub fn new(limit: u32, all: bool) -> Result<Self, Failure> {
        if !(1..=500).contains(&limit) {
            return Err(Failure::usage(format!(
                "--limit {limit}: a page is 1 to 500 rows; --all shows every row"
            )));
        }
        Ok(Paging { limit, all })
    }
}

/// Fetches a list's rows by `paging`; when a page leaves rows behind, says so on stderr (how
/// many were shown, and how to see the rest).
pub async fn rows<T, F, Fut>(paging: Paging, mut page: F) -> Result<Vec<T>, Failure>
where
    F: FnMut(u32, Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(paging.limit, cursor.take()).await?;
        items.extend(p.items);
        match p.next_cursor {
            Some(next) if paging.all => cursor = Some(next),
            Some(_) => {
                eprintln!(
                    "Showing the first {} rows; more exist: add --all for every row, or a larger --limit (up to 500).",
                    items.len()
                );
                break;
            }
            None => break,
        }
    }
    Ok(items)
}

/// The names of the people of some appointments, for people to read.
#[derive(Debug, Default)]
pub struct Names {
    patients: HashMap<i64, String>,
    doctors: HashMap<i64, String>,
}

impl Names {
    /// "Priya Sharma (11)", or the id alone when the name is unknown.
    pub fn patient(&self, id: i64) -> String {
        Self::shown(&self.patients, id)
    }

    pub fn doctor(&self, id: i64) -> String {
        Self::shown(&self.doctors, id)
    }

    fn shown(names: &HashMap<i64, String>, id: i64) -> String {
        names
            .get(&id)
            .map(|n| format!("{n} ({id})"))
            .unwrap_or_else(|| id.to_string())
    }
}

/// Looks up the names of these patients and doctors (each person once) when `out` is read by
/// a person; a script's output keeps the ids only, and asks nothing more.
pub async fn names(
    c: &HmsClient,
    out: &Printer,
    patients: impl Iterator<Item = i64>,
    doctors: impl Iterator<Item = i64>,
) -> Result<Names, Failure> {
    if !out.for_people() {
        return Ok(Names::default());
    }
    fn ids(v: impl Iterator<Item = i64>) -> Vec<i64> {
        let mut v: Vec<i64> = v.collect();
        v.sort_unstable();
        v.dedup();
        v
    }
    let patients = futures::future::join_all(
        ids(patients)
            .into_iter()
            .map(|id| async move { (id, c.get_patient(id).await.map(|p| p.name)) }),
    )
    .await;
    let doctors = futures::future::join_all(
        ids(doctors)
            .into_iter()
            .map(|id| async move { (id, c.get_doctor(id).await.map(|d| d.name)) }),
    )
    .await;
    let mut names = Names::default();
    for (found, into) in [
        (patients, &mut names.patients),
        (doctors, &mut names.doctors),
    ] {
        for (id, name) in found {
            match name {
                Ok(n) => {
                    into.insert(id, n);
                }
                // A record that is gone, or one this token may not read, is shown by its id.
                Err(ClientError::Api {
                    status: 403 | 404, ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(names)
}

/// The appointments of a clinic day in slot order (optionally one patient's, doctor's or
/// department's).
pub async fn day_sheet(
    c: &HmsClient,
    tz: Tz,
    date: NaiveDate,
    patient: Option<i64>,
    doctor: Option<i64>,
    department: Option<String>,
    status: Option<String>,
) -> Result<Vec<Appointment>, Failure> {
    let start = tz
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .ok_or_else(|| Failure::usage(format!("{date} has no midnight in {tz}")))?
        .with_timezone(&Utc);
    let next = date + Duration::days(1);
    let end = tz
        .from_local_datetime(&next.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(start + Duration::days(1));
    let q = AppointmentQuery {
        patient_id: patient,
        doctor_id: doctor,
        department,
        status,
        from: Some(start),
        to: Some(end),
        ..Default::default()
    };
    let mut all = rows(
        Paging {
            limit: 500,
            all: true,
        },
        |limit, cursor| {
            let q = AppointmentQuery {
                limit: Some(limit),
                cursor,
                ..q.clone()
            };
            async move { c.list_appointments(&q).await }
        },
    )
    .await?;
    all.sort_by_key(|a| (a.slot_start, a.appointment_id));
    Ok(all)
}

/// Whether hmsctl may ask (`--no-input`) and what it was told beforehand (`--yes`).
#[derive(Debug, Clone, Copy)]
pub struct Asking {
    pub no_input: bool,
    pub yes: bool,
}

/// A payment as the clerk gave it.
#[derive(Debug, Clone)]
pub struct Charge {
    pub bill_id: i64,
    pub amount: Money,
    pub method: Option<String>,
    pub key: Option<String>,
}

/// Takes a payment so that a nervous clerk cannot take it twice: at a terminal the bill's
/// balance is shown and confirmed (default No), and a payment of the same bill in the last 10
/// minutes is pointed out; without a terminal `--method` is required. A replayed key says
/// nothing more was charged (`"replayed": true` in JSON).
pub async fn pay(
    c: &HmsClient,
    out: &Printer,
    asks: Asking,
    p: Charge,
) -> Result<(Payment, bool), Failure> {
    let Charge {
        bill_id,
        amount,
        method,
        key,
    } = p;
    let (no_input, yes) = (asks.no_input, asks.yes);
    let interactive = !no_input && std::io::stdin().is_terminal();
    let method = match method {
        Some(m) => m.trim().to_uppercase(),
        None if interactive => {
            let choices = ["CASH", "CARD", "UPI"];
            let i = dialoguer::Select::new()
                .with_prompt("Method")
                .items(&choices)
                .default(0)
                .interact_opt()
                .map_err(crate::interactive::prompt_err)?
                .ok_or_else(crate::interactive::backed_out)?;
            choices[i].to_string()
        }
        None => {
            return Err(Failure::usage(
                "--method is required (CASH, CARD or UPI): there is no terminal to ask on",
            ))
        }
    };
    if interactive && !yes && key.is_none() {
        let b = c.get_bill(bill_id).await?;
        let recent: Vec<Payment> = c
            .payments_of_bill(bill_id)
            .await?
            .items
            .into_iter()
            .filter(|p| Utc::now() - p.paid_at < Duration::minutes(10))
            .collect();
        for p in &recent {
            eprintln!(
                "Note: bill {bill_id} was already paid {} by {} at {} (payment {}).",
                out.amount(p.amount),
                p.method,
                local(out, p.paid_at),
                p.payment_id
            );
        }
        let question = format!(
            "Take {} by {method} for bill {bill_id} (balance {})",
            out.amount(amount),
            out.amount(b.balance)
        );
        crate::interactive::confirm(&question)?;
    }
    let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // On stderr, so a script can capture it and retry with the same key.
    eprintln!("Idempotency-Key: {key}");
    let (p, replayed) = c
        .pay_once(
            &NewPayment {
                bill_id,
                amount,
                method,
            },
            &key,
        )
        .await?;
    if replayed {
        eprintln!(
            "Already taken with this key: payment {} — not charged again.",
            p.payment_id
        );
    }
    Ok((p, replayed))
}

/// The payment of `bill` a refund of `amount` comes from: the latest with that much left to
/// refund (at a terminal, the clerk picks among them).
pub async fn refundable(
    c: &HmsClient,
    out: &Printer,
    no_input: bool,
    bill: i64,
    amount: Money,
) -> Result<i64, Failure> {
    let payments = c.payments_of_bill(bill).await?.items;
    let mut fits: Vec<&Payment> = payments
        .iter()
        .filter(|p| p.amount.0 - p.refunded.0 >= amount.0)
        .collect();
    fits.sort_by_key(|p| std::cmp::Reverse(p.paid_at));
    match fits.len() {
        0 => Err(Failure {
            code: exit::RULE,
            message: format!(
                "no payment of bill {bill} has {} left to refund ({} payments)",
                out.amount(amount),
                payments.len()
            ),
        }),
        1 => Ok(fits[0].payment_id),
        _ if no_input || !std::io::stdin().is_terminal() => Ok(fits[0].payment_id),
        _ => {
            let items: Vec<String> = fits
                .iter()
                .map(|p| {
                    format!(
                        "payment {} · {} by {} at {} · {} left",
                        p.payment_id,
                        out.amount(p.amount),
                        p.method,
                        local(out, p.paid_at),
                        out.amount(Money(p.amount.0 - p.refunded.0))
                    )
                })
                .collect();
            let i = dialoguer::Select::new()
                .with_prompt("Refund from")
                .items(&items)
                .default(0)
                .interact_opt()
                .map_err(crate::interactive::prompt_err)?
                .ok_or_else(crate::interactive::backed_out)?;
            Ok(fits[i].payment_id)
        }
    }
}

fn local(out: &Printer, t: DateTime<Utc>) -> String {
    match out.tz {
        Some(tz) => t.with_timezone(&tz).format("%H:%M %Z").to_string(),
        None => t.format("%H:%M UTC").to_string(),
    }
}

/// Prints `lines` (a bill's totals) after a table.
pub fn totals(out: &Printer, b: &Bill) {
    if !out.for_people() {
        return;
    }
    emit!(
        "Total {} · Credits {} · Amount due {} · Paid {} · Refunded {} · Balance {}",
        out.amount(b.total),
        out.amount(b.credits),
        out.amount(b.amount_due),
        out.amount(b.paid),
        out.amount(b.refunded),
        out.amount(b.balance)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_as_the_desk_types_them() {
        let tz = chrono_tz::Asia::Kolkata;
        let today = Utc::now().with_timezone(&tz).date_naive();
        assert_eq!(day("today", tz).unwrap(), today);
        assert_eq!(day("Tomorrow", tz).unwrap(), today + Duration::days(1));
        assert_eq!(day("2026-12-01", tz).unwrap().to_string(), "2026-12-01");
        assert!(day("01/12/2026", tz)
            .unwrap_err()
            .message
            .contains("YYYY-MM-DD"));
        assert!(Paging::new(0, false).is_err() && Paging::new(501, false).is_err());
    }
}
