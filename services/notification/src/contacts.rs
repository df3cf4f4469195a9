//! Patients' contact details for the messages, read from the patient service when a message
//! is made (so a changed phone number is honoured; each read is audited there).
//!
//! The events of a delivered batch are prepared at once, and each needs its patient: the
//! reads go through a [`Coalescer`], so those that arrive together are one
//! `GET /v1/patients?ids=` instead of a request each.

use hms_client::models::Patient;
use hms_kit::coalesce::{fetch_with, Coalescer};
use hms_kit::correlation::{self, RequestContext};
use hms_kit::downstream::Downstream;
use hms_kit::Error;

/// Patients asked for in one call at most (the patient service's limit for `ids`).
const PER_CALL: usize = 100;
/// Calls to the patient service at once; what arrives meanwhile waits for the next.
const CALLS_AT_ONCE: usize = 2;

/// The lookups of one notification service.
#[derive(Debug, Clone)]
pub struct Contacts(Coalescer<i64, Patient>);

impl Contacts {
    /// Starts the lookup task (on the current runtime).
    pub fn spawn(downstream: Downstream) -> Self {
        Contacts(Coalescer::spawn(
            PER_CALL,
            CALLS_AT_ONCE,
            |id| Error::not_found(format!("patient {id}")),
            fetch_with(downstream, |downstream, ids| async move {
                // A call for many events belongs to none of them: it gets its own
                // correlation id (its audit rows name the notification service as reader).
                let ctx = RequestContext::background("notification");
                let found = correlation::scope(ctx, downstream.client().get_patients(&ids)).await?;
                Ok(found.into_iter().map(|p| (p.patient_id, p)).collect())
            }),
        ))
    }

    /// Patient `id`, as the patient service has it now.
    pub async fn patient(&self, id: i64) -> Result<Patient, Error> {
        self.0.get(id).await
    }
}
