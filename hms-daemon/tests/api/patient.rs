//! Patient service: CRUD, search, pagination, optimistic concurrency, audit trail.

use crate::both_backends;
use crate::support::*;
use hms_client::models::{PatientQuery, PatientUpdate};
use hms_kit::auth::Role;
use hms_kit::Service;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

both_backends! {
    async fn register_read_update_deactivate(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let desk = app.client(Role::Reception);
        let created = desk.create_patient(&new_patient("Meera Nair", 1)).await.unwrap();
        assert_eq!((created.version, created.active), (1, true));
        assert_eq!(created.email.as_deref(), Some("person1@example.org"));

        let read = desk.get_patient(created.patient_id).await.unwrap();
        assert_eq!(read, created);

        let changed = desk
            .update_patient(created.patient_id, &PatientUpdate { phone: Some("+91 98765 43210".into()), ..Default::default() }, Some(1))
            .await
            .unwrap();
        assert_eq!(changed.phone, "+919876543210", "phone is stored normalised");
        assert_eq!(changed.version, 2);
        assert_eq!(changed.name, "Meera Nair", "fields not sent are kept");

        let stale = desk
            .update_patient(created.patient_id, &PatientUpdate { name: Some("Other".into()), ..Default::default() }, Some(1))
            .await
            .unwrap_err();
        assert_eq!((stale.status(), stale.code()), (Some(412), Some("version_conflict")));
        assert_eq!(desk.get_patient(created.patient_id).await.unwrap().name, "Meera Nair");

        let inactive = desk.deactivate_patient(created.patient_id).await.unwrap();
        assert!(!inactive.active);
        assert_eq!(inactive.version, 3);
        let again = desk.deactivate_patient(created.patient_id).await.unwrap();
        assert_eq!(again.version, 3, "deactivating twice changes nothing");

        let active_only = desk.list_patients(&PatientQuery { active: Some(true), ..Default::default() }).await.unwrap();
        assert!(active_only.items.is_empty());

        let missing = desk.get_patient(9999).await.unwrap_err();
        assert_eq!((missing.status(), missing.code()), (Some(404), Some("not_found")));

        // ETag on a single read
        let resp = app.req(Role::Reception, Method::GET, Service::Patient, &format!("/v1/patients/{}", created.patient_id)).send().await.unwrap();
        assert_eq!(resp.headers()["etag"], "W/\"3\"");
        app.stop().await;
    }

    async fn search_by_name_phone_and_email(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let desk = app.client(Role::Reception);
        let a = desk.create_patient(&new_patient("Vivaan Sharma", 11)).await.unwrap();
        let c = desk.create_patient(&new_patient("Rohan Sharma", 12)).await.unwrap();
        let d = desk.create_patient(&new_patient("Diya Gupta", 13)).await.unwrap();
        let ids = |page: hms_client::models::Page<hms_client::models::Patient>| -> Vec<i64> {
            page.items.iter().map(|p| p.patient_id).collect()
        };
        let q = |name: Option<&str>, phone: Option<&str>, email: Option<&str>| PatientQuery {
            name: name.map(Into::into), phone: phone.map(Into::into), email: email.map(Into::into), ..Default::default()
        };
        assert_eq!(ids(desk.list_patients(&q(Some("sHARm"), None, None)).await.unwrap()), vec![a.patient_id, c.patient_id]);
        assert_eq!(ids(desk.list_patients(&q(Some("diya g"), None, None)).await.unwrap()), vec![d.patient_id]);
        assert_eq!(ids(desk.list_patients(&q(None, Some("0000012"), None)).await.unwrap()), vec![c.patient_id]);
        assert_eq!(ids(desk.list_patients(&q(None, None, Some("PERSON13@"))).await.unwrap()), vec![d.patient_id]);
        assert_eq!(ids(desk.list_patients(&q(Some("sharma"), None, Some("person11"))).await.unwrap()), vec![a.patient_id]);
        assert!(desk.list_patients(&q(Some("%"), None, None)).await.unwrap().items.is_empty(), "% is literal");
        // Short terms, quotes and a change of name: the search index follows every change.
        assert_eq!(ids(desk.list_patients(&q(Some("a"), None, None)).await.unwrap()), vec![a.patient_id, c.patient_id, d.patient_id]);
        assert!(desk.list_patients(&q(Some("\"sharma"), None, None)).await.unwrap().items.is_empty());
        let renamed = hms_client::models::PatientUpdate { name: Some("Diya Rao".into()), ..Default::default() };
        desk.update_patient(d.patient_id, &renamed, None).await.unwrap();
        assert!(desk.list_patients(&q(Some("gupta"), None, None)).await.unwrap().items.is_empty(), "the old name is gone");
        assert_eq!(ids(desk.list_patients(&q(Some("ya ra"), None, None)).await.unwrap()), vec![d.patient_id]);
        assert!(desk.list_patients(&q(Some("person13"), None, None)).await.unwrap().items.is_empty(), "a name search is of names only");
        app.stop().await;
    }

    async fn pagination_walks_every_row_once(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let desk = app.client(Role::Reception);
        let mut expected = Vec::new();
        for n in 0..23 {
            expected.push(desk.create_patient(&new_patient("Page Walker", 100 + n)).await.unwrap().patient_id);
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = desk
                .list_patients(&PatientQuery { name: Some("page walker".into()), limit: Some(5), cursor: cursor.clone(), ..Default::default() })
                .await
                .unwrap();
            pages += 1;
            if pages == 2 {
                // A row added mid-walk appears once, at the end; nothing shifts.
                expected.push(desk.create_patient(&new_patient("Page Walker", 200)).await.unwrap().patient_id);
            }
            seen.extend(page.items.iter().map(|p| p.patient_id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, expected, "every row once, in id order");
        assert_eq!(pages, 5);
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 24);
        app.stop().await;
    }

    async fn concurrent_updates_with_one_if_match_have_one_winner(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let desk = app.client(Role::Reception);
        let p = desk.create_patient(&new_patient("Race Runner", 300)).await.unwrap();
        let attempts = (0..20).map(|i| {
            let desk = desk.clone();
            async move {
                desk.update_patient(p.patient_id, &PatientUpdate { name: Some(format!("Runner {}", (b'A' + i) as char)), ..Default::default() }, Some(1)).await
            }
        });
        let results = futures::future::join_all(attempts).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        let lost: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(won, 1, "exactly one update applies");
        assert!(lost.iter().all(|e| e.code() == Some("version_conflict")), "{lost:?}");
        assert_eq!(desk.get_patient(p.patient_id).await.unwrap().version, 2);
        app.stop().await;
    }

    async fn audit_trail_records_who_read_and_changed(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let admin = app.client(Role::Admin);
        let p = admin.create_patient(&new_patient("Audit Subject", 400)).await.unwrap();
        let read = app.req(Role::Reception, Method::GET, Service::Patient, &format!("/v1/patients/{}", p.patient_id))
            .header("x-correlation-id", "corr-read-1").send().await.unwrap();
        assert_eq!(read.status(), StatusCode::OK);
        app.client(Role::Doctor).list_patients(&PatientQuery { name: Some("audit subject".into()), ..Default::default() }).await.unwrap();
        app.client(Role::Reception).update_patient(p.patient_id, &PatientUpdate { dob: Some("1986-01-01".parse().unwrap()), ..Default::default() }, None).await.unwrap();

        let trail = admin.patient_audit(p.patient_id, None, None).await.unwrap().items;
        let summary: Vec<(String, String, String)> = trail.iter().map(|a| (a.action.clone(), a.role.clone(), a.subject.clone())).collect();
        assert_eq!(summary, vec![
            ("create".into(), "admin".into(), "test-admin".into()),
            ("read".into(), "reception".into(), "test-reception".into()),
            ("search_hit".into(), "doctor".into(), "test-doctor".into()),
            ("update".into(), "reception".into(), "test-reception".into()),
            // Reading the trail is itself audited, before the trail is returned.
            ("audit_read".into(), "admin".into(), "test-admin".into()),
        ]);
        assert_eq!(trail[1].correlation_id, "corr-read-1");
        assert_eq!(trail[3].detail.as_deref(), Some("dob"), "which fields changed, never their values");
        let again = admin.patient_audit(p.patient_id, None, None).await.unwrap().items;
        assert_eq!(again.len(), 6);

        // Append-only, enforced by the database itself.
        let pool = app.db(Service::Patient).pool();
        assert!(sqlx::query("UPDATE patient_audit SET role = 'admin'").execute(pool).await.is_err());
        assert!(sqlx::query("DELETE FROM patient_audit").execute(pool).await.is_err());
        app.stop().await;
    }

    // Reads arriving together are committed as one batch: each read that found its patient
    // leaves exactly one row, in that patient's trail; one that found none leaves nothing.
    async fn reads_in_one_batch_are_each_audited_once_and_misses_not_at_all(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let admin = app.client(Role::Admin);
        let a = admin.create_patient(&new_patient("Batch Reader A", 610)).await.unwrap();
        let c = admin.create_patient(&new_patient("Batch Reader C", 611)).await.unwrap();
        let missing = c.patient_id + 1000;
        let ids: Vec<i64> = (0..60).map(|i| match i % 3 { 0 => a.patient_id, 1 => c.patient_id, _ => missing }).collect();
        let statuses = futures::future::join_all(ids.iter().map(|id| {
            app.req(Role::Reception, Method::GET, Service::Patient, &format!("/v1/patients/{id}")).send()
        })).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect::<Vec<_>>();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 40, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 20, "{statuses:?}");
        let pool = app.db(Service::Patient).pool();
        let per_patient: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT patient_id, COUNT(*) FROM patient_audit WHERE action = 'read' GROUP BY patient_id ORDER BY patient_id")
            .fetch_all(pool).await.unwrap();
        assert_eq!(per_patient, vec![(a.patient_id, 20), (c.patient_id, 20)]);
        app.stop().await;
    }

    async fn a_lookup_by_ids_returns_those_found_in_order_each_audited_as_a_read(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let admin = app.client(Role::Admin);
        let a = admin.create_patient(&new_patient("Lookup Person A", 620)).await.unwrap();
        let c = admin.create_patient(&new_patient("Lookup Person C", 621)).await.unwrap();
        let missing = c.patient_id + 1000;
        let service = app.client(Role::Service);
        let found = service.get_patients(&[c.patient_id, missing, a.patient_id, c.patient_id]).await.unwrap();
        assert_eq!(found, vec![c.clone(), a.clone()], "found ones, in the order first asked, each once");
        let pool = app.db(Service::Patient).pool();
        let audited: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT patient_id, action, route, subject FROM patient_audit WHERE action <> 'create' ORDER BY patient_id")
            .fetch_all(pool).await.unwrap();
        let subject = audited.first().map(|r| r.3.clone()).unwrap_or_default();
        assert_eq!(audited, vec![
            (a.patient_id, "read".into(), "/v1/patients".into(), subject.clone()),
            (c.patient_id, "read".into(), "/v1/patients".into(), subject),
        ], "each patient found audited once as a read; the miss not at all");

        // What the schema's pattern refuses is 400; each field valid but the pair not, 422.
        for (query, status, field) in [
            ("ids=1,x", 400, "ids"), ("ids=0", 400, "ids"), ("ids=", 400, "ids"), ("ids=-3", 400, "ids"),
            ("ids=01", 400, "ids"), ("ids=%2B5", 400, "ids"), ("ids=1,%202", 400, "ids"), ("ids=1,,2", 400, "ids"),
            ("ids=1&name=lookup", 422, "name"), ("ids=1&active=true", 422, "active"), ("ids=1&limit=5", 422, "limit"),
        ] {
            let resp = app.req(Role::Reception, Method::GET, Service::Patient, &format!("/v1/patients?{query}")).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{query}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["details"]["field"], field, "{query}: {v}");
        }
        let too_many = (1..=101).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let resp = app.req(Role::Reception, Method::GET, Service::Patient, &format!("/v1/patients?ids={too_many}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient_audit WHERE action <> 'create'").fetch_one(pool).await.unwrap();
        assert_eq!(after, 2, "a refused lookup reads and records nothing");
        app.stop().await;
    }

    async fn no_audit_row_means_no_data(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let p = app.client(Role::Admin).create_patient(&new_patient("Guarded Record", 500)).await.unwrap();
        let pool = app.db(Service::Patient).pool();
        // Make the audit table refuse writes.
        if b.is_postgres() {
            sqlx::query("CREATE FUNCTION block_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'blocked'; END; $$")
                .execute(pool).await.unwrap();
            sqlx::query("CREATE TRIGGER block_audit BEFORE INSERT ON patient_audit FOR EACH ROW EXECUTE FUNCTION block_audit()")
                .execute(pool).await.unwrap();
        } else {
            sqlx::query("CREATE TRIGGER block_audit BEFORE INSERT ON patient_audit BEGIN SELECT RAISE(ABORT, 'blocked'); END")
                .execute(pool).await.unwrap();
        }
        for path in [format!("/v1/patients/{}", p.patient_id), "/v1/patients?name=guarded".to_string(), format!("/v1/patients?ids={}", p.patient_id)] {
            let resp = app.req(Role::Reception, Method::GET, Service::Patient, &path).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = resp.text().await.unwrap();
            assert!(!body.contains("Guarded"), "no patient data without an audit row: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "audit_unavailable");
        }
        app.stop().await;
    }

    async fn legacy_ids_are_kept_and_new_ids_follow_them(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        let admin = app.client(Role::Admin);
        let mut legacy = new_patient("Legacy Person", 600);
        legacy.patient_id = Some(42);
        legacy.created_at = Some("2024-06-12T13:27:31Z".parse().unwrap());
        let kept = admin.create_patient(&legacy).await.unwrap();
        assert_eq!(kept.patient_id, 42);
        assert_eq!(kept.created_at.to_rfc3339(), "2024-06-12T13:27:31+00:00");
        let dup = admin.create_patient(&legacy).await.unwrap_err();
        assert_eq!((dup.status(), dup.code()), (Some(409), Some("already_exists")));
        let next = admin.create_patient(&new_patient("New Person", 601)).await.unwrap();
        assert!(next.patient_id > 42, "assigned ids continue after imported ones");
        // Only an admin may set ids.
        let refused = app.client(Role::Reception).create_patient(&legacy).await.unwrap_err();
        assert_eq!(refused.status(), Some(403));
        let _ = json!({});
        app.stop().await;
    }
}
