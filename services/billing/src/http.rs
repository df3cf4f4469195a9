//! Billing routes and their access rules.

use crate::events;
use crate::store;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hms_client::contract::BillEvent;
use hms_client::models::*;
use hms_client::ErrorBody;
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::extract::{with_etag, Json, Path, Query};
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::{Error, Service};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<ServiceCtx>>;

const READERS: &[Role] = &[Role::Reception, Role::Billing, Role::Admin, Role::Service];
const CASHIERS: &[Role] = &[Role::Billing, Role::Admin];

pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(reserve_ids))
        .routes(routes!(list))
        .routes(routes!(get_one))
        .routes(routes!(void))
        .routes(routes!(adjust))
        .routes(routes!(receive_event))
        .routes(routes!(receive_events))
        .routes(routes!(import))
        .with_state(Arc::new(ctx.clone()));
    let access = AccessTable::new(&[
        (Method::POST, "/v1/bills/import/ids", &[Role::Admin]),
        (Method::GET, "/v1/bills", READERS),
        (Method::GET, "/v1/bills/{id}", READERS),
        (Method::POST, "/v1/bills/{id}/void", CASHIERS),
        (Method::POST, "/v1/bills/{id}/adjustments", CASHIERS),
        (Method::POST, "/v1/events", &[Role::Service]),
        (Method::POST, "/v1/events/batch", &[Role::Service]),
        (Method::POST, "/v1/bills/import", &[Role::Admin]),
    ]);
    ServiceRoutes { api, access }
}

/// Bills, filtered by patient, appointment and status.
#[utoipa::path(get, path = "/v1/bills", tag = "bills", params(BillQuery),
    responses((status = 200, body = Page<Bill>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(State(ctx): Ctx, Query(q): Query<BillQuery>) -> Result<Json<Page<Bill>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let mut read = ctx.db.begin_read().await?;
    let rows = store::list(&mut read, &q, page).await?;
    read.commit().await?;
    Ok(Json(page.page(rows, |b| b.bill_id)))
}

/// One bill with its lines, tax, total, credits, paid, refunded and balance.
#[utoipa::path(get, path = "/v1/bills/{id}", tag = "bills", params(("id" = i64, Path, description = "Bill id")),
    responses((status = 200, body = Bill), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(State(ctx): Ctx, Path(id): Path<i64>) -> Result<Response, Error> {
    let mut read = ctx.db.begin_read().await?;
    let b = store::get(&mut read, id).await?;
    // Ended here, not left to its drop (a rollback sent by a task of its own).
    read.commit().await?;
    let b = b.ok_or_else(|| Error::not_found(format!("bill {id}")))?;
    Ok(with_etag(b.version, StatusCode::OK, &b))
}

/// VOID an OPEN bill nothing was paid on; anything else is 409 `invalid_transition`.
#[utoipa::path(post, path = "/v1/bills/{id}/void", tag = "bills", params(("id" = i64, Path, description = "Bill id")),
    responses((status = 200, body = Bill), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "invalid_transition", body = ErrorBody)))]
async fn void(State(ctx): Ctx, Path(id): Path<i64>) -> Result<Response, Error> {
    let mut tx = ctx.db.begin().await?;
    let Some(b) = store::void(&mut tx, id, ctx.clock.now()).await? else {
        let current = store::head(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("bill {id}")))?;
        return Err(Error::conflict(
            "invalid_transition",
            format!(
                "bill {id} is {} with {} paid; only an OPEN bill without payments can be voided",
                current.status, current.paid
            ),
        ));
    };
    events::announce(&mut tx, &ctx.outbox, &b, BillEvent::Voided).await?;
    ctx.outbox.commit(tx).await?;
    Ok(with_etag(b.version, StatusCode::OK, &b))
}

/// A credit note: lowers what is owed without touching the lines (also on a PAID bill).
#[utoipa::path(post, path = "/v1/bills/{id}/adjustments", tag = "bills", params(("id" = i64, Path, description = "Bill id")),
    request_body = NewAdjustment,
    responses((status = 201, body = Adjustment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, description = "adjustment_exceeds_total", body = ErrorBody)))]
async fn adjust(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    Json(a): Json<NewAdjustment>,
) -> Result<Response, Error> {
    hms_kit::money::positive("amount", a.amount)?;
    let reason = a.reason.trim();
    if reason.is_empty() {
        return Err(Error::validation("reason", "say why (reason)"));
    }
    if a.reason.chars().count() > 500 {
        return Err(Error::validation(
            "reason",
            "reason must be at most 500 characters",
        ));
    }
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let (locked, adj) =
        store::adjust(&mut tx, id, a.amount.0, reason, &caller.subject, now).await?;
    let b = store::recompute(&mut tx, locked, now).await?;
    events::announce(&mut tx, &ctx.outbox, &b, BillEvent::Updated).await?;
    ctx.outbox.commit(tx).await?;
    Ok((StatusCode::CREATED, axum::Json(adj)).into_response())
}

hms_kit::event_routes!(
    ServiceCtx,
    prepare_event,
    /// Events: appointment completed/cancelled/no-show, prescriptions, payments and refunds.
);

async fn prepare_event(
    ctx: Arc<ServiceCtx>,
    caller: Caller,
    ev: Event,
) -> Result<hms_kit::inbox::Effect, Error> {
    hms_kit::inbox::authorise(
        &caller,
        &ev,
        &[
            Service::Appointment,
            Service::Prescription,
            Service::Payment,
        ],
    )?;
    let Some(event) = events::incoming(&ev)? else {
        return Ok(hms_kit::inbox::no_effect());
    };
    let now = ctx.clock.now();
    let outbox = ctx.outbox.clone();
    let occurred_at = ev.occurred_at;
    Ok(hms_kit::inbox::effect(move |tx| {
        Box::pin(async move { events::apply(tx, &outbox, event, occurred_at, now).await })
    }))
}

/// Import one legacy bill (admin), keeping its id; its amount is taken as the total. The
/// payment service learns of it through `bill.created`. Repeating changes nothing.
#[utoipa::path(post, path = "/v1/bills/import", tag = "bills", request_body = LegacyBill,
    responses((status = 200, body = ImportOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, description = "the appointment has a bill already", body = ErrorBody)))]
async fn import(
    State(ctx): Ctx,
    headers: axum::http::HeaderMap,
    Json(b): Json<LegacyBill>,
) -> Result<Json<ImportOutcome>, Error> {
    hms_kit::import::legacy_id("bill_id", b.bill_id)?;
    let status = b.status.trim().to_uppercase();
    if !hms_client::models::BILL_STATUSES.contains(&status.as_str()) {
        return Err(Error::validation(
            "status",
            format!("status '{}' is not a bill status", b.status),
        ));
    }
    hms_kit::money::bounded(
        "amount",
        b.amount,
        hms_client::Money::ZERO,
        hms_client::Money::MAX,
    )?;
    let mut tx = ctx.db.begin().await?;
    let vouched = hms_kit::dry_run::context(&headers).and_then(|c| c.consultation_bill);
    let Some((bill, warnings)) =
        store::import(ctx.db.backend(), &mut tx, &b, &status, vouched).await?
    else {
        return Ok(Json(ImportOutcome {
            outcome: "already_present".into(),
            warnings: vec![],
        }));
    };
    events::announce_as(&mut tx, &ctx.outbox, &bill, BillEvent::Created, true).await?;
    ctx.outbox.commit(tx).await?;
    Ok(Json(ImportOutcome {
        outcome: "imported".into(),
        warnings,
    }))
}

hms_kit::legacy_ids_route!(
    ServiceCtx,
    "/v1/bills/import/ids",
    "bills",
    "bills",
    "bill_id"
);
