//! The load generator against real services: a run that books every slot it planned stops and
//! says so (it once spun, counting tens of millions of refusals as errors), and a failure to
//! set up is an error naming its cause, never a panic.

use hms_kit::auth::Role;
use hms_kit::clock::Clock;
use hms_kit::Service;
use hms_testkit::subscriber::closed_port;
use hms_testkit::{both_backends, TestApp};
use std::process::{Command, Output};

/// `hms-load` with every service's URL pointing at `app`'s.
fn hms_load(app: &TestApp, token: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hms-load"));
    for svc in Service::ALL {
        cmd.env(
            format!("HMS_{}_URL", svc.name().to_uppercase()),
            app.url(svc),
        );
    }
    cmd.env("HMS_TOKEN", token).args(args).output().unwrap()
}

both_backends! {
    async fn a_booking_run_stops_when_every_planned_slot_is_booked(b: Backend) {
        let app = TestApp::spawn_with(&b, &crate::EVERY_SERVICE, Clock::system(), |_| {}).await;
        // A horizon of six days holds at most four working days after tomorrow: 32 slots.
        let out = hms_load(&app, &app.token(Role::Admin), &[
            "book", "--connections", "1", "--duration", "60", "--booking-horizon-days", "6",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("every planned slot was booked"), "{stdout}");
        assert!(stdout.contains(" errors=0 "), "no refusal counted as an error: {stdout}");
        let booked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM appointments")
            .fetch_one(app.db(Service::Appointment).pool()).await.unwrap();
        assert!((1..=32).contains(&booked), "{booked} booked");
        app.stop().await;
    }

    async fn a_setup_failure_is_an_error_with_its_cause(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE]).await;
        // The doctor service is down: the fixture doctor cannot be made.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hms-load"));
        cmd.env("HMS_PATIENT_URL", app.url(Service::Patient))
            .env("HMS_DOCTOR_URL", format!("http://127.0.0.1:{}", closed_port()))
            .env("HMS_TOKEN", app.token(Role::Admin));
        let out = cmd.args(["get-patient", "--duration", "1"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("creating the fixture doctor") && stderr.contains("doctor"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        app.stop().await;
    }

    async fn a_run_whose_requests_fail_says_how_they_failed(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE, &hms_doctor::SERVICE]).await;
        // The fixtures are made; every booking then finds the appointment service down.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hms-load"));
        cmd.env("HMS_PATIENT_URL", app.url(Service::Patient))
            .env("HMS_DOCTOR_URL", app.url(Service::Doctor))
            .env("HMS_APPOINTMENT_URL", format!("http://127.0.0.1:{}", closed_port()))
            .env("HMS_TOKEN", app.token(Role::Admin));
        let out = cmd.args(["book", "--connections", "2", "--duration", "1"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Every booking finds the service down; each client backs off (5 ms, doubling, up to
        // 1 s) instead of asking again at once, so two clients over 2 s count a few dozen
        // failures, not the tens of thousands a closed port answers at full speed.
        let kinds = stdout.lines().find(|l| l.starts_with("errors by kind (warm-up included): ")).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
        let (n, kind) = kinds.rsplit(": ").next().unwrap().split_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        assert!(n > 0, "{stdout}");
        assert!(n < 200, "{n} failures: the clients did not back off\n{stdout}");
        assert_eq!(kind, "appointment unreachable", "{stdout}");
        app.stop().await;
    }
}

/// `hms-load` on services it starts itself (no daemon): its report, once it exits 0.
fn hms_load_alone(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hms-load"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The report line that starts with `start`, and its `name=` value.
fn line<'a>(report: &'a str, start: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line {start} in {report}"))
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim_end_matches("us").parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

/// Whole visits on the services `hms-load workflow` starts itself (the embedded default, on
/// SQLite, with the clock it moves): every visit booked and prescribed is completed and paid,
/// and its bill is PAID.
#[test]
fn a_workflow_run_completes_and_pays_every_visit_it_books() {
    let report = hms_load_alone(&["workflow", "--connections", "2", "--duration", "1"]);
    let total = line(&report, "workflow=visit");
    let visits = field(total, "visits");
    assert!(visits > 0.0, "{report}");
    assert_eq!(field(total, "errors"), 0.0, "{report}");
    assert_eq!(field(total, "bills_paid"), visits, "{report}");
    for phase in report.lines().filter(|l| l.starts_with("phase=")) {
        assert_eq!(field(phase, "visits"), visits, "{phase}");
    }
}

/// One SQLite writer's limits through the services' database layer, measured in the process.
#[test]
fn a_db_ceiling_run_reports_the_writers_round_trip_and_rate() {
    let report = hms_load_alone(&["db-ceiling", "--duration", "2"]);
    let ceiling = line(&report, "workflow=db-ceiling");
    assert!(field(ceiling, "throughput") > 0.0, "{ceiling}");
    assert!(field(ceiling, "statement_round_trip") > 0.0, "{ceiling}");
}

/// The scale workflows over what `hms-load seed` wrote into the embedded default's SQLite
/// files: every request of `search-phone` and `day-list` answered. (`day-list` once failed
/// every request, millions a second: it placed the seeded days in a time zone it had not been
/// given.) SQLite only: the seed writes into the embedded default's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scale_workflows_answer_over_a_seeded_volume() {
    let app = TestApp::spawn_with(
        &hms_testkit::Backend::Sqlite,
        &crate::EVERY_SERVICE,
        Clock::system(),
        // One token drives every request, as in the benchmarks.
        |c| c.rate_limit_per_second = 0,
    )
    .await;
    let token = app.token(Role::Admin);
    let dir = app.dir.path().display().to_string();
    let out = hms_load(
        &app,
        &token,
        &[
            "seed",
            "--data-dir",
            &dir,
            "--patients",
            "200",
            "--appointments",
            "300",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seeded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM appointments")
        .fetch_one(app.db(Service::Appointment).pool())
        .await
        .unwrap();
    assert_eq!(seeded, 300);
    for workflow in ["search-phone", "day-list"] {
        let out = hms_load(
            &app,
            &token,
            &[
                workflow,
                "--data-dir",
                &dir,
                "--connections",
                "2",
                "--duration",
                "1",
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = line(&stdout, "workflow=");
        assert!(field(run, "requests") > 0.0, "{workflow}: {stdout}");
        assert_eq!(field(run, "errors"), 0.0, "{workflow}: {stdout}");
    }
    app.stop().await;
}
