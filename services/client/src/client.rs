//! One HTTP client for every HMS API. Cheap to clone; one connection pool underneath.

use crate::error::{ClientError, ErrorBody};
use crate::models::*;
use crate::service::Service;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where each service lives.
#[derive(Debug, Clone)]
pub struct ServiceUrls(BTreeMap<Service, String>);

impl ServiceUrls {
    /// The embedded default: every service on `host` at its default port.
    pub fn local(host: &str) -> Self {
        Self::with_base_port(host, 8001)
    }

    /// Every service on `host`, patient at `base_port` and the rest after it.
    pub fn with_base_port(host: &str, base_port: u16) -> Self {
        ServiceUrls(
            Service::ALL
                .into_iter()
                .map(|s| (s, format!("http://{host}:{}", base_port + s.port_offset())))
                .collect(),
        )
    }

    /// Every service behind one path-routing ingress: `{base}/patient`, `{base}/doctor`, ….
    pub fn behind_ingress(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        ServiceUrls(
            Service::ALL
                .into_iter()
                .map(|s| (s, format!("{base}/{}", s.name())))
                .collect(),
        )
    }

    /// These URLs, each overridden by its `HMS_<SERVICE>_URL` variable where one is set
    /// (`HMS_PATIENT_URL`, `HMS_DOCTOR_URL`, …).
    pub fn with_env_overrides(mut self) -> Self {
        for svc in Service::ALL {
            if let Ok(u) = std::env::var(format!("HMS_{}_URL", svc.name().to_uppercase())) {
                self.set(svc, u);
            }
        }
        self
    }

    pub fn set(&mut self, service: Service, url: impl Into<String>) {
        self.0
            .insert(service, url.into().trim_end_matches('/').to_string());
    }

    pub fn get(&self, service: Service) -> &str {
        self.0.get(&service).map(String::as_str).unwrap_or("")
    }
}

/// The typed client. Every call names the service it goes to, so an outage names it too.
#[derive(Debug, Clone)]
pub struct HmsClient {
    http: reqwest::Client,
    urls: ServiceUrls,
    token: Option<String>,
    correlation_id: Option<String>,
    traceparent: Option<String>,
    dry_run: bool,
    dry_run_context: Option<String>,
}

impl HmsClient {
    /// A client with its own connection pool and the given per-request timeout.
    pub fn new(urls: ServiceUrls, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client without TLS always builds");
        Self::with_http(http, urls)
    }

    /// A client sharing an existing connection pool.
    pub fn with_http(http: reqwest::Client, urls: ServiceUrls) -> Self {
        HmsClient {
            http,
            urls,
            token: None,
            correlation_id: None,
            traceparent: None,
            dry_run: false,
            dry_run_context: None,
        }
    }

    /// The same client, sending this bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same client, forwarding this correlation id (and W3C trace context, when known).
    /// Every request a dry run (`Hms-Dry-Run: true`, admin only): judged and written as
    /// usual, then rolled back.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// The same client, vouching for `context` with its dry-run requests.
    pub fn vouching(mut self, context: &DryRunContext) -> Self {
        self.dry_run_context = serde_json::to_string(context).ok();
        self
    }

    pub fn with_correlation(mut self, correlation_id: &str, traceparent: Option<&str>) -> Self {
        self.correlation_id = Some(correlation_id.to_string());
        self.traceparent = traceparent.map(str::to_string);
        self
    }

    pub fn urls(&self) -> &ServiceUrls {
        &self.urls
    }

    /// A request to `service` at `path`, with token and correlation headers attached.
    pub fn request(&self, service: Service, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{}", self.urls.get(service), path);
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = &self.correlation_id {
            req = req.header("x-correlation-id", c);
        }
        if let Some(t) = &self.traceparent {
            req = req.header("traceparent", t);
        }
        if self.dry_run {
            req = req.header("hms-dry-run", "true");
            if let Some(c) = &self.dry_run_context {
                req = req.header("hms-dry-run-context", c);
            }
        }
        req
    }

    /// Sends `req` and decodes a success body as `T`, or the standard error body.
    pub async fn send<T: DeserializeOwned>(
        &self,
        service: Service,
        req: RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| unavailable(service, &e))?;
        decode(service, resp).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let mut req = self.request(service, method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(service, req).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        let req = self.request(service, Method::GET, path).query(query);
        self.send(service, req).await
    }

    // ---- operations -----------------------------------------------------------------------

    /// `GET /health` of a service.
    pub async fn health(&self, service: Service) -> Result<HealthStatus, ClientError> {
        self.get(service, "/health", &()).await
    }

    /// `GET /ready` of a service.
    pub async fn ready(&self, service: Service) -> Result<HealthStatus, ClientError> {
        self.get(service, "/ready", &()).await
    }

    /// `POST /v1/events` to a subscriber (service tokens only).
    pub async fn post_event(&self, to: Service, event: &Event) -> Result<EventAck, ClientError> {
        self.call(to, Method::POST, "/v1/events", Some(event)).await
    }

    // ---- patient ----------------------------------------------------------------------------

    pub async fn create_patient(&self, new: &NewPatient) -> Result<Patient, ClientError> {
        self.call(Service::Patient, Method::POST, "/v1/patients", Some(new))
            .await
    }

    pub async fn get_patient(&self, id: i64) -> Result<Patient, ClientError> {
        self.get(Service::Patient, &format!("/v1/patients/{id}"), &())
            .await
    }

    pub async fn list_patients(&self, q: &PatientQuery) -> Result<Page<Patient>, ClientError> {
        self.get(Service::Patient, "/v1/patients", q).await
    }

    /// The patients of `ids` that exist (`GET /v1/patients?ids=`, at most 100; each recorded
    /// in their audit trail as a read), in the order asked.
    pub async fn get_patients(&self, ids: &[i64]) -> Result<Vec<Patient>, ClientError> {
        let ids = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let q = PatientQuery {
            ids: Some(ids),
            ..Default::default()
        };
        Ok(self.list_patients(&q).await?.items)
    }

    /// `PATCH /v1/patients/{id}`; with `if_match`, refused unless the version still matches.
    pub async fn update_patient(
        &self,
        id: i64,
        update: &PatientUpdate,
        if_match: Option<i64>,
    ) -> Result<Patient, ClientError> {
        let mut req = self
            .request(
                Service::Patient,
                Method::PATCH,
                &format!("/v1/patients/{id}"),
            )
            .json(update);
        if let Some(v) = if_match {
            req = req.header("if-match", format!("W/\"{v}\""));
        }
        self.send(Service::Patient, req).await
    }

    pub async fn deactivate_patient(&self, id: i64) -> Result<Patient, ClientError> {
        self.call(
            Service::Patient,
            Method::POST,
            &format!("/v1/patients/{id}/deactivate"),
            None::<&()>,
        )
        .await
    }

    pub async fn patient_audit(
        &self,
        id: i64,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEntry>, ClientError> {
        #[derive(Serialize)]
        struct Q<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            cursor: Option<&'a str>,
        }
        self.get(
            Service::Patient,
            &format!("/v1/patients/{id}/audit"),
            &Q { limit, cursor },
        )
        .await
    }

    // ---- doctor -----------------------------------------------------------------------------

    pub async fn create_doctor(&self, new: &NewDoctor) -> Result<Doctor, ClientError> {
        self.call(Service::Doctor, Method::POST, "/v1/doctors", Some(new))
            .await
    }

    pub async fn get_doctor(&self, id: i64) -> Result<Doctor, ClientError> {
        self.get(Service::Doctor, &format!("/v1/doctors/{id}"), &())
            .await
    }

    pub async fn list_doctors(&self, q: &DoctorQuery) -> Result<Page<Doctor>, ClientError> {
        self.get(Service::Doctor, "/v1/doctors", q).await
    }

    pub async fn update_doctor(
        &self,
        id: i64,
        update: &DoctorUpdate,
    ) -> Result<Doctor, ClientError> {
        self.call(
            Service::Doctor,
            Method::PATCH,
            &format!("/v1/doctors/{id}"),
            Some(update),
        )
        .await
    }

    pub async fn working_hours(&self, id: i64) -> Result<WeeklyHours, ClientError> {
        self.get(
            Service::Doctor,
            &format!("/v1/doctors/{id}/working-hours"),
            &(),
        )
        .await
    }

    pub async fn set_working_hours(
        &self,
        id: i64,
        week: &WeeklyHours,
    ) -> Result<WeeklyHours, ClientError> {
        self.call(
            Service::Doctor,
            Method::PUT,
            &format!("/v1/doctors/{id}/working-hours"),
            Some(week),
        )
        .await
    }

    pub async fn add_leave(&self, id: i64, leave: &NewLeave) -> Result<Leave, ClientError> {
        self.call(
            Service::Doctor,
            Method::POST,
            &format!("/v1/doctors/{id}/leave"),
            Some(leave),
        )
        .await
    }

    /// `DELETE /v1/doctors/{id}/leave/{leave_id}`.
    pub async fn remove_leave(&self, id: i64, leave_id: i64) -> Result<(), ClientError> {
        self.call(
            Service::Doctor,
            Method::DELETE,
            &format!("/v1/doctors/{id}/leave/{leave_id}"),
            None::<&()>,
        )
        .await
    }

    pub async fn list_leave(&self, id: i64) -> Result<Page<Leave>, ClientError> {
        self.get(Service::Doctor, &format!("/v1/doctors/{id}/leave"), &())
            .await
    }

    pub async fn doctor_availability(
        &self,
        id: i64,
        date: chrono::NaiveDate,
    ) -> Result<DoctorAvailability, ClientError> {
        self.get(
            Service::Doctor,
            &format!("/v1/doctors/{id}/availability"),
            &[("date", date.to_string())],
        )
        .await
    }

    pub async fn department_availability(
        &self,
        department: &str,
        date: chrono::NaiveDate,
    ) -> Result<DepartmentAvailability, ClientError> {
        self.get(
            Service::Doctor,
            "/v1/availability",
            &[("department", department), ("date", &date.to_string())],
        )
        .await
    }

    pub async fn doctor_schedule(
        &self,
        id: i64,
        date: chrono::NaiveDate,
    ) -> Result<DoctorSchedule, ClientError> {
        self.get(
            Service::Doctor,
            &format!("/v1/doctors/{id}/schedule"),
            &[("date", date.to_string())],
        )
        .await
    }

    /// `GET /v1/doctors/{id}/schedules`: `days` of doctor `id`'s schedule from `from`, in order.
    pub async fn doctor_schedules(
        &self,
        id: i64,
        from: chrono::NaiveDate,
        days: u32,
    ) -> Result<Vec<DoctorSchedule>, ClientError> {
        self.get(
            Service::Doctor,
            &format!("/v1/doctors/{id}/schedules"),
            &[("from", from.to_string()), ("days", days.to_string())],
        )
        .await
    }

    // ---- appointment ------------------------------------------------------------------------

    /// `POST /v1/appointments`; a retry with the same `idempotency_key` returns the same one.
    pub async fn book_appointment(
        &self,
        new: &NewAppointment,
        idempotency_key: Option<&str>,
    ) -> Result<Appointment, ClientError> {
        let mut req = self
            .request(Service::Appointment, Method::POST, "/v1/appointments")
            .json(new);
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        self.send(Service::Appointment, req).await
    }

    pub async fn get_appointment(&self, id: i64) -> Result<Appointment, ClientError> {
        self.get(Service::Appointment, &format!("/v1/appointments/{id}"), &())
            .await
    }

    pub async fn list_appointments(
        &self,
        q: &AppointmentQuery,
    ) -> Result<Page<Appointment>, ClientError> {
        self.get(Service::Appointment, "/v1/appointments", q).await
    }

    pub async fn reschedule_appointment(
        &self,
        id: i64,
        to: &Reschedule,
        if_match: Option<i64>,
    ) -> Result<Appointment, ClientError> {
        let req = self.transition_request(id, "reschedule", if_match).json(to);
        self.send(Service::Appointment, req).await
    }

    /// `cancel`, `no-show` or `complete`.
    pub async fn transition_appointment(
        &self,
        id: i64,
        action: &str,
        if_match: Option<i64>,
    ) -> Result<Appointment, ClientError> {
        let req = self.transition_request(id, action, if_match);
        self.send(Service::Appointment, req).await
    }

    fn transition_request(&self, id: i64, action: &str, if_match: Option<i64>) -> RequestBuilder {
        let mut req = self.request(
            Service::Appointment,
            Method::POST,
            &format!("/v1/appointments/{id}/{action}"),
        );
        if let Some(v) = if_match {
            req = req.header("if-match", format!("W/\"{v}\""));
        }
        req
    }

    // ---- prescription -----------------------------------------------------------------------

    pub async fn create_prescription(
        &self,
        new: &NewPrescription,
    ) -> Result<Prescription, ClientError> {
        self.call(
            Service::Prescription,
            Method::POST,
            "/v1/prescriptions",
            Some(new),
        )
        .await
    }

    pub async fn get_prescription(&self, id: i64) -> Result<Prescription, ClientError> {
        self.get(
            Service::Prescription,
            &format!("/v1/prescriptions/{id}"),
            &(),
        )
        .await
    }

    pub async fn list_prescriptions(
        &self,
        q: &PrescriptionQuery,
    ) -> Result<Page<Prescription>, ClientError> {
        self.get(Service::Prescription, "/v1/prescriptions", q)
            .await
    }

    pub async fn formulary(&self) -> Result<Page<Medication>, ClientError> {
        self.get(Service::Prescription, "/v1/formulary", &[("limit", "500")])
            .await
    }

    pub async fn add_medication(&self, new: &NewMedication) -> Result<Medication, ClientError> {
        self.call(
            Service::Prescription,
            Method::POST,
            "/v1/formulary",
            Some(new),
        )
        .await
    }

    pub async fn update_medication(
        &self,
        id: i64,
        update: &MedicationUpdate,
    ) -> Result<Medication, ClientError> {
        self.call(
            Service::Prescription,
            Method::PATCH,
            &format!("/v1/formulary/{id}"),
            Some(update),
        )
        .await
    }

    // ---- notification -----------------------------------------------------------------------

    pub async fn list_notifications(
        &self,
        q: &NotificationQuery,
    ) -> Result<Page<Notification>, ClientError> {
        self.get(Service::Notification, "/v1/notifications", q)
            .await
    }

    pub async fn list_reminders(&self, q: &ReminderQuery) -> Result<Page<Reminder>, ClientError> {
        self.get(Service::Notification, "/v1/reminders", q).await
    }

    // ---- billing ----------------------------------------------------------------------------

    pub async fn get_bill(&self, id: i64) -> Result<Bill, ClientError> {
        self.get(Service::Billing, &format!("/v1/bills/{id}"), &())
            .await
    }

    pub async fn list_bills(&self, q: &BillQuery) -> Result<Page<Bill>, ClientError> {
        self.get(Service::Billing, "/v1/bills", q).await
    }

    pub async fn void_bill(&self, id: i64) -> Result<Bill, ClientError> {
        self.call(
            Service::Billing,
            Method::POST,
            &format!("/v1/bills/{id}/void"),
            None::<&()>,
        )
        .await
    }

    pub async fn adjust_bill(&self, id: i64, a: &NewAdjustment) -> Result<Adjustment, ClientError> {
        self.call(
            Service::Billing,
            Method::POST,
            &format!("/v1/bills/{id}/adjustments"),
            Some(a),
        )
        .await
    }

    // ---- payment ----------------------------------------------------------------------------

    /// `POST /v1/payments` with `Idempotency-Key: key`.
    pub async fn pay(&self, p: &NewPayment, key: &str) -> Result<Payment, ClientError> {
        self.pay_once(p, key).await.map(|(payment, _)| payment)
    }

    /// As [`Self::pay`], and whether the answer is a replay: this key already took this
    /// payment, and nothing more was charged (`Idempotent-Replayed: true`).
    pub async fn pay_once(
        &self,
        p: &NewPayment,
        key: &str,
    ) -> Result<(Payment, bool), ClientError> {
        let req = self
            .request(Service::Payment, Method::POST, "/v1/payments")
            .header("idempotency-key", key)
            .json(p);
        let resp = req
            .send()
            .await
            .map_err(|e| unavailable(Service::Payment, &e))?;
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        Ok((decode(Service::Payment, resp).await?, replayed))
    }

    pub async fn refund(
        &self,
        payment_id: i64,
        r: &NewRefund,
        key: &str,
    ) -> Result<Refund, ClientError> {
        let req = self
            .request(
                Service::Payment,
                Method::POST,
                &format!("/v1/payments/{payment_id}/refunds"),
            )
            .header("idempotency-key", key)
            .json(r);
        self.send(Service::Payment, req).await
    }

    pub async fn get_payment(&self, id: i64) -> Result<Payment, ClientError> {
        self.get(Service::Payment, &format!("/v1/payments/{id}"), &())
            .await
    }

    pub async fn payments_of_bill(&self, bill_id: i64) -> Result<Page<Payment>, ClientError> {
        self.get(
            Service::Payment,
            "/v1/payments",
            &[("bill_id", bill_id.to_string()), ("limit", "500".into())],
        )
        .await
    }

    /// `POST /v1/appointments/import` (admin).
    pub async fn import_appointment(
        &self,
        a: &LegacyAppointment,
    ) -> Result<ImportOutcome, ClientError> {
        self.call(
            Service::Appointment,
            Method::POST,
            "/v1/appointments/import",
            Some(a),
        )
        .await
    }

    /// `POST /v1/bills/import` (admin).
    pub async fn import_bill(&self, b: &LegacyBill) -> Result<ImportOutcome, ClientError> {
        self.call(Service::Billing, Method::POST, "/v1/bills/import", Some(b))
            .await
    }

    /// `POST /v1/<records>/import/ids` (admin): ids through `through` are the legacy data's.
    pub async fn reserve_legacy_ids(
        &self,
        service: Service,
        records: &str,
        through: i64,
    ) -> Result<(), ClientError> {
        self.call::<IdReservation>(
            service,
            Method::POST,
            &format!("/v1/{records}/import/ids"),
            Some(&IdReservation { through }),
        )
        .await
        .map(|_| ())
    }

    /// `POST /v1/prescriptions/import` (admin).
    pub async fn import_prescription(
        &self,
        p: &LegacyPrescription,
    ) -> Result<ImportOutcome, ClientError> {
        self.call(
            Service::Prescription,
            Method::POST,
            "/v1/prescriptions/import",
            Some(p),
        )
        .await
    }

    /// `POST /v1/payments/import` (admin).
    pub async fn import_payment(&self, p: &LegacyPayment) -> Result<ImportOutcome, ClientError> {
        self.call(
            Service::Payment,
            Method::POST,
            "/v1/payments/import",
            Some(p),
        )
        .await
    }
}

fn unavailable(service: Service, e: &reqwest::Error) -> ClientError {
    let at = e
        .url()
        .map(|u| format!(" at {}", u.origin().ascii_serialization()))
        .unwrap_or_default();
    let reason = if e.is_timeout() {
        format!("timed out{at}")
    } else if e.is_connect() {
        format!("connection refused or unreachable{at}")
    } else {
        e.to_string()
    };
    ClientError::Unavailable {
        service: service.name().to_string(),
        reason,
    }
}

/// Turns a response into `T`, or into the error it carries.
pub async fn decode<T: DeserializeOwned>(
    service: Service,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| unavailable(service, &e))?;
    if status.is_success() {
        // No content decodes as `()` (JSON null), so a DELETE is an ordinary call.
        let body: &[u8] = if status == StatusCode::NO_CONTENT && bytes.is_empty() {
            b"null"
        } else {
            &bytes
        };
        return serde_json::from_slice(body).map_err(|e| ClientError::Protocol {
            service: service.name().to_string(),
            reason: format!("status {status}: {e}"),
        });
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ClientError::Api {
            service: service.name().to_string(),
            status: status.as_u16(),
            body,
        }),
        Err(_) if status == StatusCode::BAD_GATEWAY || status == StatusCode::GATEWAY_TIMEOUT => {
            Err(ClientError::Unavailable {
                service: service.name().to_string(),
                reason: format!("gateway answered {status}"),
            })
        }
        Err(_) => Err(ClientError::Protocol {
            service: service.name().to_string(),
            reason: format!(
                "status {status} without the standard error body: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        }),
    }
}
