//! The event contract: what each producer publishes, typed.
//!
//! One enum per producing service, tagged by event type; its payloads are structs whose fields
//! are all required (a missing field is an error, never a default), with enums for statuses,
//! fee decisions and payment methods, and every amount within `0.00 ..= Money::MAX`. Producers
//! build these values and consumers match on them, so both sides are checked by the compiler
//! and a payload that does not fit is refused where it enters (the consumer answers 400 and
//! the producer's relay parks it, visible in `hms-daemon outbox status`).
//!
//! On the wire the envelope is [`crate::models::Event`]: `event_type` is the tag and `payload`
//! the struct, as JSON with the API's conventions (RFC 3339 UTC times, money as a string).

use crate::models::Event;
use crate::Money;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A producer's events: the tag list and the name of the service that publishes them.
pub trait Contract: Serialize + DeserializeOwned {
    /// The producing service (`Event::source`).
    const SOURCE: &'static str;
    /// Every event type this producer publishes.
    const EVENT_TYPES: &'static [&'static str];
    fn event_type(&self) -> &'static str;

    /// The payload as it goes on the wire.
    fn payload(&self) -> serde_json::Value {
        let mut tagged = serde_json::to_value(self).expect("contract types serialise");
        tagged["payload"].take()
    }
}

/// Why an event's payload does not fit the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    pub event_type: String,
    /// The payload field at fault (`status`, `amount_due`), or `payload` for the whole.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} payload: {}", self.event_type, self.reason)
    }
}

impl std::error::Error for ContractError {}

/// Reads `event` as one of `E`'s: `Ok(None)` for an event type `E` does not publish (a newer
/// producer's, which an older consumer may ignore), `Err` for a payload that does not fit.
pub fn decode<E: Contract>(event: &Event) -> Result<Option<E>, ContractError> {
    if !E::EVENT_TYPES.contains(&event.event_type.as_str()) {
        return Ok(None);
    }
    let tagged = serde_json::json!({ "event_type": event.event_type, "payload": event.payload });
    serde_path_to_error::deserialize(tagged)
        .map(Some)
        .map_err(|e| {
            let (field, reason) = at_fault(&e);
            ContractError {
                event_type: event.event_type.clone(),
                field: field.unwrap_or_else(|| "payload".to_string()),
                reason,
            }
        })
}

/// The field a deserialisation error is about, and the error in words.
fn at_fault(e: &serde_path_to_error::Error<serde_json::Error>) -> (Option<String>, String) {
    let reason = e.inner().to_string();
    // An error from inside an [`AppointmentAnd`] names its field itself.
    if let Some(rest) = reason.strip_prefix("at `") {
        if let Some((field, why)) = rest.split_once("`: ") {
            return (Some(field.to_string()), why.to_string());
        }
    }
    // A missing field is reported at its parent; name the field itself.
    let field = reason
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
        .map(str::to_string)
        .or_else(|| {
            e.path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    _ => None,
                })
                .next_back()
        });
    (field, reason)
}

/// A field that may be `null` but must be present: serde would read a missing `Option` as
/// `None`, and the contract has no defaults.
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

macro_rules! contract {
    ($(#[$meta:meta])* $name:ident from $source:literal {
        $($(#[$vmeta:meta])* $variant:ident($payload:ty) = $tag:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "event_type", content = "payload")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $tag)] $variant($payload),)*
        }

        impl Contract for $name {
            const SOURCE: &'static str = $source;
            const EVENT_TYPES: &'static [&'static str] = &[$($tag),*];
            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $tag,)*
                }
            }
        }
    };
}

/// Amounts in events: a decimal string within `0.00 ..= Money::MAX`, so no event carries an
/// amount that could overflow later.
mod amount {
    use crate::Money;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &Money, s: S) -> Result<S::Ok, S::Error> {
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let m = Money::deserialize(d)?;
        if m < Money::ZERO || m > Money::MAX {
            return Err(D::Error::custom(format!(
                "amount {m} is outside 0.00 to {}",
                Money::MAX
            )));
        }
        Ok(m)
    }
}

// ---- Shared vocabularies ----

/// An appointment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppointmentStatus {
    Scheduled,
    Cancelled,
    NoShow,
    Completed,
}

impl AppointmentStatus {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Scheduled => "SCHEDULED",
            AppointmentStatus::Cancelled => "CANCELLED",
            AppointmentStatus::NoShow => "NO_SHOW",
            AppointmentStatus::Completed => "COMPLETED",
        }
    }
}

/// What a cancellation or no-show costs the patient: nothing, half the fee, or all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeeDecision {
    None,
    Half,
    Full,
}

impl FeeDecision {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// A bill's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillStatus {
    Open,
    Paid,
    PartiallyRefunded,
    Refunded,
    Void,
}

impl BillStatus {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            BillStatus::Open => "OPEN",
            BillStatus::Paid => "PAID",
            BillStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            BillStatus::Refunded => "REFUNDED",
            BillStatus::Void => "VOID",
        }
    }
}

/// How a payment was made. Live payments take the first three; an imported payment keeps the
/// method the old system recorded (a cheque, a bank transfer), as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentMethod {
    #[serde(rename = "CASH")]
    Cash,
    #[serde(rename = "CARD")]
    Card,
    #[serde(rename = "UPI")]
    Upi,
    #[serde(untagged)]
    Legacy(String),
}

impl PaymentMethod {
    /// Every method a live payment takes.
    pub const LIVE: [PaymentMethod; 3] =
        [PaymentMethod::Cash, PaymentMethod::Card, PaymentMethod::Upi];

    /// A live method, read in any case.
    pub fn live(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "CASH" => Some(PaymentMethod::Cash),
            "CARD" => Some(PaymentMethod::Card),
            "UPI" => Some(PaymentMethod::Upi),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PaymentMethod::Cash => "CASH",
            PaymentMethod::Card => "CARD",
            PaymentMethod::Upi => "UPI",
            PaymentMethod::Legacy(s) => s,
        }
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---- patient ----

/// A patient's identity facts (never contact details).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientFacts {
    pub patient_id: i64,
    pub active: bool,
    pub version: i64,
}

/// A patient's update: which fields changed (names only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientChanged {
    pub patient_id: i64,
    pub active: bool,
    pub version: i64,
    pub changed: Vec<String>,
}

contract! {
    /// What the patient service publishes.
    PatientEvent from "patient" {
        Registered(PatientFacts) = "patient.registered",
        Updated(PatientChanged) = "patient.updated",
        Deactivated(PatientFacts) = "patient.deactivated",
    }
}

// ---- doctor ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoctorFacts {
    pub doctor_id: i64,
    pub department: String,
    pub specialization: String,
    #[serde(with = "amount")]
    pub consultation_fee: Money,
    pub active: bool,
    pub version: i64,
}

contract! {
    /// What the doctor service publishes.
    DoctorEvent from "doctor" {
        Registered(DoctorFacts) = "doctor.registered",
        Updated(DoctorFacts) = "doctor.updated",
        ScheduleChanged(DoctorFacts) = "doctor.schedule_changed",
    }
}

// ---- appointment ----

/// An appointment as every appointment event carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppointmentFacts {
    pub appointment_id: i64,
    pub patient_id: i64,
    pub doctor_id: i64,
    pub department: String,
    pub slot_start: DateTime<Utc>,
    pub slot_end: DateTime<Utc>,
    pub status: AppointmentStatus,
    pub reschedule_count: i64,
    /// The doctor's fee when booked.
    #[serde(with = "amount")]
    pub consultation_fee: Money,
    /// Set once a cancellation or no-show decided it; `null` before.
    #[serde(deserialize_with = "nullable")]
    pub fee_decision: Option<FeeDecision>,
}

/// An appointment event's payload: the appointment as it now stands, and what this event adds
/// (`X`), side by side in one JSON object. (Written out rather than with `#[serde(flatten)]`,
/// which would hide which field of a bad payload is at fault.)
#[derive(Debug, Clone, PartialEq)]
pub struct AppointmentAnd<X> {
    pub appointment: AppointmentFacts,
    pub extra: X,
}

impl<X: Serialize> Serialize for AppointmentAnd<X> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut all = match serde_json::to_value(&self.appointment).map_err(S::Error::custom)? {
            serde_json::Value::Object(m) => m,
            _ => return Err(S::Error::custom("an appointment is an object")),
        };
        match serde_json::to_value(&self.extra).map_err(S::Error::custom)? {
            serde_json::Value::Object(m) => all.extend(m),
            _ => return Err(S::Error::custom("an event's extra facts are an object")),
        }
        all.serialize(s)
    }
}

impl<'de, X: DeserializeOwned> Deserialize<'de> for AppointmentAnd<X> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let all = serde_json::Value::deserialize(d)?;
        fn part<T: DeserializeOwned, E: Error>(v: &serde_json::Value) -> Result<T, E> {
            serde_path_to_error::deserialize(v).map_err(|e| match at_fault(&e) {
                (Some(field), why) => E::custom(format!("at `{field}`: {why}")),
                (None, why) => E::custom(why),
            })
        }
        Ok(AppointmentAnd {
            appointment: part(&all)?,
            extra: part(&all)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rescheduled {
    pub previous_slot_start: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    pub cancelled_at: DateTime<Utc>,
    pub minutes_before_start: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoShow {
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub completed_at: DateTime<Utc>,
}

contract! {
    /// What the appointment service publishes.
    AppointmentEvent from "appointment" {
        Booked(AppointmentFacts) = "appointment.booked",
        Rescheduled(AppointmentAnd<Rescheduled>) = "appointment.rescheduled",
        Cancelled(AppointmentAnd<Cancelled>) = "appointment.cancelled",
        NoShow(AppointmentAnd<NoShow>) = "appointment.no_show",
        Completed(AppointmentAnd<Completed>) = "appointment.completed",
    }
}

impl AppointmentEvent {
    /// The appointment as it stands after this event.
    pub fn appointment(&self) -> &AppointmentFacts {
        match self {
            AppointmentEvent::Booked(a) => a,
            AppointmentEvent::Rescheduled(e) => &e.appointment,
            AppointmentEvent::Cancelled(e) => &e.appointment,
            AppointmentEvent::NoShow(e) => &e.appointment,
            AppointmentEvent::Completed(e) => &e.appointment,
        }
    }
}

// ---- prescription ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrescriptionFacts {
    pub prescription_id: i64,
    pub appointment_id: i64,
    pub patient_id: i64,
    pub doctor_id: i64,
    pub medication: String,
    pub quantity: i64,
    #[serde(with = "amount")]
    pub unit_price: Money,
}

contract! {
    /// What the prescription service publishes.
    PrescriptionEvent from "prescription" {
        Created(PrescriptionFacts) = "prescription.created",
    }
}

// ---- billing ----

/// A bill's figures as billing announces them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillFacts {
    pub bill_id: i64,
    pub patient_id: i64,
    pub appointment_id: i64,
    pub purpose: String,
    pub status: BillStatus,
    #[serde(with = "amount")]
    pub total: Money,
    #[serde(with = "amount")]
    pub amount_due: Money,
    #[serde(with = "amount")]
    pub paid: Money,
    #[serde(with = "amount")]
    pub refunded: Money,
    /// Imported history: nobody is notified about it.
    pub legacy: bool,
}

contract! {
    /// What the billing service publishes.
    BillEvent from "billing" {
        Created(BillFacts) = "bill.created",
        Updated(BillFacts) = "bill.updated",
        Paid(BillFacts) = "bill.paid",
        Refunded(BillFacts) = "bill.refunded",
        Voided(BillFacts) = "bill.voided",
    }
}

impl BillEvent {
    pub fn bill(&self) -> &BillFacts {
        match self {
            BillEvent::Created(b)
            | BillEvent::Updated(b)
            | BillEvent::Paid(b)
            | BillEvent::Refunded(b)
            | BillEvent::Voided(b) => b,
        }
    }
}

// ---- payment ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    pub payment_id: i64,
    pub bill_id: i64,
    pub patient_id: i64,
    #[serde(with = "amount")]
    pub amount: Money,
    pub method: PaymentMethod,
    pub reference: String,
    /// Imported history: nobody is notified about it.
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refunded {
    pub refund_id: i64,
    pub payment_id: i64,
    pub bill_id: i64,
    pub patient_id: i64,
    #[serde(with = "amount")]
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub bill_id: i64,
    pub patient_id: i64,
    #[serde(with = "amount")]
    pub amount: Money,
    /// The refusal's error code (`overpayment`, `bill_not_payable`).
    pub reason: String,
}

contract! {
    /// What the payment service publishes.
    PaymentEvent from "payment" {
        Captured(Captured) = "payment.captured",
        Refunded(Refunded) = "payment.refunded",
        Failed(Failed) = "payment.failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(event_type: &str, payload: serde_json::Value) -> Event {
        Event {
            event_id: uuid::Uuid::new_v4(),
            event_type: event_type.into(),
            source: "billing".into(),
            aggregate_type: "bill".into(),
            aggregate_id: "1".into(),
            aggregate_seq: 1,
            occurred_at: Utc::now(),
            correlation_id: "c".into(),
            payload,
        }
    }

    fn bill() -> BillFacts {
        BillFacts {
            bill_id: 1,
            patient_id: 2,
            appointment_id: 3,
            purpose: "consultation".into(),
            status: BillStatus::Open,
            total: Money(52500),
            amount_due: Money(52500),
            paid: Money::ZERO,
            refunded: Money::ZERO,
            legacy: false,
        }
    }

    #[test]
    fn events_round_trip_through_the_envelope() {
        let ev = BillEvent::Paid(bill());
        let wire = envelope(ev.event_type(), ev.payload());
        assert_eq!(wire.payload["status"], "OPEN");
        assert_eq!(wire.payload["total"], "525.00");
        assert_eq!(decode::<BillEvent>(&wire).unwrap(), Some(ev));
    }

    #[test]
    fn a_missing_or_unknown_value_is_an_error_never_a_default() {
        let mut payload = BillEvent::Created(bill()).payload();
        payload.as_object_mut().unwrap().remove("status");
        let err = decode::<BillEvent>(&envelope("bill.created", payload.clone())).unwrap_err();
        assert_eq!(err.field, "status", "{err}");
        payload["status"] = "PAYABLE".into();
        let err = decode::<BillEvent>(&envelope("bill.created", payload)).unwrap_err();
        assert_eq!(err.field, "status", "{err}");
        assert!(err.reason.contains("PAYABLE"), "{err}");
    }

    #[test]
    fn amounts_beyond_the_bound_do_not_enter() {
        let mut payload = BillEvent::Created(bill()).payload();
        payload["total"] = "92233720368547758.07".into();
        let err = decode::<BillEvent>(&envelope("bill.created", payload)).unwrap_err();
        assert_eq!(err.field, "total", "{err}");
    }

    #[test]
    fn a_nullable_field_must_still_be_present() {
        let a = AppointmentFacts {
            appointment_id: 1,
            patient_id: 2,
            doctor_id: 3,
            department: "Cardiology".into(),
            slot_start: Utc::now(),
            slot_end: Utc::now(),
            status: AppointmentStatus::Scheduled,
            reschedule_count: 0,
            consultation_fee: Money(50000),
            fee_decision: None,
        };
        let mut payload = AppointmentEvent::Booked(a).payload();
        assert!(payload["fee_decision"].is_null());
        let mut ev = envelope("appointment.booked", payload.clone());
        assert!(decode::<AppointmentEvent>(&ev).unwrap().is_some());
        payload.as_object_mut().unwrap().remove("fee_decision");
        ev.payload = payload;
        assert_eq!(
            decode::<AppointmentEvent>(&ev).unwrap_err().field,
            "fee_decision"
        );
    }

    #[test]
    fn an_appointment_event_names_the_field_at_fault_in_either_part() {
        let ev = AppointmentEvent::Cancelled(AppointmentAnd {
            appointment: AppointmentFacts {
                appointment_id: 1,
                patient_id: 2,
                doctor_id: 3,
                department: "Cardiology".into(),
                slot_start: Utc::now(),
                slot_end: Utc::now(),
                status: AppointmentStatus::Cancelled,
                reschedule_count: 0,
                consultation_fee: Money(50000),
                fee_decision: Some(FeeDecision::Half),
            },
            extra: Cancelled {
                cancelled_at: Utc::now(),
                minutes_before_start: 30,
            },
        });
        let wire = envelope(ev.event_type(), ev.payload());
        assert_eq!(wire.payload["fee_decision"], "half");
        assert_eq!(wire.payload["minutes_before_start"], 30);
        assert_eq!(decode::<AppointmentEvent>(&wire).unwrap(), Some(ev));
        for (field, bad) in [
            ("fee_decision", "\"most\""),
            ("minutes_before_start", "\"soon\""),
        ] {
            let mut w = wire.clone();
            w.payload[field] = serde_json::from_str(bad).unwrap();
            assert_eq!(decode::<AppointmentEvent>(&w).unwrap_err().field, field);
        }
    }

    #[test]
    fn other_event_types_are_not_ours() {
        let wire = envelope("bill.archived", serde_json::json!({}));
        assert_eq!(decode::<BillEvent>(&wire).unwrap(), None);
    }

    #[test]
    fn legacy_methods_are_kept_as_written_and_live_ones_typed() {
        let m: PaymentMethod = serde_json::from_str("\"CHEQUE\"").unwrap();
        assert_eq!(m, PaymentMethod::Legacy("CHEQUE".into()));
        let m: PaymentMethod = serde_json::from_str("\"UPI\"").unwrap();
        assert_eq!(m, PaymentMethod::Upi);
        assert_eq!(PaymentMethod::live("card"), Some(PaymentMethod::Card));
        assert_eq!(PaymentMethod::live("cheque"), None);
    }
}
