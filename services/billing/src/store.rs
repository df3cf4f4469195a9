//! Billing SQL, written once for SQLite and PostgreSQL.

use crate::domain;
use chrono::{DateTime, Utc};
use hms_client::models::{Adjustment, Bill, BillLine, BillQuery};
use hms_client::Money;
use hms_kit::db::{
    backend_of, json_rows, json_rows_param, violation, Backend, Bind, Script, Select, Tx, Violation,
};
use hms_kit::pagination::PageRequest;
use hms_kit::time::{from_db, to_db};
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;

const B: &str =
    "bill_id, patient_id, appointment_id, purpose, status, subtotal, tax, total, credits, \
                 paid, refunded, version, created_at, updated_at";

fn bill(r: &AnyRow) -> Result<Bill, sqlx::Error> {
    Ok(priced(Bill {
        bill_id: r.try_get("bill_id")?,
        patient_id: r.try_get("patient_id")?,
        appointment_id: r.try_get("appointment_id")?,
        purpose: r.try_get("purpose")?,
        status: r.try_get("status")?,
        lines: Vec::new(),
        subtotal: Money(r.try_get("subtotal")?),
        tax: Money(r.try_get("tax")?),
        total: Money(r.try_get("total")?),
        credits: Money(r.try_get("credits")?),
        paid: Money(r.try_get("paid")?),
        refunded: Money(r.try_get("refunded")?),
        amount_due: Money(0),
        balance: Money(0),
        version: r.try_get("version")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
        updated_at: from_db(&r.try_get::<String, _>("updated_at")?)?,
    }))
}

/// `b` with the figures that follow from its stored ones: the amount due (the total less
/// credit notes) and the balance (the amount due less what was paid and not refunded).
fn priced(b: Bill) -> Bill {
    let due = b.total.0 - b.credits.0;
    Bill {
        amount_due: Money(due),
        balance: Money(due - (b.paid.0 - b.refunded.0)),
        ..b
    }
}

/// A line to add, with the reference that makes adding it twice a no-op.
#[derive(Debug, Clone)]
pub struct NewLine {
    pub kind: &'static str,
    pub description: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub source_ref: String,
}

async fn with_lines(
    conn: &mut sqlx::AnyConnection,
    mut bills: Vec<Bill>,
) -> Result<Vec<Bill>, Error> {
    if bills.is_empty() {
        return Ok(bills);
    }
    let mut s = Select::new("SELECT bill_id, kind, description, quantity, unit_price, amount FROM bill_lines WHERE bill_id IN (");
    for (i, b) in bills.iter().enumerate() {
        s.push(if i == 0 { "?" } else { ", ?" }, [Bind::Int(b.bill_id)]);
    }
    s.push(") ORDER BY line_id", []);
    let mut lines: HashMap<i64, Vec<BillLine>> = HashMap::new();
    for r in s.fetch_all(&mut *conn).await? {
        lines
            .entry(r.try_get("bill_id")?)
            .or_default()
            .push(BillLine {
                kind: r.try_get("kind")?,
                description: r.try_get("description")?,
                quantity: r.try_get("quantity")?,
                unit_price: Money(r.try_get("unit_price")?),
                amount: Money(r.try_get("amount")?),
            });
    }
    for b in &mut bills {
        b.lines = lines.remove(&b.bill_id).unwrap_or_default();
    }
    Ok(bills)
}

/// Creates the bill of an appointment for a purpose, with its lines; `None` if it exists
/// already (`UNIQUE (appointment_id, purpose)`: a redelivered event bills nothing twice).
/// `then`, given the new bill, is statements written with its lines (its event), in the same
/// hand-off to the database.
pub async fn create(
    tx: &mut Tx,
    patient_id: i64,
    appointment_id: i64,
    purpose: &str,
    lines: &[NewLine],
    now: DateTime<Utc>,
    then: impl FnOnce(&Bill) -> Result<Script, Error>,
) -> Result<Option<Bill>, Error> {
    let amounts = lines
        .iter()
        .map(|l| domain::line_amount(l.quantity, l.unit_price))
        .collect::<Result<Vec<_>, _>>()?;
    let t = domain::totals(&amounts)?;
    // A new bill's figures are its lines' alone (nothing is credited or paid against a bill
    // before it exists): written with it, not read back and recomputed.
    let status = domain::status(false, t.total, 0, 0);
    let row = sqlx::query(&format!(
        "INSERT INTO bills (patient_id, appointment_id, purpose, status, subtotal, tax, total, credits, paid, refunded, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 1, $8, $8) ON CONFLICT (appointment_id, purpose) DO NOTHING RETURNING {B}"
    ))
    .bind(patient_id)
    .bind(appointment_id)
    .bind(purpose)
    .bind(status)
    .bind(t.subtotal)
    .bind(t.tax)
    .bind(t.total)
    .bind(to_db(now))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let b = bill(&row)?;
    let mut script = add_lines(backend_of(tx), b.bill_id, lines)?;
    script.append(then(&b)?);
    script.run(tx).await?;
    Ok(Some(b))
}

/// A new bill's lines, in their order, in one statement.
fn add_lines(backend: Backend, bill_id: i64, lines: &[NewLine]) -> Result<Script, Error> {
    let rows = lines
        .iter()
        .map(|l| {
            let amount = domain::line_amount(l.quantity, l.unit_price)?;
            Ok((
                l.kind,
                l.description.as_str(),
                l.quantity,
                l.unit_price,
                amount,
                l.source_ref.as_str(),
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut script = Script::new();
    script.push(
        &format!(
            "INSERT INTO bill_lines (bill_id, kind, description, quantity, unit_price, amount, source_ref) \
             SELECT ?, j.value ->> 0, j.value ->> 1, CAST(j.value ->> 2 AS BIGINT), CAST(j.value ->> 3 AS BIGINT), \
                    CAST(j.value ->> 4 AS BIGINT), j.value ->> 5 \
             FROM {} WHERE true ORDER BY j.key ON CONFLICT (bill_id, source_ref) DO NOTHING",
            json_rows(backend, "?")
        ),
        [Bind::Int(bill_id), Bind::Text(json_rows_param(&rows)?)],
    );
    Ok(script)
}

/// A bill whose row the transaction holds locked, taken by an earlier statement. Only the lock
/// functions make one, and [`recompute`] and [`record_money`] take one: so concurrent
/// recomputations of one bill serialise, and on PostgreSQL a recomputation's sums (a later
/// statement than the lock) see everything the lock's previous holder committed.
#[derive(Debug, Clone, Copy)]
pub struct Locked(i64);

/// Locks a bill's row for the rest of the transaction if it is still OPEN; `None` if it is
/// settled. A guarded UPDATE, not a read: a payment settling the bill at the same moment is
/// waited for and seen (PostgreSQL re-checks the condition on the row it waited for; SQLite
/// writers are serial), so a line is never added to a bill that has just been paid.
pub async fn lock_if_open(tx: &mut Tx, bill_id: i64) -> Result<Option<Locked>, Error> {
    let locked =
        sqlx::query("UPDATE bills SET version = version WHERE bill_id = $1 AND status = 'OPEN'")
            .bind(bill_id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1;
    Ok(locked.then_some(Locked(bill_id)))
}

/// Locks a bill's row before anything is added under it. A child row's foreign key takes a
/// share lock on its bill; two transactions that each hold one and then update the bill (as
/// `recompute` does) deadlock on PostgreSQL. Taking the bill's row lock first orders them.
/// (SQLite's `BEGIN IMMEDIATE` already serialises writers.)
async fn lock(tx: &mut Tx, bill_id: i64) -> Result<Locked, Error> {
    sqlx::query("UPDATE bills SET version = version WHERE bill_id = $1")
        .bind(bill_id)
        .execute(&mut **tx)
        .await?;
    Ok(Locked(bill_id))
}

/// Adds a line once (by `source_ref`); true if it was new.
pub async fn add_line(tx: &mut Tx, bill_id: i64, l: &NewLine) -> Result<bool, Error> {
    Ok(sqlx::query(
        "INSERT INTO bill_lines (bill_id, kind, description, quantity, unit_price, amount, source_ref) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bill_id, source_ref) DO NOTHING",
    )
    .bind(bill_id)
    .bind(l.kind)
    .bind(&l.description)
    .bind(l.quantity)
    .bind(l.unit_price)
    .bind(domain::line_amount(l.quantity, l.unit_price)?)
    .bind(&l.source_ref)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// A bill's status and the sums it is recomputed from. Each sum reads only that bill's rows (by
/// index: without one it read every movement of every bill, more each day).
pub const RECOMPUTED: &str = "SELECT b.bill_id, b.patient_id, b.appointment_id, b.purpose, b.status, b.subtotal, \
       b.tax, b.total, b.credits, b.paid, b.refunded, b.version, b.created_at, b.updated_at, b.legacy_status, \
       (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM bill_lines WHERE bill_id = $1) AS sum_lines, \
       (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM adjustments WHERE bill_id = $1) AS sum_credits, \
       (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM bill_money WHERE bill_id = $1 AND kind = 'capture') AS sum_paid, \
       (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM bill_money WHERE bill_id = $1 AND kind = 'refund') AS sum_refunded \
     FROM bills b WHERE b.bill_id = $1";

/// Recomputes a bill from its lines, credit notes and money movements, under its row lock
/// ([`Locked`]).
pub async fn recompute(tx: &mut Tx, locked: Locked, now: DateTime<Utc>) -> Result<Bill, Error> {
    let write = |_: &Bill, _: &Bill| Ok(Script::new());
    recompute_with(tx, locked, Script::new(), now, write).await
}

/// A recomputation with the statements around it sent in the same hand-offs to the database
/// (on SQLite each statement is a turn of the connection's thread, and billing's writer does a
/// recomputation per payment): `first` runs before the sums are read (a money movement
/// recorded); `then`, given the bill before and as recomputed, says what to write with the
/// update that stores it (its event). Two hand-offs in all, three for a legacy bill. Returns
/// the bill as recomputed.
pub async fn recompute_with(
    tx: &mut Tx,
    locked: Locked,
    first: Script,
    now: DateTime<Utc>,
    then: impl FnOnce(&Bill, &Bill) -> Result<Script, Error>,
) -> Result<Bill, Error> {
    let Locked(bill_id) = locked;
    let mut read = first;
    read.push(
        &RECOMPUTED.replace("$1", "?"),
        std::iter::repeat_n(Bind::Int(bill_id), 5),
    );
    let Some(sums) = read.fetch_all(tx).await?.pop() else {
        return Err(Error::not_found(format!("bill {bill_id}")));
    };
    let before = bill(&sums)?;
    let legacy_status: Option<String> = sums.try_get("legacy_status")?;
    let subtotal: i64 = sums.try_get("sum_lines")?;
    let credits: i64 = sums.try_get("sum_credits")?;
    let paid: i64 = sums.try_get("sum_paid")?;
    let refunded: i64 = sums.try_get("sum_refunded")?;
    let was_void = before.status == "VOID";
    let (tax, total, paid, refunded, status) = match legacy_status.as_deref() {
        None => {
            let domain::Totals { tax, total, .. } = domain::with_tax(subtotal)?;
            let status = domain::status(was_void, total - credits, paid, refunded);
            (tax, total, paid, refunded, status)
        }
        Some(legacy) => {
            let live_moved = sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM bill_money WHERE bill_id = $1 AND movement_id NOT LIKE 'legacy:%'",
            )
            .bind(bill_id)
            .fetch_one(&mut **tx)
            .await?
                > 0;
            let l = domain::legacy(legacy, subtotal, credits, paid, refunded, live_moved);
            (0, subtotal, l.paid, l.refunded, l.status)
        }
    };
    let status = if was_void { "VOID" } else { status };
    let refunded = refunded.min(paid);
    let after = priced(Bill {
        subtotal: Money(subtotal),
        tax: Money(tax),
        total: Money(total),
        credits: Money(credits),
        paid: Money(paid),
        refunded: Money(refunded),
        status: status.to_string(),
        version: before.version + 1,
        // As the database keeps it (and a later read answers it).
        updated_at: from_db(&to_db(now))?,
        ..before.clone()
    });
    let then = then(&before, &after)?;
    let mut write = Script::new();
    write
        .push(
            "UPDATE bills SET subtotal = ?, tax = ?, total = ?, credits = ?, paid = ?, refunded = ?, \
             status = ?, version = version + 1, updated_at = ? WHERE bill_id = ?",
            [
                Bind::Int(subtotal),
                Bind::Int(tax),
                Bind::Int(total),
                Bind::Int(credits),
                Bind::Int(paid),
                Bind::Int(refunded),
                Bind::Text(status.to_string()),
                Bind::Text(to_db(now)),
                Bind::Int(bill_id),
            ],
        )
        .refusing(|e| match violation(e) {
            Some(Violation::Check) => Some(Error::rule(
                "adjustment_exceeds_total",
                "credit notes cannot exceed the bill's total",
            )),
            _ => None,
        });
    write.append(then);
    write.run(tx).await?;
    Ok(after)
}

/// A bill with its lines; give it a read transaction ([`hms_kit::db::Db::begin_read`]) so
/// both come from one snapshot.
pub async fn get(conn: &mut sqlx::AnyConnection, id: i64) -> Result<Option<Bill>, Error> {
    let row = sqlx::query(&format!("SELECT {B} FROM bills WHERE bill_id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(b) = row.as_ref().map(bill).transpose()? else {
        return Ok(None);
    };
    Ok(with_lines(conn, vec![b]).await?.pop())
}

/// A bill about to take a money movement, without its lines, its row locked for the rest of the
/// transaction (as [`lock`] does, and for the same reason), and whether that movement is
/// recorded already: one statement. A movement is recorded only under its bill's lock
/// ([`record_money`] takes [`Locked`]), so the answer holds until the transaction ends; the
/// movement id's uniqueness stays the judge.
pub async fn lock_for_movement(
    tx: &mut Tx,
    id: i64,
    movement_id: &str,
) -> Result<Option<(Locked, Bill, bool)>, Error> {
    let row = sqlx::query(&format!(
        "UPDATE bills SET version = version WHERE bill_id = $1 RETURNING {B}, \
         CAST(CASE WHEN EXISTS (SELECT 1 FROM bill_money WHERE movement_id = $2) THEN 1 ELSE 0 END AS BIGINT) AS recorded"
    ))
    .bind(id)
    .bind(movement_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let recorded: i64 = row.try_get("recorded")?;
    Ok(Some((Locked(id), bill(&row)?, recorded == 1)))
}

/// A bill inside a transaction, without its lines.
pub async fn head(tx: &mut Tx, id: i64) -> Result<Option<Bill>, Error> {
    one_bill(tx, &format!("SELECT {B} FROM bills WHERE bill_id = $1"), id).await
}

/// The bill row a statement of one parameter (the bill's id) returns, if any.
async fn one_bill(tx: &mut Tx, sql: &str, id: i64) -> Result<Option<Bill>, Error> {
    let row = sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?;
    Ok(row.as_ref().map(bill).transpose()?)
}

/// One page of bills with their lines (one snapshot, as for [`get`]).
pub async fn list(
    conn: &mut sqlx::AnyConnection,
    q: &BillQuery,
    page: PageRequest,
) -> Result<Vec<Bill>, Error> {
    let mut s = Select::new(&format!("SELECT {B} FROM bills WHERE 1 = 1"));
    s.and("bill_id > ?", Bind::Int(page.after_or_min()));
    if let Some(p) = q.patient_id {
        s.and("patient_id = ?", Bind::Int(p));
    }
    if let Some(a) = q.appointment_id {
        s.and("appointment_id = ?", Bind::Int(a));
    }
    if let Some(st) = q.status.as_deref().filter(|s| !s.is_empty()) {
        s.and("status = ?", Bind::Text(st.to_uppercase()));
    }
    s.push(" ORDER BY bill_id LIMIT ?", [Bind::Int(page.fetch())]);
    let bills = s
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(bill)
        .collect::<Result<Vec<_>, _>>()?;
    with_lines(conn, bills).await
}

/// The bills of an appointment.
pub async fn of_appointment(tx: &mut Tx, appointment_id: i64) -> Result<Vec<Bill>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {B} FROM bills WHERE appointment_id = $1 ORDER BY bill_id"
    ))
    .bind(appointment_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(bill).collect::<Result<_, _>>()?)
}

/// VOID: only an OPEN bill nothing was paid on (guarded in the UPDATE).
pub async fn void(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> Result<Option<Bill>, Error> {
    let row = sqlx::query(&format!(
        "UPDATE bills SET status = 'VOID', version = version + 1, updated_at = $1 \
         WHERE bill_id = $2 AND status = 'OPEN' AND paid = 0 RETURNING {B}"
    ))
    .bind(to_db(now))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(bill).transpose()?)
}

/// Records a credit note on a bill that is not VOID; the bill stays locked for its
/// recomputation.
pub async fn adjust(
    tx: &mut Tx,
    bill_id: i64,
    amount: i64,
    reason: &str,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<(Locked, Adjustment), Error> {
    let locked = lock(tx, bill_id).await?;
    let row = sqlx::query(
        "INSERT INTO adjustments (bill_id, amount, reason, subject, created_at) \
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM bills WHERE bill_id = $1 AND status <> 'VOID') \
         RETURNING adjustment_id, bill_id, amount, reason, subject, created_at",
    )
    .bind(bill_id)
    .bind(amount)
    .bind(reason)
    .bind(subject)
    .bind(to_db(now))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = row else {
        return Err(Error::conflict(
            "invalid_transition",
            format!("bill {bill_id} does not exist or is VOID"),
        ));
    };
    let adjustment = Adjustment {
        adjustment_id: r.try_get("adjustment_id")?,
        bill_id: r.try_get("bill_id")?,
        amount: Money(r.try_get("amount")?),
        reason: r.try_get("reason")?,
        subject: r.try_get("subject")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
    };
    Ok((locked, adjustment))
}

/// The statement that records a payment or refund reported by the payment service against the
/// bill it locked, once per movement id, for [`recompute_with`]'s `first`.
pub fn record_money(locked: Locked, movement_id: &str, kind: &str, amount: i64) -> Script {
    let Locked(bill_id) = locked;
    let mut script = Script::new();
    script.push(
        "INSERT INTO bill_money (movement_id, bill_id, kind, amount) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            Bind::Text(movement_id.to_string()),
            Bind::Int(bill_id),
            Bind::Text(kind.to_string()),
            Bind::Int(amount),
        ],
    );
    script
}

/// A prescription, as billing prices it.
#[derive(Debug, Clone)]
pub struct Prescribed {
    pub prescription_id: i64,
    pub appointment_id: i64,
    pub medication: String,
    pub quantity: i64,
    pub unit_price: i64,
}

impl Prescribed {
    pub fn line(&self) -> NewLine {
        NewLine {
            kind: "medicine",
            description: self.medication.clone(),
            quantity: self.quantity,
            unit_price: self.unit_price,
            source_ref: format!("prescription:{}", self.prescription_id),
        }
    }
}

/// Remembers a prescription (once, by its id) and answers its appointment's bills, in one
/// hand-off to the database.
pub async fn remember_prescription(tx: &mut Tx, p: &Prescribed) -> Result<Vec<Bill>, Error> {
    let mut script = Script::new();
    script
        .push(
            "INSERT INTO prescribed (prescription_id, appointment_id, medication, quantity, unit_price) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (prescription_id) DO NOTHING",
            [
                Bind::Int(p.prescription_id),
                Bind::Int(p.appointment_id),
                Bind::Text(p.medication.clone()),
                Bind::Int(p.quantity),
                Bind::Int(p.unit_price),
            ],
        )
        .push(
            &format!("SELECT {B} FROM bills WHERE appointment_id = ? ORDER BY bill_id"),
            [Bind::Int(p.appointment_id)],
        );
    let rows = script.fetch_all(tx).await?;
    Ok(rows.iter().map(bill).collect::<Result<_, _>>()?)
}

pub async fn prescribed_for(tx: &mut Tx, appointment_id: i64) -> Result<Vec<Prescribed>, Error> {
    let rows = sqlx::query(
        "SELECT prescription_id, appointment_id, medication, quantity, unit_price FROM prescribed WHERE appointment_id = $1 ORDER BY prescription_id",
    )
    .bind(appointment_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Prescribed {
                prescription_id: r.try_get("prescription_id")?,
                appointment_id: r.try_get("appointment_id")?,
                medication: r.try_get("medication")?,
                quantity: r.try_get("quantity")?,
                unit_price: r.try_get("unit_price")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Inserts a legacy bill as it was: one line of its amount, no tax (the legacy amount is the
/// total), paid as its status says. `Ok(None)` if that id exists already.
pub async fn import(
    backend: hms_kit::db::Backend,
    tx: &mut Tx,
    b: &hms_client::models::LegacyBill,
    status: &str,
    vouched_first: Option<i64>,
) -> Result<Option<(Bill, Vec<String>)>, Error> {
    let existing = sqlx::query(
        "SELECT patient_id, appointment_id, subtotal, legacy_status FROM bills WHERE bill_id = $1",
    )
    .bind(b.bill_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(r) = existing {
        // A re-run compares content: the same bill is already present; another under its id
        // is a conflict to resolve by hand, never silently "present".
        let held = (
            r.try_get::<i64, _>("patient_id")?,
            r.try_get::<i64, _>("appointment_id")?,
            r.try_get::<i64, _>("subtotal")?,
            r.try_get::<Option<String>, _>("legacy_status")?,
        );
        let given = (
            b.patient_id,
            b.appointment_id,
            b.amount.0,
            Some(status.to_string()),
        );
        if held == given {
            return Ok(None);
        }
        return Err(hms_kit::import::conflict(
            "bill",
            b.bill_id,
            &[
                ("patient_id", held.0.to_string(), given.0.to_string()),
                ("appointment_id", held.1.to_string(), given.1.to_string()),
                ("amount", Money(held.2).to_string(), b.amount.to_string()),
                (
                    "status",
                    held.3.unwrap_or_else(|| "(made by HMS)".into()),
                    status.to_string(),
                ),
            ],
        ));
    }
    // The legacy amount is the total; what the legacy status says was paid and refunded
    // stands (the same rule `recompute` applies later).
    let l = domain::legacy(status, b.amount.0, 0, 0, 0, false);
    // An appointment's first legacy bill is its consultation bill; a further one is kept as
    // a bill of its own (the unique key on appointment and purpose stays the judge).
    let first: Option<i64> = sqlx::query_scalar(
        "SELECT bill_id FROM bills WHERE appointment_id = $1 AND purpose = 'consultation'",
    )
    .bind(b.appointment_id)
    .fetch_optional(&mut **tx)
    .await?
    // A dry run's earlier bill of the appointment, rolled back (see `DryRunContext`).
    .or(vouched_first);
    let mut warnings = Vec::new();
    let purpose = match first {
        None => "consultation".to_string(),
        Some(other) => {
            warnings.push(format!(
                "appointment {} already has bill {other}; kept as a further bill of its own",
                b.appointment_id
            ));
            format!("legacy:{}", b.bill_id)
        }
    };
    let row = sqlx::query(&format!(
        "INSERT INTO bills (bill_id, patient_id, appointment_id, purpose, status, legacy_status, subtotal, tax, total, credits, paid, refunded, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $9, $4, $4, $5, 0, $5, 0, $6, $7, 1, $8, $8) RETURNING {B}"
    ))
    .bind(b.bill_id)
    .bind(b.patient_id)
    .bind(b.appointment_id)
    .bind(l.status)
    .bind(b.amount.0)
    .bind(l.paid)
    .bind(l.refunded)
    .bind(to_db(b.created_at))
    .bind(&purpose)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match violation(&e) {
        Some(Violation::Unique) => Error::conflict(
            "already_exists",
            format!("appointment {} already has a bill", b.appointment_id),
        ),
        _ => e.into(),
    })?;
    let bill = bill(&row)?;
    add_line(
        tx,
        bill.bill_id,
        &NewLine {
            kind: "consultation",
            description: "Legacy bill".into(),
            quantity: 1,
            unit_price: b.amount.0,
            source_ref: "legacy".into(),
        },
    )
    .await?;
    // Refunded before import: credited like a live refund, so the balance never asks for it.
    let bill = if l.status == "REFUNDED" && b.amount.0 > 0 {
        let (locked, _) = adjust(
            tx,
            bill.bill_id,
            b.amount.0,
            "refunded before import",
            "import",
            b.created_at,
        )
        .await?;
        recompute(tx, locked, b.created_at).await?
    } else {
        bill
    };
    hms_kit::db::sync_id_sequence(backend, tx, "bills", "bill_id").await?;
    Ok(Some((bill, warnings)))
}
