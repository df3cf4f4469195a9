//! The real `hmsctl` binary against real services: output formats, exit codes, no prompts
//! without a terminal.

use hms_kit::auth::Role;
use hms_kit::clock::Clock;
use hms_kit::Service;
use hms_testkit::{both_backends, new_doctor, new_patient, TestApp};
use serde_json::Value;
use std::process::{Command, Output, Stdio};

pub use hms_testkit::EVERY_SERVICE;

mod desk;
mod import;
mod load;
mod terminal;

const SERVICES: [&hms_kit::server::ServiceDef; 3] = [
    &hms_patient::SERVICE,
    &hms_doctor::SERVICE,
    &hms_appointment::SERVICE,
];

/// Runs hmsctl with the app's URLs and a token for `role`; stdin is not a terminal.
fn hmsctl(app: &TestApp, role: Option<Role>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hmsctl"));
    for svc in Service::ALL {
        let var = format!("HMS_{}_URL", svc.name().to_uppercase());
        match app.running.iter().find(|r| r.service == svc) {
            Some(r) => cmd.env(&var, r.url()),
            None => cmd.env(&var, "http://127.0.0.1:9"),
        };
    }
    cmd.env_remove("HMS_TOKEN")
        .env("HMSCTL_CONFIG", "/nonexistent/hmsctl.toml")
        .arg("--data-dir")
        .arg(app.dir.path());
    if let Some(r) = role {
        cmd.env("HMS_TOKEN", app.token(r));
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("hmsctl runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

both_backends! {
    async fn front_desk_workflow_and_script_output(b: Backend) {
        let app = TestApp::spawn_with(&b, &SERVICES, Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()), |_| {}).await;
        let admin = Some(Role::Admin);
        let out = hmsctl(&app, Some(Role::Reception), &["patient", "add", "--name", "Kavya Menon", "--phone", "9123456780", "--dob", "1990-02-03", "--output", "json"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let p = json(&out);
        assert_eq!(p["name"], "Kavya Menon");
        let pid = p["patient_id"].as_i64().unwrap();

        let out = hmsctl(&app, admin, &["doctor", "add", "--name", "Dr. Iyer", "--department", "Cardiology", "--specialization", "Cardiologist", "--fee", "500", "-q"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let did: i64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();

        let out = hmsctl(&app, Some(Role::Reception), &["appointment", "book", "--patient", &pid.to_string(), "--doctor", &did.to_string(),
            "--department", "Cardiology", "--at", "2026-12-01 09:30", "--tz", "Asia/Kolkata", "-o", "json"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let a = json(&out);
        assert_eq!(a["slot_start"], "2026-12-01T04:00:00Z", "09:30 IST");

        let out = hmsctl(&app, Some(Role::Reception), &["patient", "list", "--output", "csv"]);
        let csv = String::from_utf8(out.stdout).unwrap();
        assert!(csv.starts_with("patient_id,name,phone,email,dob,active\n") && csv.contains("Kavya Menon"), "{csv}");
        let out = hmsctl(&app, Some(Role::Reception), &["appointment", "list", "--quiet"]);
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), a["appointment_id"].to_string());
        let out = hmsctl(&app, Some(Role::Reception), &["appointment", "show", &a["appointment_id"].to_string(), "--tz", "Asia/Kolkata"]);
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(table.contains("Tue 01 Dec 2026 09:30 IST"), "{table}");
        let out = hmsctl(&app, Some(Role::Reception), &["patient", "search", "kavya", "-o", "json"]);
        assert_eq!(json(&out).as_array().unwrap().len(), 1);
        app.stop().await;
    }

    async fn each_exit_code_from_a_real_condition(b: Backend) {
        let app = TestApp::spawn_with(&b, &SERVICES, Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()), |_| {}).await;
        let p = app.client(Role::Reception).create_patient(&new_patient("Exit Codes", 1)).await.unwrap().patient_id.to_string();
        let q = app.client(Role::Reception).create_patient(&new_patient("Exit Codes Two", 2)).await.unwrap().patient_id.to_string();
        let d = app.client(Role::Admin).create_doctor(&new_doctor("Dr. Exit", "Neurology", "General")).await.unwrap().doctor_id.to_string();
        let r = Some(Role::Reception);
        let book = |who: &str, at: &str| hmsctl(&app, r, &["appointment", "book", "--patient", who, "--doctor", &d, "--department", "Neurology", "--at", at, "--tz", "Asia/Kolkata"]);
        assert_eq!(code(&book(&p, "2026-12-01 10:00")), 0);
        let taken = book(&q, "2026-12-01 10:00");
        assert_eq!(code(&taken), 4, "conflict");
        let err = String::from_utf8_lossy(&taken.stderr);
        assert!(err.contains("slot_taken") && err.contains("correlation id"), "{err}");
        assert_eq!(code(&book(&q, "2026-12-01 07:00")), 5, "business rule");
        assert_eq!(code(&hmsctl(&app, r, &["patient", "show", "999999"])), 3, "not found");
        assert_eq!(code(&hmsctl(&app, None, &["patient", "list"])), 7, "no token");
        assert_eq!(code(&hmsctl(&app, Some(Role::Billing), &["patient", "add", "--name", "X Y", "--phone", "9123456780", "--dob", "1990-01-01"])), 7, "forbidden");
        assert_eq!(code(&hmsctl(&app, r, &["rx", "list"])), 6, "prescription service is down");
        assert_eq!(code(&hmsctl(&app, r, &["patient", "add", "--name", "X"])), 2, "missing arguments");
        assert_eq!(code(&hmsctl(&app, r, &["patient", "add", "--name", "X Y", "--phone", "12", "--dob", "1990-01-01"])), 2, "invalid input");
        // No prompt without a terminal: a destructive action needs --yes.
        let refused = hmsctl(&app, r, &["patient", "deactivate", &p]);
        assert_eq!(code(&refused), 2);
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
        assert!(app.client(Role::Reception).get_patient(p.parse().unwrap()).await.unwrap().active, "nothing changed");
        assert_eq!(code(&hmsctl(&app, r, &["patient", "deactivate", &p, "--yes"])), 0);
        // Status: three services up, four down.
        let status = hmsctl(&app, r, &["status", "-o", "json"]);
        assert_eq!(code(&status), 6);
        let rows = json(&status);
        assert_eq!(rows.as_array().unwrap().iter().filter(|s| s["ready"] == true).count(), 3);
        assert_eq!(code(&hmsctl(&app, r, &["status", "patient", "doctor"])), 0);
        // A named profile in the config file carries the token.
        let config = app.dir.path().join("hmsctl.toml");
        std::fs::write(&config, format!("[profiles.desk]\ntoken = \"{}\"\n", app.token(Role::Reception))).unwrap();
        let with_profile = |profile: &str| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_hmsctl"));
            for r in &app.running { cmd.env(format!("HMS_{}_URL", r.service.name().to_uppercase()), r.url()); }
            cmd.env_remove("HMS_TOKEN").env("HMSCTL_CONFIG", &config).args(["--profile", profile, "patient", "list", "-q"]);
            cmd.stdin(Stdio::null()).output().unwrap()
        };
        assert_eq!(code(&with_profile("desk")), 0);
        assert_eq!(code(&with_profile("nowhere")), 2, "an unknown profile is a usage error");
        let help = Command::new(env!("CARGO_BIN_EXE_hmsctl")).arg("--help").output().unwrap();
        assert!(String::from_utf8_lossy(&help.stdout).contains("Exit codes:"));
        app.stop().await;
    }
}

both_backends! {
    async fn the_legacy_data_imports_once_and_every_row_is_accounted_for(b: Backend) {
        let services = [
            &hms_patient::SERVICE, &hms_doctor::SERVICE, &hms_billing::SERVICE, &hms_appointment::SERVICE,
            &hms_prescription::SERVICE, &hms_payment::SERVICE, &hms_notification::SERVICE,
        ];
        let app = TestApp::spawn(&b, &services).await;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed-data");
        let report = app.dir.path().join("report.csv");
        // A dry run first: the services judge every row and keep nothing; its outcomes are the
        // real run's, row by row.
        let dry_report = app.dir.path().join("dry.csv");
        let dry = hmsctl(&app, Some(Role::Admin), &["import", dir, "--dry-run", "--report", dry_report.to_str().unwrap(), "-o", "json"]);
        assert_eq!(code(&dry), 8, "{}", String::from_utf8_lossy(&dry.stderr));
        assert!(app.client(Role::Admin).get_patient(42).await.is_err(), "a dry run writes nothing");
        let first = hmsctl(&app, Some(Role::Admin), &["import", dir, "--report", report.to_str().unwrap(), "-o", "json"]);
        assert_eq!(code(&first), 8, "partial: some rows are rejected; {}", String::from_utf8_lossy(&first.stderr));
        assert_eq!(std::fs::read_to_string(&dry_report).unwrap(), std::fs::read_to_string(&report).unwrap());
        let totals = json(&first);
        let mut imported_first = std::collections::BTreeMap::new();
        for t in totals.as_array().unwrap() {
            let file = t["file"].as_str().unwrap();
            let rows = std::fs::read_to_string(format!("{dir}/{file}")).unwrap().lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u64;
            let n = |k: &str| t[k].as_u64().unwrap();
            assert_eq!(n("read"), rows, "{file}: every row read");
            assert_eq!(n("imported") + n("warning") + n("already_present") + n("conflict") + n("rejected"), rows, "{file}: totals add up");
            imported_first.insert(file.to_string(), n("imported") + n("warning"));
        }
        assert_eq!(imported_first["hms_doctors.csv"], 25);
        assert_eq!(imported_first["hms_patients.csv"], 60);
        assert_eq!(imported_first["hms_appointments.csv"], 300, "historical rows are not re-judged by booking rules");
        assert_eq!(imported_first["hms_prescriptions.csv"], 220, "history is kept, with warnings");
        assert_eq!(imported_first["hms_bills.csv"], 300, "a second bill of an appointment is kept as a bill of its own");
        let text = std::fs::read_to_string(&report).unwrap();
        let report_rows = text.lines().filter(|l| !l.contains(",total,")).count() - 1;
        assert_eq!(report_rows as u64, totals.as_array().unwrap().iter().map(|t| t["read"].as_u64().unwrap()).sum::<u64>());
        assert_eq!(text.lines().filter(|l| l.contains(",total,")).count(), 6, "per-file totals end the report");
        assert!(text.contains("is also patient"), "the duplicated e-mail is a recorded warning");
        assert!(text.contains("is not after slot_start"), "an end before the start is a recorded warning");
        assert!(imported_first["hms_payments.csv"] > 0, "{imported_first:?}");
        assert!(text.contains("is VOID"), "payments on VOID bills are refused with that reason");
        // Legacy ids are kept; imported bills keep their legacy figures.
        assert_eq!(app.client(Role::Admin).get_patient(42).await.unwrap().patient_id, 42);
        let bill = app.client(Role::Billing).get_bill(1).await.unwrap();
        assert_eq!((bill.bill_id, bill.total.to_string().as_str(), bill.tax.to_string().as_str(), bill.status.as_str()), (1, "617.00", "0.00", "PAID"));
        // History is not news: no patient is told about imported bills or payments.
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let told = app.client(Role::Admin).list_notifications(&hms_client::models::NotificationQuery::default()).await.unwrap().items;
        assert!(told.is_empty(), "{} notifications", told.len());

        // A second import adds nothing; a dry run of it says the same.
        for extra in [None, Some("--dry-run")] {
            let mut args = vec!["import", dir, "-o", "json"];
            args.extend(extra);
            let second = json(&hmsctl(&app, Some(Role::Admin), &args));
            for t in second.as_array().unwrap() {
                let file = t["file"].as_str().unwrap();
                assert_eq!(t["imported"].as_u64().unwrap() + t["warning"].as_u64().unwrap(), 0, "{file} {extra:?}");
                assert_eq!(t["already_present"].as_u64().unwrap(), imported_first[file], "{file} {extra:?}");
            }
        }
        app.stop().await;
    }
}

both_backends! {
    async fn alerts_follow_new_notifications_and_completions_print(b: Backend) {
        let services = [&hms_patient::SERVICE, &hms_doctor::SERVICE, &hms_appointment::SERVICE, &hms_notification::SERVICE];
        let app = TestApp::spawn(&b, &services).await;
        let p = app.client(Role::Reception).create_patient(&new_patient("Alert Watcher", 9)).await.unwrap().patient_id;
        let d = app.client(Role::Admin).create_doctor(&new_doctor("Dr. Alert", "Cardiology", "General")).await.unwrap().doctor_id;
        // Three days ahead at 10:00 clinic time, on a weekday.
        let mut day = chrono::Utc::now().date_naive() + chrono::Duration::days(3);
        while chrono::Datelike::weekday(&day).number_from_monday() > 5 { day = day.succ_opt().unwrap(); }
        let at = chrono::TimeZone::from_local_datetime(&chrono_tz::Asia::Kolkata, &day.and_hms_opt(10, 0, 0).unwrap()).unwrap().with_timezone(&chrono::Utc);
        app.client(Role::Reception).book_appointment(&hms_client::models::NewAppointment {
            patient_id: p, doctor_id: d, department: "Cardiology".into(), slot_start: at, slot_end: None,
        }, None).await.unwrap();
        let out = tokio::task::spawn_blocking({
            let app_urls: Vec<(String, String)> = app.running.iter().map(|r| (format!("HMS_{}_URL", r.service.name().to_uppercase()), r.url())).collect();
            let token = app.token(Role::Reception);
            move || {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_hmsctl"));
                for (k, v) in app_urls { cmd.env(k, v); }
                cmd.env("HMS_TOKEN", token).args(["alerts", "--max", "2", "--every", "1", "--backlog-minutes", "60", "--quiet"]);
                cmd.stdin(Stdio::null()).output().unwrap()
            }
        }).await.unwrap();
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let ids: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(ids.len(), 2, "the confirmation on two channels: {ids:?}");
        // A stream for scripts: CSV under one header, JSON one object per line.
        let follow = ["alerts", "--max", "2", "--every", "1", "--backlog-minutes", "60", "-o"];
        let csv = hmsctl(&app, Some(Role::Reception), &[&follow[..], &["csv"]].concat());
        let csv = String::from_utf8_lossy(&csv.stdout).to_string();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3, "{csv}");
        assert!(lines[0].starts_with("notification_id,") && !lines[1..].iter().any(|l| l.starts_with("notification_id,")), "{csv}");
        let json = hmsctl(&app, Some(Role::Reception), &[&follow[..], &["json"]].concat());
        let json = String::from_utf8_lossy(&json.stdout).to_string();
        assert_eq!(json.lines().count(), 2, "{json}");
        for line in json.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(v["notification_id"].is_i64(), "{line}");
        }
        let completions = Command::new(env!("CARGO_BIN_EXE_hmsctl")).args(["completions", "bash"]).output().unwrap();
        assert!(String::from_utf8_lossy(&completions.stdout).contains("hmsctl"));
        app.stop().await;
    }
}

both_backends! {
    async fn interactive_booking_through_a_pseudo_terminal(b: Backend) {
        let app = TestApp::spawn(&b, &SERVICES).await;
        let p = app.client(Role::Reception).create_patient(&new_patient("Terminal Tester", 5)).await.unwrap().patient_id;
        let d = app.client(Role::Admin).create_doctor(&new_doctor("Dr. Prompt", "Dermatology", "General")).await.unwrap().doctor_id;
        let mut day = chrono::Utc::now().date_naive() + chrono::Duration::days(3);
        while chrono::Datelike::weekday(&day).number_from_monday() > 5 { day = day.succ_opt().unwrap(); }
        let urls: Vec<(String, String)> = app.running.iter().map(|r| (format!("HMS_{}_URL", r.service.name().to_uppercase()), r.url())).collect();
        let token = app.token(Role::Reception);
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            // `script` runs hmsctl on a pseudo-terminal fed from our pipe: a person at a keyboard.
            let mut cmd = Command::new("script");
            for (k, v) in urls { cmd.env(k, v); }
            let hmsctl = env!("CARGO_BIN_EXE_hmsctl");
            cmd.env("HMS_TOKEN", token)
                .args(["-qec", &format!("{hmsctl} appointment book --tz Asia/Kolkata -o json"), "/dev/null"])
                .stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("`script` (util-linux) provides the pseudo-terminal");
            let mut stdin = child.stdin.take().unwrap();
            // Patient search, pick the first match, department, doctor, date, first free slot, confirm.
            for keys in ["tester\r", "\r", "\r", "\r", &format!("{day}\r"), "\r", "y\r"] {
                std::thread::sleep(std::time::Duration::from_millis(1000));
                stdin.write_all(keys.as_bytes()).unwrap();
                stdin.flush().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(1500));
            drop(stdin);
            child.wait_with_output().unwrap()
        }).await.unwrap();
        let screen = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(screen.contains("Which patient") && screen.contains("Free slot") && screen.contains("Book Terminal Tester with Dr. Prompt"), "{screen}");
        let booked = app.client(Role::Reception).list_appointments(&hms_client::models::AppointmentQuery { patient_id: Some(p), ..Default::default() }).await.unwrap().items;
        assert_eq!(booked.len(), 1, "{screen}");
        assert_eq!(booked[0].doctor_id, d);
        assert_eq!(booked[0].slot_start.with_timezone(&chrono_tz::Asia::Kolkata).format("%Y-%m-%d %H:%M").to_string(), format!("{day} 09:00"), "the first free slot");
        // Without a terminal the same command asks nothing and names what is missing.
        let plain = hmsctl(&app, Some(Role::Reception), &["appointment", "book"]);
        assert_eq!(code(&plain), 2);
        assert!(String::from_utf8_lossy(&plain.stderr).contains("missing --patient, --doctor, --department, --at"));
        app.stop().await;
    }
}

both_backends! {
    async fn every_command_on_its_happy_path(b: Backend) {
        let services = [
            &hms_patient::SERVICE, &hms_doctor::SERVICE, &hms_billing::SERVICE, &hms_appointment::SERVICE,
            &hms_prescription::SERVICE, &hms_payment::SERVICE, &hms_notification::SERVICE,
        ];
        let app = TestApp::spawn_with(&b, &services, Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()), |_| {}).await;
        let run = |args: &[&str]| {
            let o = hmsctl(&app, Some(Role::Admin), args);
            assert_eq!(code(&o), 0, "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
            o
        };
        let ist = ["--tz", "Asia/Kolkata"];
        let pid = json(&run(&["patient", "add", "--name", "Every Command", "--phone", "9123400000", "--dob", "1980-05-05", "--email", "every@example.org", "-o", "json"]))["patient_id"].to_string();
        let did = json(&run(&["doctor", "add", "--name", "Dr. All", "--department", "Cardiology", "--specialization", "General", "--fee", "500", "-o", "json"]))["doctor_id"].to_string();
        run(&["patient", "show", &pid]);
        run(&["patient", "update", &pid, "--phone", "9123400001", "--if-match", "1"]);
        run(&["patient", "audit", &pid]);
        run(&["doctor", "list", "--department", "cardiology"]);
        run(&["doctor", "show", &did]);
        run(&["doctor", "update", &did, "--specialization", "Cardiologist"]);
        assert_eq!(json(&run(&["doctor", "availability", &did, "--date", "2026-12-01", "-o", "json"]))["slots"].as_array().unwrap().len(), 18);
        run(&["doctor", "availability", "--department", "Cardiology", "--date", "2026-12-01"]);

        let book = |at: &str| String::from_utf8(run(&["appointment", "book", "--patient", &pid, "--doctor", &did, "--department", "Cardiology", "--at", at, "--tz", "Asia/Kolkata", "-q"]).stdout).unwrap().trim().to_string();
        let a = book("2026-12-01 09:00");
        let moved = json(&run(&[&["appointment", "reschedule", &a, "--to", "2026-12-01 10:00", "-o", "json"][..], &ist[..]].concat()));
        assert_eq!(moved["reschedule_count"], 1);
        let rx = json(&run(&["rx", "add", "--appointment", &a, "--patient", &pid, "--doctor", &did, "--medication", "Paracetamol", "--dosage", "1-0-1", "--days", "5", "-o", "json"]));
        run(&["rx", "show", &rx["prescription_id"].to_string()]);
        assert_eq!(json(&run(&["rx", "list", "--appointment", &a, "-o", "json"])).as_array().unwrap().len(), 1);
        assert!(String::from_utf8(run(&["formulary", "list", "-o", "csv"]).stdout).unwrap().contains("Paracetamol"));
        run(&["appointment", "list", "--patient", &pid]);
        run(&["appointment", "show", &a]);

        // Wait until billing has the prescription, then complete at the start.
        let billing = app.db(Service::Billing).pool().clone();
        hms_testkit::eventually(15, "billing to know the prescription", || { let pool = billing.clone(); async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM prescribed").fetch_one(&pool).await.ok()?;
            (n == 1).then_some(())
        }}).await;
        app.clock.set("2026-12-01T04:30:00Z".parse().unwrap());
        assert_eq!(json(&run(&["appointment", "complete", &a, "-o", "json"]))["status"], "COMPLETED");
        let bill = hms_testkit::eventually(15, "the bill", || async {
            let v = json(&hmsctl(&app, Some(Role::Admin), &["bill", "list", "--appointment", &a, "-o", "json"]));
            v.as_array().and_then(|a| a.first().cloned())
        }).await;
        assert_eq!(bill["total"], "546.00", "500.00 + 10 × 2.00 + 5% tax");
        let bid = bill["bill_id"].to_string();
        run(&["bill", "show", &bid]);
        let paid = hmsctl(&app, Some(Role::Billing), &["pay", "--bill", &bid, "--amount", "546.00", "--method", "UPI", "-o", "json"]);
        assert_eq!(code(&paid), 0, "{}", String::from_utf8_lossy(&paid.stderr));
        let key = String::from_utf8_lossy(&paid.stderr).lines().find_map(|l| l.strip_prefix("Idempotency-Key: ").map(str::to_string)).expect("the key is printed");
        let again = hmsctl(&app, Some(Role::Billing), &["pay", "--bill", &bid, "--amount", "546.00", "--method", "UPI", "--key", &key, "-o", "json"]);
        assert_eq!(json(&again)["payment_id"], json(&paid)["payment_id"], "a retry with the printed key charges once");
        run(&["refund", &json(&paid)["payment_id"].to_string(), "--amount", "46.00", "--reason", "goodwill"]);
        run(&["bill", "adjust", &bid, "--amount", "10.00", "--reason", "loyalty"]);

        app.clock.set("2026-11-30T00:00:00Z".parse().unwrap());
        let c = book("2026-12-02 11:00");
        run(&["appointment", "cancel", &c, "--yes"]);
        let n = book("2026-12-02 12:00");
        app.clock.set("2026-12-02T06:50:00Z".parse().unwrap());
        run(&["appointment", "no-show", &n]);
        let fee = hms_testkit::eventually(15, "the no-show bill", || async {
            let v = json(&hmsctl(&app, Some(Role::Admin), &["bill", "list", "--appointment", &n, "-o", "json"]));
            v.as_array().and_then(|a| a.first().cloned())
        }).await;
        assert_eq!(json(&run(&["bill", "void", &fee["bill_id"].to_string(), "--yes", "-o", "json"]))["status"], "VOID");
        hms_testkit::eventually(15, "notifications", || async {
            let v = json(&hmsctl(&app, Some(Role::Admin), &["notifications", "list", "--patient", &pid, "-o", "json"]));
            (v.as_array()?.len() >= 4).then_some(())
        }).await;
        run(&["patient", "deactivate", &pid, "--yes"]);
        app.stop().await;
    }
}
