//! Payment routes: charges and refunds under `Idempotency-Key`, reads, and bill events.

use crate::domain;
use crate::store::{self, Balance};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hms_client::contract::{BillEvent, Captured, Failed, PaymentEvent, PaymentMethod, Refunded};
use hms_client::models::*;
use hms_client::{ClientError, ErrorBody};
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::db::{backend_of, Script};
use hms_kit::extract::{Json, Path, Query};
use hms_kit::group_commit::{Group, Turn};
use hms_kit::idempotency::{self, Answer, Idempotent, Keyed, Outcome};
use hms_kit::outbox::NewEvent;
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::{Error, Service};
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<PaymentCtx>>;

/// The service's state: the kit's, and the writer that commits payments in groups.
pub struct PaymentCtx {
    ctx: ServiceCtx,
    payments: Group<Paying, Payment>,
}

impl std::ops::Deref for PaymentCtx {
    type Target = ServiceCtx;
    fn deref(&self) -> &ServiceCtx {
        &self.ctx
    }
}

/// A payment that passed every check outside the database, given to the group writer.
struct Paying {
    bill: Balance,
    amount: i64,
    method: PaymentMethod,
    key: Keyed,
    now: chrono::DateTime<chrono::Utc>,
    /// The request's, carried by its event.
    correlation_id: String,
}

/// Payments committed in groups (`kit::group_commit::Group`), as bookings are: each capture
/// the same guarded UPDATE as alone, the payments one statement, their events and stored
/// answers one script, one commit — instead of a transaction of eight statements each on the
/// database's one writer. A capture that does not fit (the bill is no longer OPEN, or the
/// amount exceeds its balance), a key or reference already taken: the group is undone and
/// each payment is taken alone (`take`), where that refusal is judged and answered.
fn payments(ctx: &ServiceCtx) -> Group<Paying, Payment> {
    Group::spawn(
        ctx.db.clone(),
        ctx.outbox.clone(),
        Arc::new(move |tx, outbox, group: &[Paying]| {
            Box::pin(async move {
                for p in group {
                    if !store::capture(tx, p.bill.bill_id, p.amount).await? {
                        return Err(Error::rule("bill_not_payable", "judged alone"));
                    }
                }
                let new: Vec<_> = group
                    .iter()
                    .map(|p| store::NewPayment {
                        bill: &p.bill,
                        amount: p.amount,
                        method: p.method.as_str(),
                        key: &p.key.key,
                        hash: &p.key.fingerprint,
                        reference: store::reference(p.now),
                    })
                    .collect();
                let made = store::insert_payments(tx, &new, group[0].now).await?;
                let mut script = Script::new();
                let events = made
                    .iter()
                    .zip(group)
                    .map(|(payment, p)| {
                        let captured = PaymentEvent::Captured(Captured {
                            payment_id: payment.payment_id,
                            bill_id: p.bill.bill_id,
                            patient_id: p.bill.patient_id,
                            amount: payment.amount,
                            method: p.method.clone(),
                            reference: payment.reference.clone(),
                            legacy: false,
                        });
                        let ev = NewEvent::of(
                            "bill-payment",
                            p.bill.bill_id,
                            payment.payment_id,
                            &captured,
                        );
                        (ev, p.correlation_id.as_str())
                    })
                    .collect::<Vec<_>>();
                outbox.enqueue_all_in(&mut script, &events)?;
                let bodies = made
                    .iter()
                    .map(|payment| serde_json::to_string(payment).map_err(Error::internal))
                    .collect::<Result<Vec<_>, Error>>()?;
                let answers: Vec<_> = group
                    .iter()
                    .zip(&bodies)
                    .map(|(p, body)| (&p.key, StatusCode::CREATED, body.as_str()))
                    .collect();
                idempotency::store_all_in(&mut script, backend_of(tx), &answers, group[0].now)?;
                script.run(tx).await?;
                for payment in &made {
                    captured_log(payment);
                }
                Ok(made)
            })
        }),
    )
}

fn captured_log(payment: &Payment) {
    tracing::info!(payment_id = payment.payment_id, bill_id = payment.bill_id, amount = %payment.amount, "payment captured");
}

const TAKERS: &[Role] = &[Role::Reception, Role::Billing, Role::Admin];
const READERS: &[Role] = &[Role::Reception, Role::Billing, Role::Admin, Role::Service];
/// Refunds move money back: billing staff and admins only (and the billing service's saga).
const REFUNDERS: &[Role] = &[Role::Billing, Role::Admin, Role::Service];

pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(reserve_ids))
        .routes(routes!(charge, list))
        .routes(routes!(charge_alias))
        .routes(routes!(get_one))
        .routes(routes!(refund))
        .routes(routes!(receive_event))
        .routes(routes!(receive_events))
        .routes(routes!(import))
        .with_state(Arc::new(PaymentCtx {
            ctx: ctx.clone(),
            payments: payments(ctx),
        }));
    let access = AccessTable::new(&[
        (Method::POST, "/v1/payments/import/ids", &[Role::Admin]),
        (Method::POST, "/v1/payments", TAKERS),
        (Method::POST, "/v1/payments/charge", TAKERS),
        (Method::GET, "/v1/payments", READERS),
        (Method::GET, "/v1/payments/{id}", READERS),
        (Method::POST, "/v1/payments/{id}/refunds", REFUNDERS),
        (Method::POST, "/v1/events", &[Role::Service]),
        (Method::POST, "/v1/events/batch", &[Role::Service]),
        (Method::POST, "/v1/payments/import", &[Role::Admin]),
    ]);
    ServiceRoutes { api, access }
}

fn required_key(headers: &HeaderMap) -> Result<String, Error> {
    idempotency::key_from(headers)?.ok_or_else(|| {
        Error::validation(
            "Idempotency-Key",
            "Idempotency-Key header is required (1–255 visible ASCII, UUIDv4 recommended)",
        )
    })
}

/// What payment knows of a bill; asked of billing the first time (503 if it is down then).
async fn snapshot(ctx: &ServiceCtx, bill_id: i64) -> Result<Balance, Error> {
    let known = store::balance(&mut *ctx.db.read().await?, bill_id).await?;
    if let Some(b) = known {
        return Ok(b);
    }
    let bill = match ctx.downstream.client().get_bill(bill_id).await {
        Ok(b) => b,
        Err(ClientError::Api { status: 404, .. }) => {
            return Err(Error::not_found(format!("bill {bill_id}")))
        }
        Err(e) => return Err(e.into()),
    };
    let mut tx = ctx.db.begin().await?;
    store::apply_bill(
        &mut tx,
        bill.bill_id,
        bill.patient_id,
        bill.amount_due.0,
        &bill.status,
        bill.version,
    )
    .await?;
    tx.commit().await?;
    store::balance(&mut *ctx.db.read().await?, bill_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("bill {bill_id}")))
}

/// Take a payment against a bill (`Idempotency-Key` required).
///
/// The same key and body → the original status and body (`Idempotent-Replayed: true`), nothing
/// charged again, also after a restart; the same key with another body → 422
/// `idempotency_key_reused`; while the first is in flight → it is waited for (≤ 5 s), then 409
/// `idempotency_key_in_progress`. A VOID or fully paid bill → 422 `bill_not_payable`; more than
/// the balance → 422 `overpayment` (both replayed too). Responses are kept 30 days; keys forever.
#[utoipa::path(post, path = "/v1/payments", tag = "payments",
    params(("Idempotency-Key" = String, Header, description = "Required; a UUIDv4 per payment attempt")),
    request_body = NewPayment,
    responses(
        (status = 201, description = "Captured", body = Payment),
        (status = 200, description = "Replay of a payment whose stored response was swept", body = Payment),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such bill", body = ErrorBody),
        (status = 409, description = "idempotency_key_in_progress", body = ErrorBody),
        (status = 422, description = "bill_not_payable, overpayment, idempotency_key_reused", body = ErrorBody),
        (status = 503, description = "billing is down and the bill is not known yet", body = ErrorBody),
    ))]
async fn charge(
    State(ctx): Ctx,
    caller: Caller,
    headers: HeaderMap,
    Json(p): Json<NewPayment>,
) -> Result<Response, Error> {
    take(&ctx, &caller, &headers, p).await
}

/// The original system's path for `POST /v1/payments`.
#[utoipa::path(post, path = "/v1/payments/charge", tag = "payments",
    params(("Idempotency-Key" = String, Header, description = "Required")),
    request_body = NewPayment,
    responses((status = 201, body = Payment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn charge_alias(
    State(ctx): Ctx,
    caller: Caller,
    headers: HeaderMap,
    Json(p): Json<NewPayment>,
) -> Result<Response, Error> {
    take(&ctx, &caller, &headers, p).await
}

async fn take(
    ctx: &PaymentCtx,
    caller: &Caller,
    headers: &HeaderMap,
    p: NewPayment,
) -> Result<Response, Error> {
    let key = required_key(headers)?;
    hms_kit::money::positive("amount", p.amount)?;
    let method = domain::method(&p.method)?;
    let idem = Idempotent::new(
        &ctx.db,
        Some(&key),
        "payments.create",
        "",
        &caller.subject,
        &p,
    )?;
    if let Some(stored) = idem.replay().await? {
        return Ok(stored.into_response());
    }
    let fingerprint = idem
        .request()
        .map(|r| r.fingerprint.clone())
        .unwrap_or_default();
    // The response was swept, but the payment (and its key) is kept forever.
    // Bound first: a temporary of an `if let` lives through its body, and the body reads again.
    let kept = store::by_key(&mut *ctx.db.read().await?, &key).await?;
    if let Some((payment, hash)) = kept {
        // Committed between the two reads: the stored response is the answer after all.
        if let Some(stored) = idem.replay().await? {
            return Ok(stored.into_response());
        }
        if hash != fingerprint {
            return Err(Error::rule(
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ));
        }
        let mut resp = (StatusCode::OK, axum::Json(payment)).into_response();
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
        return Ok(resp);
    }
    let bill = snapshot(ctx, p.bill_id).await?;
    let now = ctx.clock.now();
    let paying = Paying {
        bill,
        amount: p.amount.0,
        method,
        key: idem
            .request()
            .map(|r| r.keyed())
            .ok_or_else(|| Error::internal(anyhow::anyhow!("a payment's key was not kept")))?,
        now,
        correlation_id: hms_kit::correlation::current_id(),
    };
    // Committed with whatever else is being paid; or, if that group was refused, alone.
    let (bill, method) = match ctx.payments.submit(paying).await? {
        Turn::Committed(payment) => {
            return Ok((StatusCode::CREATED, axum::Json(payment)).into_response())
        }
        Turn::Alone(paying) => (paying.bill, paying.method),
    };
    let answer = idem
        .run(&ctx.outbox, now, |mut tx| async {
            if !store::capture(&mut tx, bill.bill_id, p.amount.0).await? {
                let b = store::balance(&mut *tx, bill.bill_id)
                    .await?
                    .unwrap_or_else(|| bill.clone());
                let err = domain::not_capturable(&b, p.amount);
                let failed = PaymentEvent::Failed(Failed {
                    bill_id: b.bill_id,
                    patient_id: b.patient_id,
                    amount: p.amount,
                    reason: err.code.to_string(),
                });
                ctx.outbox
                    .enqueue(&mut tx, NewEvent::of("bill-payment", b.bill_id, 0, &failed))
                    .await?;
                metrics::counter!("payments_failed_total", "service" => "payment", "reason" => err.code)
                    .increment(1);
                return Ok((tx, Outcome::Refused(err)));
            }
            let payment = store::insert_payment(
                &mut tx,
                &bill,
                p.amount.0,
                method.as_str(),
                &key,
                &fingerprint,
                now,
                store::reference,
            )
            .await?;
            let captured = PaymentEvent::Captured(Captured {
                payment_id: payment.payment_id,
                bill_id: bill.bill_id,
                patient_id: bill.patient_id,
                amount: payment.amount,
                method: method.clone(),
                reference: payment.reference.clone(),
                legacy: false,
            });
            ctx.outbox
                .enqueue(
                    &mut tx,
                    NewEvent::of("bill-payment", bill.bill_id, payment.payment_id, &captured),
                )
                .await?;
            Ok((tx, Outcome::Done(StatusCode::CREATED, payment)))
        })
        .await?;
    Ok(match answer {
        Answer::Fresh(status, payment) => {
            captured_log(&payment);
            (status, axum::Json(payment)).into_response()
        }
        Answer::Replay(stored) => stored.into_response(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PaymentQuery {
    /// The bill whose payments to list.
    bill_id: i64,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The payments of a bill.
#[utoipa::path(get, path = "/v1/payments", tag = "payments", params(PaymentQuery),
    responses((status = 200, body = Page<Payment>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(ctx): Ctx,
    Query(q): Query<PaymentQuery>,
) -> Result<Json<Page<Payment>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let rows = store::of_bill(
        &mut *ctx.db.read().await?,
        q.bill_id,
        page.after_or_min(),
        page.fetch(),
    )
    .await?;
    Ok(Json(page.page(rows, |p| p.payment_id)))
}

/// One payment.
#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments", params(("id" = i64, Path, description = "Payment id")),
    responses((status = 200, body = Payment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(State(ctx): Ctx, Path(id): Path<i64>) -> Result<Json<Payment>, Error> {
    store::get(&mut *ctx.db.read().await?, id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("payment {id}")))
}

/// Refund part or all of a payment (`Idempotency-Key` required); never more than was paid
/// (`refund_exceeds_paid`).
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", tag = "payments",
    params(("id" = i64, Path, description = "Payment id"), ("Idempotency-Key" = String, Header, description = "Required")),
    request_body = NewRefund,
    responses((status = 201, body = Refund), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, description = "refund_exceeds_paid, idempotency_key_reused", body = ErrorBody)))]
async fn refund(
    State(ctx): Ctx,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(r): Json<NewRefund>,
) -> Result<Response, Error> {
    let key = required_key(&headers)?;
    hms_kit::money::positive("amount", r.amount)?;
    let idem = Idempotent::new(
        &ctx.db,
        Some(&key),
        "refunds.create",
        &id.to_string(),
        &caller.subject,
        &r,
    )?;
    if let Some(stored) = idem.replay().await? {
        return Ok(stored.into_response());
    }
    let fingerprint = idem
        .request()
        .map(|r| r.fingerprint.clone())
        .unwrap_or_default();
    let payment = store::get(&mut *ctx.db.read().await?, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("payment {id}")))?;
    let now = ctx.clock.now();
    let answer = idem
        .run(&ctx.outbox, now, |mut tx| async {
            let Some(refund) = store::refund(
                &mut tx,
                &payment,
                r.reason.trim(),
                r.amount.0,
                &key,
                &fingerprint,
                now,
            )
            .await?
            else {
                let current = store::get(&mut *tx, id)
                    .await?
                    .unwrap_or_else(|| payment.clone());
                return Ok((
                    tx,
                    Outcome::Refused(domain::not_refundable(&current, r.amount)),
                ));
            };
            let patient_id = store::balance(&mut *tx, payment.bill_id)
                .await?
                .map(|b| b.patient_id)
                .unwrap_or_default();
            let refunded = PaymentEvent::Refunded(Refunded {
                refund_id: refund.refund_id,
                payment_id: payment.payment_id,
                bill_id: payment.bill_id,
                patient_id,
                amount: refund.amount,
            });
            ctx.outbox
                .enqueue(
                    &mut tx,
                    NewEvent::of(
                        "bill-payment",
                        payment.bill_id,
                        payment.payment_id,
                        &refunded,
                    ),
                )
                .await?;
            Ok((tx, Outcome::Done(StatusCode::CREATED, refund)))
        })
        .await?;
    Ok(match answer {
        Answer::Fresh(status, refund) => (status, axum::Json(refund)).into_response(),
        Answer::Replay(stored) => stored.into_response(),
    })
}

hms_kit::event_routes!(
    PaymentCtx,
    prepare_event,
    /// Bill events from billing: the amount due and status payment charges against.
);

async fn prepare_event(
    _ctx: Arc<PaymentCtx>,
    caller: Caller,
    ev: Event,
) -> Result<hms_kit::inbox::Effect, Error> {
    hms_kit::inbox::authorise(&caller, &ev, &[Service::Billing])?;
    let Some(event) = hms_kit::inbox::decode::<BillEvent>(&ev)? else {
        return Ok(hms_kit::inbox::no_effect());
    };
    let b = event.bill();
    let (bill_id, patient_id, due) = (b.bill_id, b.patient_id, b.amount_due);
    let status = b.status.as_str().to_string();
    let seq = ev.aggregate_seq;
    Ok(hms_kit::inbox::effect(move |tx| {
        Box::pin(
            async move { store::apply_bill(tx, bill_id, patient_id, due.0, &status, seq).await },
        )
    }))
}

/// Import one legacy payment (admin), keeping its id and reference. It is captured against the
/// bill under the same ledger rule as any payment: a VOID bill, or more than the bill owes, is
/// refused (422) rather than corrupting the balance. Repeating changes nothing.
#[utoipa::path(post, path = "/v1/payments/import", tag = "payments", request_body = LegacyPayment,
    responses((status = 200, body = ImportOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "bill_not_payable, overpayment", body = ErrorBody)))]
async fn import(
    State(ctx): Ctx,
    headers: HeaderMap,
    Json(p): Json<LegacyPayment>,
) -> Result<Json<ImportOutcome>, Error> {
    hms_kit::import::legacy_id("payment_id", p.payment_id)?;
    let (method, warnings) = domain::legacy_method(&p.method)?;
    hms_kit::money::positive("amount", p.amount)?;
    // In a dry run, a bill written by an earlier row of the run (and rolled back) and what
    // earlier payments of the run captured are known only from what the caller vouches for;
    // they are written into this row's transaction and judged by the same ledger rule.
    let vouched = hms_kit::dry_run::context(&headers).and_then(|c| c.bill);
    let known = match (snapshot(&ctx, p.bill_id).await, &vouched) {
        (Err(e), Some(_)) if e.status == StatusCode::NOT_FOUND => None,
        (b, _) => Some(b?),
    };
    let mut tx = ctx.db.begin().await?;
    if let Some(v) = &vouched {
        store::vouch_bill(&mut tx, p.bill_id, v, known.is_none()).await?;
    }
    let bill = match known {
        Some(b) => store::balance(&mut *tx, b.bill_id).await?.unwrap_or(b),
        None => store::balance(&mut *tx, p.bill_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("bill {}", p.bill_id)))?,
    };
    match store::import(ctx.db.backend(), &mut tx, &bill, &p, method.as_str()).await? {
        None => {
            return Ok(Json(ImportOutcome {
                outcome: "already_present".into(),
                warnings,
            }))
        }
        Some(false) => {
            let b = store::balance(&mut *tx, bill.bill_id)
                .await?
                .unwrap_or(bill);
            return Err(if b.status == "VOID" {
                Error::rule(
                    "bill_not_payable",
                    format!(
                        "bill {} is VOID; a payment against it needs reconciling by hand",
                        b.bill_id
                    ),
                )
            } else {
                Error::rule(
                    "overpayment",
                    format!(
                        "payment {} of {} is more than bill {} has left to pay ({})",
                        p.payment_id,
                        p.amount,
                        b.bill_id,
                        hms_client::Money(b.total - (b.captured - b.refunded)),
                    ),
                )
            });
        }
        Some(true) => {}
    }
    let captured = PaymentEvent::Captured(Captured {
        payment_id: p.payment_id,
        bill_id: bill.bill_id,
        patient_id: bill.patient_id,
        amount: p.amount,
        method,
        reference: p.reference.trim().to_string(),
        legacy: true,
    });
    ctx.outbox
        .enqueue(
            &mut tx,
            NewEvent::of("bill-payment", bill.bill_id, p.payment_id, &captured),
        )
        .await?;
    ctx.outbox.commit(tx).await?;
    Ok(Json(ImportOutcome {
        outcome: "imported".into(),
        warnings,
    }))
}

hms_kit::legacy_ids_route!(
    PaymentCtx,
    "/v1/payments/import/ids",
    "payments",
    "payments",
    "payment_id"
);
