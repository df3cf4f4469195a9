//! Bad input: every validation error's code and field, and the standard error body everywhere.

use crate::both_backends;
use crate::support::*;
use hms_kit::auth::Role;
use hms_kit::Service;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn post(app: &TestApp, body: &str) -> (StatusCode, Value) {
    let req = app.req(
        Role::Reception,
        Method::POST,
        Service::Patient,
        "/v1/patients",
    );
    answer(
        req.header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

fn assert_standard(body: &Value) {
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
    assert!(
        body["correlationId"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{body}"
    );
}

both_backends! {
    async fn each_invalid_field_is_named(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let ok = json!({"name": "Kavya Menon", "email": "k@example.org", "phone": "9123456780", "dob": "1990-02-03"});
        let with = |k: &str, v: Value| { let mut o = ok.clone(); o[k] = v; o.to_string() };
        let without = |k: &str| { let mut o = ok.clone(); o.as_object_mut().unwrap().remove(k); o.to_string() };
        let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive().to_string();
        let cases: Vec<(String, &str)> = vec![
            (without("name"), "name"),
            (with("name", json!("   ")), "name"),
            (with("name", json!(42)), "name"),
            (with("name", json!("A1B")), "name"),
            (with("name", json!("<script>alert(1)</script>")), "name"),
            (with("name", json!("Kavya\u{200B}Menon")), "name"),
            (with("name", json!("Kavya \u{202E}noneM")), "name"),
            (with("email", json!("not-an-email")), "email"),
            (with("email", json!("a@b")), "email"),
            (without("phone"), "phone"),
            (with("phone", json!("12345")), "phone"),
            (with("phone", json!("98765x4321")), "phone"),
            (without("dob"), "dob"),
            (with("dob", json!("1990-13-45")), "dob"),
            (with("active", json!(false)), "active"),
        ];
        for (body, field) in cases {
            let (status, v) = post(&app, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {v}");
            assert_eq!(v["code"], "validation_failed", "{body}");
            assert_eq!(v["details"]["field"], field, "{body} → {v}");
            assert_standard(&v);
        }
        // A well-formed date that is wrong only against today: a rule (422), still naming the field.
        let (status, v) = post(&app, &with("dob", json!(tomorrow))).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("dob_in_future")), "{v}");
        assert_eq!(v["details"]["field"], "dob");
        let (status, v) = post(&app, "{not json").await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("validation_failed")));
        // Letters of any script with their marks are names.
        for name in ["Zoë O'Brien", "ज़ोया शर्मा", "Nguyễn Văn An", "José María"] {
            let (status, v) = post(&app, &with("name", json!(name))).await;
            assert_eq!(status, StatusCode::CREATED, "{name} → {v}");
            assert_eq!(v["name"], name);
        }
        // Nothing was stored by any of the refused ones.
        let page: Value = app.req(Role::Reception, Method::GET, Service::Patient, "/v1/patients").send().await.unwrap().json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 4, "only the four good names: {page}");
        app.stop().await;
    }

    async fn query_path_body_and_method_errors_use_the_standard_body(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let get = |path: &str| app.req(Role::Reception, Method::GET, Service::Patient, path).send();
        for (path, field) in [("/v1/patients?limit=501", Some("limit")), ("/v1/patients?limit=0", Some("limit")),
                              ("/v1/patients?limit=abc", Some("limit")), ("/v1/patients?cursor=bogus", Some("cursor")),
                              ("/v1/patients/abc", None)] {
            let resp = get(path).await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["code"], "validation_failed", "{path}");
            if let Some(f) = field { assert_eq!(v["details"]["field"], f, "{path}: {v}"); }
            assert_standard(&v);
        }
        // Wrong content type, oversize body, wrong method, unknown route.
        let resp = app.req(Role::Reception, Method::POST, Service::Patient, "/v1/patients").body("name=x").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_standard(&resp.json().await.unwrap());
        let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
        let resp = app.req(Role::Reception, Method::POST, Service::Patient, "/v1/patients")
            .header("content-type", "application/json").body(huge).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "payload_too_large");
        let resp = app.req(Role::Reception, Method::DELETE, Service::Patient, "/v1/patients").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(resp.headers()["allow"].to_str().unwrap().contains("GET"));
        assert_standard(&resp.json().await.unwrap());
        let resp = app.req(Role::Reception, Method::GET, Service::Patient, "/v1/nothing-here").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "not_found");
        assert_standard(&v);
        app.stop().await;
    }

    async fn correlation_id_is_echoed_and_named_in_errors(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let resp = app.req(Role::Reception, Method::GET, Service::Patient, "/v1/patients/424242")
            .header("x-correlation-id", "front-desk-7f3a").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()["x-correlation-id"], "front-desk-7f3a");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["correlationId"], "front-desk-7f3a");
        assert_eq!(v["message"], "patient 424242 not found");

        let resp = app.req(Role::Reception, Method::GET, Service::Patient, "/v1/patients/424242").send().await.unwrap();
        let generated = resp.headers()["x-correlation-id"].to_str().unwrap().to_string();
        assert_eq!(generated.len(), 36, "a UUID is generated when none is sent");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["correlationId"], generated.as_str());
        // The id is on the request's log lines.
        assert!(logs().contains(&generated));
        app.stop().await;
    }

    // Every line a request logs carries its fields as `span` (what the runbook tells operators
    // to search by): the line the handler writes and the request's closing line alike.
    async fn a_requests_log_lines_carry_its_correlation_id_route_and_caller(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let cid = format!("log-shape-{}", uuid::Uuid::new_v4().simple());
        let resp = app.req(Role::Reception, Method::POST, Service::Patient, "/v1/patients")
            .header("x-correlation-id", &cid).header("content-type", "application/json")
            .body(json!({"name": "Ilse Marrow", "phone": "5550001111", "dob": "1980-01-02"}).to_string())
            .send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let lines: Vec<Value> = logs().lines()
            .filter(|l| l.contains(&cid))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
            .collect();
        let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
        assert!(messages.contains(&"patient registered") && messages.contains(&"request completed"), "{messages:?}");
        for l in &lines {
            let span = &l["span"];
            assert_eq!(span["correlation_id"], cid.as_str(), "{l}");
            assert_eq!(span["route"], "/v1/patients", "{l}");
            assert_eq!(span["method"], "POST", "{l}");
            assert_eq!(span["service"], "patient", "{l}");
            assert_eq!(span["subject"], "test-reception", "{l}");
            assert_eq!(span["name"], "request", "{l}");
            assert_eq!(span["trace_id"].as_str().map(str::len), Some(32), "{l}");
            assert_eq!(l["level"], "INFO", "{l}");
            assert!(l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
            assert!(l["target"].as_str().is_some_and(|t| t.starts_with("hms_")), "{l}");
        }
        let done = lines.iter().find(|l| l["message"] == "request completed").unwrap();
        assert_eq!(done["status"], 201);
        assert!(done["latency_ms"].is_f64(), "{done}");
        // A line logged outside any request carries no request's fields.
        tracing::info!(probe = %cid, "outside a request");
        let outside = logs().lines().find(|l| l.contains("outside a request") && l.contains(&cid)).map(str::to_string).unwrap();
        let outside: Value = serde_json::from_str(&outside).unwrap();
        assert!(outside.get("span").is_none(), "{outside}");
        assert_eq!(outside["probe"], cid.as_str());
        app.stop().await;
    }
}

/// `method path body` as `role`, to `service`: status and JSON body.
async fn call(
    app: &TestApp,
    role: Role,
    service: Service,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    answer(app.req(role, method, service, path).json(&body)).await
}

both_backends! {
    async fn the_published_rules_hold_at_their_edges(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE, &hms_doctor::SERVICE]).await;
        let patient = |id: Value| json!({"patient_id": id, "name": "Edge Case", "phone": "9123456780", "dob": "1990-02-03"});
        // An id at the 64-bit limit would leave the next insert nowhere to go: refused, named.
        let (status, v) = call(&app, Role::Admin, Service::Patient, Method::POST, "/v1/patients", patient(json!(i64::MAX))).await;
        assert_eq!((status, v["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("patient_id")), "{v}");
        let (status, v) = call(&app, Role::Admin, Service::Patient, Method::POST, "/v1/patients", patient(json!(1_000_000_000_000_i64))).await;
        assert_eq!(status, StatusCode::CREATED, "the largest id from outside: {v}");
        let mut next = patient(Value::Null);
        next.as_object_mut().unwrap().remove("patient_id");
        let (status, v) = call(&app, Role::Reception, Service::Patient, Method::POST, "/v1/patients", next).await;
        assert_eq!(status, StatusCode::CREATED, "a live record after it: {v}");
        // A whole number written with a fraction is the integer (JSON Schema counts it one).
        let (status, v) = call(&app, Role::Admin, Service::Patient, Method::POST, "/v1/patients", patient(json!(5.0))).await;
        assert_eq!((status, v["patient_id"].as_i64()), (StatusCode::CREATED, Some(5)), "{v}");
        let (status, _) = call(&app, Role::Admin, Service::Patient, Method::POST, "/v1/patients", patient(json!(5.5))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // So in a path and a query (tried only when the value fails as written).
        let (status, v) = call(&app, Role::Reception, Service::Patient, Method::GET, "/v1/patients/5.0", Value::Null).await;
        assert_eq!((status, v["patient_id"].as_i64()), (StatusCode::OK, Some(5)), "{v}");
        let (status, v) = call(&app, Role::Reception, Service::Patient, Method::GET, "/v1/patients?limit=2.0", Value::Null).await;
        assert_eq!((status, v["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)), "{v}");
        let (status, _) = call(&app, Role::Reception, Service::Patient, Method::GET, "/v1/patients?limit=2.5", Value::Null).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Well formed, asking for nothing: 422, not a form error.
        let (status, v) = call(&app, Role::Reception, Service::Patient, Method::PATCH, "/v1/patients/5", json!({"name": null})).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("nothing_to_change")), "{v}");
        // Rules between fields are rules: a shift ending before it starts, a leave ending before it begins.
        let d = app.client(Role::Admin).create_doctor(&hms_testkit::new_doctor("Dr. Edge", "Cardiology", "General")).await.unwrap().doctor_id;
        let (status, v) = call(&app, Role::Admin, Service::Doctor, Method::PUT, &format!("/v1/doctors/{d}/working-hours"),
            json!({"hours": [{"weekday": 1, "start": "13:00", "end": "09:00"}]})).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_hours")), "{v}");
        let (status, v) = call(&app, Role::Admin, Service::Doctor, Method::PUT, &format!("/v1/doctors/{d}/working-hours"),
            json!({"hours": [{"weekday": 8, "start": "09:00", "end": "13:00"}]})).await;
        assert_eq!((status, v["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("weekday")), "a field alone out of range: {v}");
        let (status, v) = call(&app, Role::Admin, Service::Doctor, Method::POST, &format!("/v1/doctors/{d}/leave"),
            json!({"start_date": "2026-12-10", "end_date": "2026-12-01"})).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_leave")), "{v}");
        // A department's availability needs the department (a required parameter, 400 without).
        let (status, _) = call(&app, Role::Reception, Service::Doctor, Method::GET, "/v1/availability?date=2026-12-01", Value::Null).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        app.stop().await;
    }
}
