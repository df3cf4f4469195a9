//! Health, readiness, metrics, OpenAPI and the API page.

use crate::both_backends;
use crate::support::*;
use hms_kit::auth::Role;
use hms_kit::Service;
use reqwest::{Method, StatusCode};
use serde_json::Value;

both_backends! {
    async fn ready_fails_when_the_database_is_gone(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let url = app.url(Service::Patient);
        let health: Value = app.http.get(format!("{url}/health")).send().await.unwrap().json().await.unwrap();
        assert_eq!(health["status"], "ok");
        let ready = app.http.get(format!("{url}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK);

        match &b {
            Backend::Sqlite => std::fs::remove_file(app.dir.path().join("patient.db")).unwrap(),
            Backend::Postgres(server) => {
                let db_url = app.config.database_url(Service::Patient);
                drop_database(server, &db_url).await;
            }
        }
        let ready = app.http.get(format!("{url}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v: Value = ready.json().await.unwrap();
        assert_eq!(v["code"], "not_ready");
        assert!(v["correlationId"].is_string());
        // Liveness is not readiness: the process is still alive.
        assert_eq!(app.http.get(format!("{url}/health")).send().await.unwrap().status(), StatusCode::OK);
        app.stop().await;
    }

    async fn metrics_openapi_and_docs_are_served(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE, &hms_doctor::SERVICE]).await;
        app.client(Role::Reception).create_patient(&new_patient("Metric Person", 700)).await.unwrap();
        let url = app.url(Service::Patient);
        let metrics = app.http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("http_requests_total{service=\"patient\",method=\"POST\",route=\"/v1/patients\",status=\"201\"}"), "{metrics}");
        assert!(metrics.contains("http_request_duration_seconds_bucket"));
        // Each service's /metrics carries its own series only, every metric with its HELP.
        app.client(Role::Admin).list_doctors(&Default::default()).await.unwrap();
        let doctor = app.http.get(format!("{}/metrics", app.url(Service::Doctor))).send().await.unwrap().text().await.unwrap();
        assert!(doctor.contains("service=\"doctor\"") && !doctor.contains("service=\"patient\""), "{doctor}");
        assert!(!metrics.contains("service=\"doctor\""), "{metrics}");
        for page in [&metrics, &doctor] {
            for line in page.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
                assert!(page.contains(&format!("# HELP {base} ")), "{base} has no HELP line:\n{page}");
            }
        }

        for svc in [Service::Patient, Service::Doctor] {
            let doc: Value = app.http.get(format!("{}/v1/openapi.json", app.url(svc))).send().await.unwrap().json().await.unwrap();
            assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
            assert_eq!(doc["info"]["title"], format!("HMS {svc} service"));
            let paths = doc["paths"].as_object().unwrap();
            assert!(!paths.is_empty());
            for (path, item) in paths {
                for (method, op) in item.as_object().unwrap() {
                    assert!(op["x-roles"].as_array().is_some_and(|r| !r.is_empty()), "{method} {path} lists its roles");
                }
            }
            let page = app.http.get(format!("{}/docs", app.url(svc))).send().await.unwrap();
            assert_eq!(page.status(), StatusCode::OK);
            let html = page.text().await.unwrap();
            assert!(html.contains("/v1/openapi.json") && !html.contains("https://"), "self-contained, no CDN");
        }
        let resp = app.req(Role::Admin, Method::GET, Service::Doctor, "/v1/doctors").send().await.unwrap();
        assert_eq!(resp.headers()["cache-control"], "no-store");
        app.stop().await;
    }
}
