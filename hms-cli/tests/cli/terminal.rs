//! hmsctl at a terminal (a pseudo-terminal of a fixed width, fed keys as a person types) and
//! what help and errors say: schedules without curl, tables that fit, pickers a clerk can back
//! out of, Ctrl-C that leaves the terminal as it found it.

use super::{code, hmsctl, json};
use chrono::{Datelike, Duration, TimeZone, Utc};
use hms_kit::auth::Role;
use hms_kit::Service;
use hms_testkit::{both_backends, new_doctor, new_patient, TestApp};
use std::io::Write;
use std::process::{Command, Stdio};

const DESK: [&hms_kit::server::ServiceDef; 4] = [
    &hms_patient::SERVICE,
    &hms_doctor::SERVICE,
    &hms_appointment::SERVICE,
    &hms_notification::SERVICE,
];

/// Runs `hmsctl args` on a pseudo-terminal `cols` wide, typing `keys` one group a second;
/// gives the screen (every byte written) and the exit code.
async fn at_terminal(
    app: &TestApp,
    role: Role,
    cols: u16,
    args: &[&str],
    keys: &[&str],
) -> (String, i32) {
    let mut env: Vec<(String, String)> = Service::ALL
        .iter()
        .map(|svc| {
            let url = app
                .running
                .iter()
                .find(|r| r.service == *svc)
                .map(|r| r.url())
                .unwrap_or_else(|| "http://127.0.0.1:9".into());
            (format!("HMS_{}_URL", svc.name().to_uppercase()), url)
        })
        .collect();
    env.push(("HMS_TOKEN".into(), app.token(role)));
    let line = format!(
        "stty cols {cols} rows 40; {} {}",
        env!("CARGO_BIN_EXE_hmsctl"),
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("script");
        cmd.envs(env)
            .env_remove("COLUMNS")
            .env("HMSCTL_CONFIG", "/nonexistent/hmsctl.toml")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("`script` (util-linux) provides the pseudo-terminal");
        let mut stdin = child.stdin.take().unwrap();
        for k in keys {
            std::thread::sleep(std::time::Duration::from_millis(1000));
            stdin.write_all(k.as_bytes()).unwrap();
            stdin.flush().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(1000));
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    })
    .await
    .unwrap()
}

fn weekday_ahead(days: i64) -> chrono::NaiveDate {
    let mut day = Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive()
        + Duration::days(days);
    while day.weekday().number_from_monday() > 5 {
        day = day.succ_opt().unwrap();
    }
    day
}

both_backends! {
    async fn hours_and_leave_without_curl(b: Backend) {
        let app = TestApp::spawn(&b, &DESK).await;
        let d = app.client(Role::Admin).create_doctor(&new_doctor("Dr. Hours", "Neurology", "General")).await.unwrap().doctor_id.to_string();
        let admin = Some(Role::Admin);
        // A new week: mornings Monday to Friday, and Saturday.
        let out = hmsctl(&app, admin, &["doctor", "hours", "set", &d, "mon-fri=09:00-13:00", "sat=10:00-12:00", "-o", "json"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json(&out)["hours"].as_array().unwrap().len(), 6);
        let shown = hmsctl(&app, admin, &["doctor", "hours", "show", &d]);
        let table = String::from_utf8_lossy(&shown.stdout).to_string();
        assert!(table.contains("Sat") && table.contains("10:00") && table.contains("clinic time"), "{table}");
        // A bad shift says what a shift looks like.
        let out = hmsctl(&app, admin, &["doctor", "hours", "set", &d, "monday 9 to 5"]);
        assert_eq!(code(&out), 2);
        assert!(String::from_utf8_lossy(&out.stderr).contains("DAYS=HH:MM-HH:MM"));
        // Afternoons are no longer free; a Saturday is.
        let day = weekday_ahead(3);
        let free = json(&hmsctl(&app, admin, &["doctor", "availability", &d, "--date", &day.to_string(), "-o", "json"]));
        assert_eq!(free["slots"].as_array().unwrap().len(), 8, "09:00-13:00 in half hours: {free}");
        // Leave over that day: no slots, and the reason in words.
        let out = hmsctl(&app, admin, &["doctor", "leave", "add", &d, "--from", &day.to_string(), "--reason", "conference", "-o", "json"]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let leave_id = json(&out)["leave_id"].to_string();
        let out = hmsctl(&app, admin, &["doctor", "availability", &d, "--date", &day.to_string()]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("on leave"), "{}", String::from_utf8_lossy(&out.stdout));
        let listed = json(&hmsctl(&app, admin, &["doctor", "leave", "list", &d, "-o", "json"]));
        assert_eq!(listed[0]["reason"], "conference");
        // Removing it needs --yes without a terminal; then the day is bookable again.
        assert_eq!(code(&hmsctl(&app, admin, &["doctor", "leave", "remove", &d, &leave_id])), 2);
        assert_eq!(code(&hmsctl(&app, admin, &["doctor", "leave", "remove", &d, &leave_id, "--yes"])), 0);
        let free = json(&hmsctl(&app, admin, &["doctor", "availability", &d, "--date", &day.to_string(), "-o", "json"]));
        assert_eq!(free["slots"].as_array().unwrap().len(), 8);
        // Reception may look but not change the week.
        assert_eq!(code(&hmsctl(&app, Some(Role::Reception), &["doctor", "hours", "set", &d, "--none"])), 7);
        app.stop().await;
    }
}

both_backends! {
    async fn tables_fit_the_terminal_and_pipes_get_plain_columns(b: Backend) {
        let app = TestApp::spawn(&b, &DESK).await;
        let admin = app.client(Role::Admin);
        let p = admin.create_patient(&new_patient("Nandini Venkataraghavan", 21)).await.unwrap().patient_id;
        let d = admin.create_doctor(&new_doctor("Dr. Balasubramanian Krishnamurthy", "Orthopaedics", "Joint replacement and sports injuries")).await.unwrap().doctor_id;
        let day = weekday_ahead(3);
        for n in 0..2 {
            let at = chrono_tz::Asia::Kolkata.from_local_datetime(&day.and_hms_opt(9, 30 * n, 0).unwrap()).unwrap().with_timezone(&Utc);
            app.client(Role::Reception).book_appointment(&hms_client::models::NewAppointment {
                patient_id: p, doctor_id: d, department: "Orthopaedics".into(), slot_start: at, slot_end: None,
            }, None).await.unwrap();
        }
        // Confirmations are recorded as notifications (long messages).
        let mut notes = Vec::new();
        for _ in 0..50 {
            notes = app.client(Role::Admin).list_notifications(&Default::default()).await.unwrap().items;
            if notes.len() >= 2 { break; }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(notes.len() >= 2, "confirmations recorded");
        // Every confirmation recorded (e-mail and SMS of each booking) before the tables are read.
        for _ in 0..50 {
            let now = app.client(Role::Admin).list_notifications(&Default::default()).await.unwrap().items;
            if now.len() == notes.len() && now.len() >= 4 { break; }
            notes = now;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        for args in [&["notifications", "list"][..], &["appointment", "list"][..], &["doctor", "list"][..]] {
            let (screen, status) = at_terminal(&app, Role::Admin, 80, args, &[]).await;
            assert_eq!(status, 0, "{screen}");
            let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
            for l in &lines {
                assert!(console::measure_text_width(l) <= 80, "{args:?}: wider than 80: {l:?}\n{screen}");
            }
            // One line per row: a header, borders, and a line for each record.
            let rows = lines.iter().filter(|l| l.starts_with('│')).count();
            let expected = match args[0] { "notifications" => notes.len(), "appointment" => 2, _ => 1 } + 1;
            assert_eq!(rows, expected, "{args:?}: one line per row\n{screen}");
            assert!(screen.contains('│'), "box drawing at a terminal");
        }
        let (screen, _) = at_terminal(&app, Role::Admin, 80, &["notifications", "list"], &[]).await;
        assert!(screen.contains('…'), "long messages are cut, not wrapped: {screen}");
        // Into a pipe: plain columns, nothing cut.
        let out = hmsctl(&app, Some(Role::Admin), &["notifications", "list"]);
        let plain = String::from_utf8_lossy(&out.stdout);
        assert!(!plain.contains('│') && !plain.contains('…'), "{plain}");
        assert_eq!(plain.lines().filter(|l| !l.trim().is_empty()).count(), notes.len() + 1, "a header and a line per row: {plain}");
        // CSV: one header; JSON from a list is one document.
        let csv = hmsctl(&app, Some(Role::Admin), &["notifications", "list", "-o", "csv"]);
        let csv = String::from_utf8_lossy(&csv.stdout);
        assert_eq!(csv.lines().filter(|l| l.starts_with("notification_id,")).count(), 1, "{csv}");
        app.stop().await;
    }
}

both_backends! {
    async fn pickers_back_out_and_ctrl_c_restores_the_cursor(b: Backend) {
        let app = TestApp::spawn(&b, &DESK).await;
        let admin = app.client(Role::Admin);
        let p = admin.create_patient(&new_patient("Picker Patient", 31)).await.unwrap().patient_id;
        admin.create_doctor(&new_doctor("Dr. Picker", "Dermatology", "General")).await.unwrap();
        let booked = |app: &TestApp| {
            let c = app.client(Role::Reception);
            async move { c.list_appointments(&hms_client::models::AppointmentQuery { patient_id: Some(p), ..Default::default() }).await.unwrap().items.len() }
        };
        // Esc at the department picker: backed out, nothing booked.
        let (screen, status) = at_terminal(&app, Role::Reception, 100, &["appointment", "book", "--patient", &p.to_string()], &["\x1b"]).await;
        assert_eq!(status, 1, "{screen}");
        assert!(screen.contains("backed out"), "{screen}");
        // q at a picker: the same.
        let (screen, status) = at_terminal(&app, Role::Reception, 100, &["appointment", "book", "--patient", &p.to_string()], &["q"]).await;
        assert_eq!(status, 1, "{screen}");
        assert_eq!(booked(&app).await, 0);
        // Ctrl-C at a picker: exit 130, and the cursor the picker hid is shown again.
        let (screen, status) = at_terminal(&app, Role::Reception, 100, &["appointment", "book", "--patient", &p.to_string()], &["\x03"]).await;
        assert_eq!(status, 130, "{screen}");
        let hidden = screen.rfind("\x1b[?25l").expect("the picker hides the cursor");
        let shown = screen.rfind("\x1b[?25h").expect("the cursor is shown again");
        assert!(shown > hidden, "{screen:?}");
        // Enter alone at the confirmation is No.
        let day = weekday_ahead(3).to_string();
        let (screen, status) = at_terminal(&app, Role::Reception, 100, &["appointment", "book", "--patient", &p.to_string()],
            &["\r", "\r", &format!("{day}\r"), "\r", "\r"]).await;
        assert_eq!(status, 1, "{screen}");
        assert!(screen.contains("[y/N]") && screen.contains("not booked"), "{screen}");
        assert_eq!(booked(&app).await, 0);
        app.stop().await;
    }
}

both_backends! {
    async fn help_describes_every_verb_and_errors_say_what_was_expected(b: Backend) {
        let app = TestApp::spawn(&b, &DESK).await;
        let help = |args: &[&str]| String::from_utf8_lossy(&hmsctl(&app, None, args).stdout).into_owned();
        let show = help(&["patient", "show", "--help"]);
        assert!(show.contains("One patient's record") && show.contains("Patient id"), "{show}");
        assert!(show.contains("Global options:"), "global flags in their own section: {show}");
        let list = help(&["appointment", "list", "--help"]);
        assert!(!list.contains("--yes"), "no --yes on a read: {list}");
        assert!(list.contains("Examples:"), "{list}");
        assert!(help(&["appointment", "cancel", "--help"]).contains("--yes"));
        let token = help(&["--help"]);
        assert!(token.contains("Exit codes:") && token.contains("Examples:"), "{token}");
        // A bad date names the form.
        let out = hmsctl(&app, Some(Role::Reception), &["patient", "add", "--name", "Bad Date", "--phone", "9876543210", "--dob", "17/04/1990"]);
        assert_eq!(code(&out), 2);
        assert!(String::from_utf8_lossy(&out.stderr).contains("expected YYYY-MM-DD"), "{}", String::from_utf8_lossy(&out.stderr));
        let out = hmsctl(&app, Some(Role::Reception), &["appointment", "reschedule", "1", "--to", "next tuesday"]);
        assert_eq!(code(&out), 2);
        assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD HH:MM"), "{}", String::from_utf8_lossy(&out.stderr));
        // A service that cannot be reached is named with the URL tried.
        let out = hmsctl(&app, Some(Role::Reception), &["bill", "list"]);
        assert_eq!(code(&out), 6);
        assert!(String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:9"), "{}", String::from_utf8_lossy(&out.stderr));
        // No token anywhere: where hmsctl looked.
        let out = hmsctl(&app, None, &["patient", "list"]);
        assert_eq!(code(&out), 7);
        assert!(String::from_utf8_lossy(&out.stderr).contains("looked at"), "{}", String::from_utf8_lossy(&out.stderr));
        app.stop().await;
    }
}
