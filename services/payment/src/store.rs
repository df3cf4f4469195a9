//! Payment SQL, written once for SQLite and PostgreSQL. Over-payment and over-refund are
//! refused by guarded UPDATEs, with the CHECK constraints as the backstop.

use chrono::{DateTime, Utc};
use hms_client::models::{Payment, Refund};
use hms_client::Money;
use hms_kit::db::Tx;
use hms_kit::time::{from_db, to_db};
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

const P: &str = "payment_id, bill_id, amount, method, reference, refunded, paid_at";

fn payment(r: &AnyRow) -> Result<Payment, sqlx::Error> {
    Ok(Payment {
        payment_id: r.try_get("payment_id")?,
        bill_id: r.try_get("bill_id")?,
        amount: Money(r.try_get("amount")?),
        method: r.try_get("method")?,
        reference: r.try_get("reference")?,
        refunded: Money(r.try_get("refunded")?),
        paid_at: from_db(&r.try_get::<String, _>("paid_at")?)?,
    })
}

/// What payment knows of a bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub bill_id: i64,
    pub patient_id: i64,
    pub total: i64,
    pub captured: i64,
    pub refunded: i64,
    pub status: String,
}

impl Balance {
    pub fn outstanding(&self) -> i64 {
        self.total - (self.captured - self.refunded)
    }
}

pub async fn balance<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    bill_id: i64,
) -> Result<Option<Balance>, Error> {
    let row = sqlx::query("SELECT bill_id, patient_id, total, captured, refunded, status FROM bill_balance WHERE bill_id = $1")
        .bind(bill_id)
        .fetch_optional(exec)
        .await?;
    row.map(|r| {
        Ok(Balance {
            bill_id: r.try_get("bill_id")?,
            patient_id: r.try_get("patient_id")?,
            total: r.try_get("total")?,
            captured: r.try_get("captured")?,
            refunded: r.try_get("refunded")?,
            status: r.try_get("status")?,
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| e.into())
}

/// Applies what billing says of a bill (amount due, status) if newer than what is stored.
/// The amount due never drops below what is already captured net of refunds (the ledger CHECK).
pub async fn apply_bill(
    tx: &mut Tx,
    bill_id: i64,
    patient_id: i64,
    amount_due: i64,
    status: &str,
    seq: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO bill_balance (bill_id, patient_id, total, captured, refunded, status, seq) VALUES ($1, $2, $3, 0, 0, $4, $5) \
         ON CONFLICT (bill_id) DO UPDATE SET \
           total = CASE WHEN excluded.total < bill_balance.captured - bill_balance.refunded \
                        THEN bill_balance.captured - bill_balance.refunded ELSE excluded.total END, \
           status = excluded.status, seq = excluded.seq \
         WHERE bill_balance.seq < excluded.seq",
    )
    .bind(bill_id)
    .bind(patient_id)
    .bind(amount_due)
    .bind(status)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A dry run's view of a bill (see `DryRunContext`): the bill itself when `unknown` here, and
/// what earlier payments of the run captured, written into this row's transaction only.
pub async fn vouch_bill(
    tx: &mut Tx,
    bill_id: i64,
    v: &hms_client::models::VouchedBill,
    unknown: bool,
) -> Result<(), Error> {
    if unknown {
        apply_bill(tx, bill_id, v.patient_id, v.amount_due.0, &v.status, 0).await?;
    }
    sqlx::query("UPDATE bill_balance SET captured = captured + $1 WHERE bill_id = $2")
        .bind(v.captured.0)
        .bind(bill_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes a live `amount` against a bill's balance: only while billing says it is OPEN (a
/// PAID, refunded or VOID bill owes nothing, whatever was recorded here) and the amount fits.
pub async fn capture(tx: &mut Tx, bill_id: i64, amount: i64) -> Result<bool, Error> {
    Ok(sqlx::query(
        "UPDATE bill_balance SET captured = captured + $1 \
         WHERE bill_id = $2 AND status = 'OPEN' AND captured - refunded + $1 <= total",
    )
    .bind(amount)
    .bind(bill_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// Records a legacy payment against its bill: history, so a bill the old system settled
/// (PAID) takes the payments that settled it; never against a VOID bill, never beyond the
/// bill's amount.
async fn capture_history(tx: &mut Tx, bill_id: i64, amount: i64) -> Result<bool, Error> {
    Ok(sqlx::query(
        "UPDATE bill_balance SET captured = captured + $1 \
         WHERE bill_id = $2 AND status <> 'VOID' AND captured - refunded + $1 <= total",
    )
    .bind(amount)
    .bind(bill_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// A payment reference: `HMS<yyyymmdd>-<6 letters/digits>`.
pub fn reference(now: DateTime<Utc>) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let tail: String = (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("HMS{}-{tail}", now.format("%Y%m%d"))
}

/// Inserts a payment under a fresh reference from `fresh_reference`. References are random
/// (six of 32 characters a day: about a billion), so two payments of one day can draw the same
/// one — at 4,500 payments a day, about once in a hundred days — and the UNIQUE constraint
/// judges it: the insert is undone alone (a savepoint) and tried again with another reference,
/// instead of failing the payment.
#[allow(clippy::too_many_arguments)]
pub async fn insert_payment(
    tx: &mut Tx,
    bill: &Balance,
    amount: i64,
    method: &str,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
    mut fresh_reference: impl FnMut(DateTime<Utc>) -> String,
) -> Result<Payment, Error> {
    const TRIES: usize = 8;
    for attempt in 1..=TRIES {
        sqlx::query("SAVEPOINT payment_reference")
            .execute(&mut **tx)
            .await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO payments (bill_id, patient_id, amount, method, reference, refunded, idempotency_key, request_hash, paid_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8) RETURNING {P}"
        ))
        .bind(bill.bill_id)
        .bind(bill.patient_id)
        .bind(amount)
        .bind(method)
        .bind(fresh_reference(now))
        .bind(key)
        .bind(hash)
        .bind(to_db(now))
        .fetch_one(&mut **tx)
        .await;
        match inserted {
            Ok(row) => {
                sqlx::query("RELEASE SAVEPOINT payment_reference")
                    .execute(&mut **tx)
                    .await?;
                return Ok(payment(&row)?);
            }
            Err(e) if attempt < TRIES && reference_taken(&e) => {
                tracing::info!(attempt, "payment reference already taken; drawing another");
                sqlx::query("ROLLBACK TO SAVEPOINT payment_reference")
                    .execute(&mut **tx)
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last attempt returns")
}

/// Whether `e` is the UNIQUE constraint on `payments.reference` (SQLite names the column in
/// its message, PostgreSQL the constraint).
fn reference_taken(e: &sqlx::Error) -> bool {
    let Some(d) = e.as_database_error() else {
        return false;
    };
    hms_kit::db::violation(e) == Some(hms_kit::db::Violation::Unique)
        && (d.constraint().is_some_and(|c| c.contains("reference"))
            || d.message().contains("payments.reference"))
}

/// A payment made with `key` (kept forever), and the hash of its request.
pub async fn by_key<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    key: &str,
) -> Result<Option<(Payment, String)>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {P}, request_hash FROM payments WHERE idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(exec)
    .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((payment(&r)?, r.try_get("request_hash")?)))
        .transpose()?)
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
) -> Result<Option<Payment>, Error> {
    let row = sqlx::query(&format!("SELECT {P} FROM payments WHERE payment_id = $1"))
        .bind(id)
        .fetch_optional(exec)
        .await?;
    Ok(row.as_ref().map(payment).transpose()?)
}

pub async fn of_bill<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    bill_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<Payment>, Error> {
    let rows = sqlx::query(&format!("SELECT {P} FROM payments WHERE bill_id = $1 AND payment_id > $2 ORDER BY payment_id LIMIT $3"))
        .bind(bill_id)
        .bind(after)
        .bind(limit)
        .fetch_all(exec)
        .await?;
    Ok(rows.iter().map(payment).collect::<Result<_, _>>()?)
}

/// Refunds `amount` of a payment: only up to what it captured, net of earlier refunds.
pub async fn refund(
    tx: &mut Tx,
    p: &Payment,
    patient_reason: &str,
    amount: i64,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<Refund>, Error> {
    let ok = sqlx::query("UPDATE payments SET refunded = refunded + $1 WHERE payment_id = $2 AND refunded + $1 <= amount")
        .bind(amount)
        .bind(p.payment_id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1;
    if !ok {
        return Ok(None);
    }
    // The refund is credited on the bill (billing issues the credit note), so the amount owed
    // falls by it: the same rule, `hms_kit::money::refund_credit`, on the balance with the
    // refund counted. The first UPDATE locks the bill's row for the second.
    let row = sqlx::query(
        "UPDATE bill_balance SET refunded = refunded + $1 WHERE bill_id = $2 \
         RETURNING total, captured, refunded",
    )
    .bind(amount)
    .bind(p.bill_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = row {
        let (total, captured, refunded): (i64, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let credit = hms_kit::money::refund_credit(amount, total - (captured - refunded));
        sqlx::query("UPDATE bill_balance SET total = total - $1 WHERE bill_id = $2")
            .bind(credit)
            .bind(p.bill_id)
            .execute(&mut **tx)
            .await?;
    }
    let r = sqlx::query(
        "INSERT INTO refunds (payment_id, bill_id, amount, reason, idempotency_key, request_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING refund_id, payment_id, bill_id, amount, reason, created_at",
    )
    .bind(p.payment_id)
    .bind(p.bill_id)
    .bind(amount)
    .bind(patient_reason)
    .bind(key)
    .bind(hash)
    .bind(to_db(now))
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(Refund {
        refund_id: r.try_get("refund_id")?,
        payment_id: r.try_get("payment_id")?,
        bill_id: r.try_get("bill_id")?,
        amount: Money(r.try_get("amount")?),
        reason: r.try_get("reason")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
    }))
}

/// Records a legacy payment with its id and reference, captured against the bill's balance
/// under the same guard as any payment. `Ok(None)` if that id exists already; `Ok(Some(false))`
/// if the bill cannot take it (VOID, or more than it owes).
pub async fn import(
    backend: hms_kit::db::Backend,
    tx: &mut Tx,
    bill: &Balance,
    p: &hms_client::models::LegacyPayment,
    method: &str,
) -> Result<Option<bool>, Error> {
    let existing = sqlx::query(
        "SELECT bill_id, amount, method, reference FROM payments WHERE payment_id = $1",
    )
    .bind(p.payment_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(r) = existing {
        let held = (
            r.try_get::<i64, _>("bill_id")?,
            r.try_get::<i64, _>("amount")?,
            r.try_get::<String, _>("method")?,
            r.try_get::<String, _>("reference")?,
        );
        let given = (
            p.bill_id,
            p.amount.0,
            method.to_string(),
            p.reference.trim().to_string(),
        );
        if held == given {
            return Ok(None);
        }
        return Err(hms_kit::import::conflict(
            "payment",
            p.payment_id,
            &[
                ("bill_id", held.0.to_string(), given.0.to_string()),
                ("amount", Money(held.1).to_string(), p.amount.to_string()),
                ("method", held.2, given.2),
                ("reference", held.3, given.3),
            ],
        ));
    }
    if !capture_history(tx, bill.bill_id, p.amount.0).await? {
        return Ok(Some(false));
    }
    sqlx::query(
        "INSERT INTO payments (payment_id, bill_id, patient_id, amount, method, reference, refunded, idempotency_key, request_hash, paid_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 'legacy', $8)",
    )
    .bind(p.payment_id)
    .bind(bill.bill_id)
    .bind(bill.patient_id)
    .bind(p.amount.0)
    .bind(method)
    .bind(p.reference.trim())
    .bind(format!("import:{}", p.payment_id))
    .bind(to_db(p.paid_at))
    .execute(&mut **tx)
    .await
    .map_err(|e| match hms_kit::db::violation(&e) {
        Some(hms_kit::db::Violation::Unique) => Error::conflict("already_exists", format!("reference {} is taken", p.reference)),
        _ => e.into(),
    })?;
    hms_kit::db::sync_id_sequence(backend, tx, "payments", "payment_id").await?;
    Ok(Some(true))
}

/// A payment of a group ([`insert_payments`]).
pub struct NewPayment<'a> {
    pub bill: &'a Balance,
    pub amount: i64,
    pub method: &'a str,
    pub key: &'a str,
    pub hash: &'a str,
    pub reference: String,
}

/// Inserts a group's payments in one statement (one parameter, one cached statement text
/// whatever their number); the payments in the order given. A reference or key already taken
/// refuses the statement, and so the group: each payment is then taken alone, where
/// [`insert_payment`] draws another reference.
pub async fn insert_payments(
    tx: &mut Tx,
    new: &[NewPayment<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<Payment>, Error> {
    let rows: Vec<_> = new
        .iter()
        .map(|p| {
            (
                p.bill.bill_id,
                p.bill.patient_id,
                p.amount,
                p.method,
                p.reference.as_str(),
                p.key,
                p.hash,
            )
        })
        .collect();
    let backend = hms_kit::db::backend_of(tx);
    let inserted = sqlx::query(&format!(
        "INSERT INTO payments (bill_id, patient_id, amount, method, reference, refunded, idempotency_key, request_hash, paid_at) \
         SELECT CAST(j.value ->> 0 AS BIGINT), CAST(j.value ->> 1 AS BIGINT), CAST(j.value ->> 2 AS BIGINT), \
         j.value ->> 3, j.value ->> 4, 0, j.value ->> 5, j.value ->> 6, $2 FROM {} ORDER BY j.key \
         RETURNING {P}, idempotency_key",
        hms_kit::db::json_rows(backend, "$1")
    ))
    .bind(hms_kit::db::json_rows_param(&rows).map_err(Error::internal)?)
    .bind(to_db(now))
    .fetch_all(&mut **tx)
    .await?;
    // RETURNING promises no order: each payment is found by its key (unique).
    let mut by_key = std::collections::HashMap::with_capacity(inserted.len());
    for r in &inserted {
        by_key.insert(r.try_get::<String, _>("idempotency_key")?, payment(r)?);
    }
    new.iter()
        .map(|p| {
            by_key.remove(p.key).ok_or_else(|| {
                Error::internal(anyhow::anyhow!("payment under key {} not returned", p.key))
            })
        })
        .collect()
}
