//! 401/403 by role, token forgery, doctor scoping.

use crate::both_backends;
use crate::support::*;
use hms_kit::auth::{Keys, Role};
use hms_kit::Service;
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn status_of(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    svc: Service,
    path: &str,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, format!("{}{path}", app.url(svc)));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    answer(req.header("content-type", "application/json").body("{}")).await
}

both_backends! {
    async fn every_route_refuses_missing_and_forged_tokens(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE, &hms_doctor::SERVICE]).await;
        let other = Keys::from_secret(b"another-deployment-secret-000000000000");
        let forged = other.issue(Role::Admin, "mallory", None, chrono::Duration::hours(1));
        let expired = app.keys.issue(Role::Admin, "late", None, chrono::Duration::hours(-3));
        let parts: Vec<String> = app.token(Role::Admin).split('.').map(String::from).collect();
        let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        let mut checked = 0;
        for svc in [Service::Patient, Service::Doctor] {
            let doc: Value = app.http.get(format!("{}/v1/openapi.json", app.url(svc))).send().await.unwrap().json().await.unwrap();
            for (path, item) in doc["paths"].as_object().unwrap() {
                let concrete = path.replace("{id}", "1").replace("{leave_id}", "1");
                for method in item.as_object().unwrap().keys() {
                    let m: Method = method.to_uppercase().parse().unwrap();
                    for token in [None, Some("garbage"), Some(forged.as_str()), Some(expired.as_str()), Some(alg_none.as_str())] {
                        let (status, body) = status_of(&app, token, m.clone(), svc, &concrete).await;
                        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
                        assert_eq!(body["code"], "unauthenticated");
                        assert!(body["correlationId"].is_string());
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 17, "every documented operation was tried ({checked})");
        app.stop().await;
    }

    async fn tokens_are_typed_not_early_and_the_scheme_is_any_case(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let url = format!("{}/v1/patients", app.url(Service::Patient));
        let now = chrono::Utc::now().timestamp();
        let claims = |nbf: Option<i64>| {
            let mut c = serde_json::json!({"sub": "t", "role": "admin", "iss": hms_kit::auth::ISSUER, "aud": hms_kit::auth::AUDIENCE, "iat": now, "exp": now + 600});
            if let Some(n) = nbf { c["nbf"] = n.into(); }
            c
        };
        let header = |typ: Option<&str>| {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.typ = typ.map(String::from);
            h
        };
        let get = |auth: String| app.http.get(&url).header("authorization", auth).send();
        let good = app.keys.sign_raw(&header(Some("JWT")), &claims(None));
        assert_eq!(get(format!("Bearer {good}")).await.unwrap().status(), StatusCode::OK, "the control token passes");
        for (what, token) in [
            ("no typ", app.keys.sign_raw(&header(None), &claims(None))),
            ("typ at+jwt", app.keys.sign_raw(&header(Some("at+jwt")), &claims(None))),
            ("nbf an hour ahead", app.keys.sign_raw(&header(Some("JWT")), &claims(Some(now + 3600)))),
        ] {
            let r = get(format!("Bearer {token}")).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], "unauthenticated", "{what}");
        }
        let past_nbf = app.keys.sign_raw(&header(Some("JWT")), &claims(Some(now - 60)));
        assert_eq!(get(format!("Bearer {past_nbf}")).await.unwrap().status(), StatusCode::OK, "an nbf in the past is fine");
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            assert_eq!(get(format!("{scheme} {good}")).await.unwrap().status(), StatusCode::OK, "{scheme}");
        }
        assert_eq!(get(format!("Basic {good}")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        app.stop().await;
    }

    async fn roles_decide_who_may_do_what(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE, &hms_doctor::SERVICE]).await;
        let p = app.client(Role::Reception).create_patient(&new_patient("Role Check", 800)).await.unwrap();
        let audit = format!("/v1/patients/{}/audit", p.patient_id);
        let cases = [
            (Role::Billing, Method::POST, Service::Patient, "/v1/patients".to_string(), StatusCode::FORBIDDEN),
            (Role::Doctor, Method::POST, Service::Patient, "/v1/patients".to_string(), StatusCode::FORBIDDEN),
            (Role::Reception, Method::GET, Service::Patient, audit.clone(), StatusCode::FORBIDDEN),
            (Role::Service, Method::GET, Service::Patient, audit.clone(), StatusCode::FORBIDDEN),
            (Role::Admin, Method::GET, Service::Patient, audit.clone(), StatusCode::OK),
            (Role::Billing, Method::GET, Service::Patient, format!("/v1/patients/{}", p.patient_id), StatusCode::OK),
            (Role::Reception, Method::POST, Service::Doctor, "/v1/doctors".to_string(), StatusCode::FORBIDDEN),
            (Role::Reception, Method::GET, Service::Doctor, "/v1/doctors".to_string(), StatusCode::OK),
        ];
        for (role, method, svc, path, expected) in cases {
            let (status, body) = status_of(&app, Some(&app.token(role)), method.clone(), svc, &path).await;
            if method == Method::GET || expected == StatusCode::FORBIDDEN {
                assert_eq!(status, expected, "{role} {method} {path}: {body}");
            }
            if expected == StatusCode::FORBIDDEN {
                assert_eq!(body["code"], "forbidden");
            }
        }
        app.stop().await;
    }

    async fn a_burst_is_limited_per_token_and_services_are_not(b: Backend) {
        let app = TestApp::spawn_with(&b, &[&hms_patient::SERVICE], hms_kit::clock::Clock::system(), |c| {
            c.rate_limit_per_second = 2;
            c.rate_limit_burst = 5;
        }).await;
        let url = format!("{}/v1/patients", app.url(Service::Patient));
        // (statuses, seconds taken): the bucket refills at 2/s while the burst runs.
        let burst = |token: String| {
            let http = app.http.clone();
            let url = url.clone();
            async move {
                let started = std::time::Instant::now();
                let mut statuses = Vec::new();
                for _ in 0..20 {
                    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
                    if r.status() == StatusCode::TOO_MANY_REQUESTS {
                        assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
                        let v: Value = r.json().await.unwrap();
                        assert_eq!(v["code"], "rate_limited");
                        statuses.push(429);
                    } else {
                        statuses.push(r.status().as_u16());
                    }
                }
                (statuses, started.elapsed().as_secs_f64())
            }
        };
        let (person, secs) = burst(app.token(Role::Reception)).await;
        let allowed = 5.0 + 2.0 * secs.ceil() + 1.0;
        assert!(person.iter().filter(|s| **s == 200).count() as f64 <= allowed, "{person:?} in {secs:.2}s");
        assert!(person.contains(&429), "{person:?}");
        // Another person has their own bucket; services are not limited.
        assert_eq!(burst(app.token(Role::Admin)).await.0[0], 200);
        let (service, _) = burst(app.keys.issue(Role::Service, "service:appointment", None, chrono::Duration::minutes(5))).await;
        assert!(service.iter().all(|s| *s == 200), "{service:?}");
        app.stop().await;
    }

    async fn a_doctor_may_change_only_their_own_schedule(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_doctor::SERVICE]).await;
        let admin = app.client(Role::Admin);
        let a = admin.create_doctor(&new_doctor("Dr. Anil Rao", "Cardiology", "Cardiologist")).await.unwrap();
        let bdoc = admin.create_doctor(&new_doctor("Dr. Bela Sen", "Neurology", "Neurologist")).await.unwrap();
        let leave = serde_json::json!({"start_date": "2026-12-24", "end_date": "2026-12-26"});
        let as_a = |path: String| app.http.post(format!("{}{path}", app.url(Service::Doctor))).bearer_auth(app.doctor_token(a.doctor_id)).json(&leave).send();
        let own = as_a(format!("/v1/doctors/{}/leave", a.doctor_id)).await.unwrap();
        assert_eq!(own.status(), StatusCode::CREATED);
        let theirs = as_a(format!("/v1/doctors/{}/leave", bdoc.doctor_id)).await.unwrap();
        assert_eq!(theirs.status(), StatusCode::FORBIDDEN);
        assert!(admin.list_leave(bdoc.doctor_id).await.unwrap().items.is_empty(), "nothing written for the forbidden call");
        app.stop().await;
    }
}
