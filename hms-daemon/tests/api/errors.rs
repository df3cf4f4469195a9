//! Bad input: every validation error's code and field, and the standard error body everywhere.

use crate::both_backends;
use crate::support::*;
use hms_kit::auth::Role;
use hms_kit::Service;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn post(app: &TestApp, body: &str) -> (StatusCode, Value) {
    let resp = app
        .req(
            Role::Reception,
            Method::POST,
            Service::Patient,
            "/v1/patients",
        )
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
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
            (with("dob", json!(tomorrow)), "dob"),
            (with("active", json!(false)), "active"),
        ];
        for (body, field) in cases {
            let (status, v) = post(&app, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {v}");
            assert_eq!(v["code"], "validation_failed", "{body}");
            assert_eq!(v["details"]["field"], field, "{body} → {v}");
            assert_standard(&v);
        }
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
}
