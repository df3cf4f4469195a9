//! The `hms-daemon` binary: first start creates a key and an admin token; `token issue`
//! signs with that key; SIGTERM shuts down cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;

fn free_base_port() -> u16 {
    // Seven consecutive free ports.
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base < 60000
            && (0..7).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

#[tokio::test]
async fn first_start_creates_an_admin_token_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let bin = env!("CARGO_BIN_EXE_hms-daemon");
    let mut child = Command::new(bin)
        .args(["--base-port", &base.to_string(), "--data-dir"])
        .arg(dir.path())
        .env_remove("HMS_JWT_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let patient = format!("http://127.0.0.1:{base}");
    let last = format!("http://127.0.0.1:{}", base + 6);
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("{last}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "hms-daemon came up");
    assert!(dir.path().join("patient.db").exists() && dir.path().join("doctor.db").exists());

    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let r = http
        .get(format!("{patient}/v1/patients"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{patient}/v1/patients"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "auth is on from the first start");

    let out = Command::new(bin)
        .args([
            "token",
            "issue",
            "--role",
            "reception",
            "--subject",
            "front-desk-1",
            "--ttl",
            "1h",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reception = String::from_utf8(out.stdout).unwrap();
    let r = http
        .get(format!("{patient}/v1/patients"))
        .bearer_auth(reception.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{patient}/v1/patients/1/audit"))
        .bearer_auth(reception.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let bad = Command::new(bin)
        .args([
            "token",
            "issue",
            "--role",
            "doctor",
            "--subject",
            "x",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a doctor token needs --doctor-id");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.expect("hms-daemon exits after SIGTERM");
    assert!(status.success(), "clean exit, got {status}");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("Admin token:"),
        "first start tells how to use the token: {err}"
    );

    // A lost database stops the next start, naming the file; nothing empty is created.
    for f in ["patient.db", "patient.db-wal", "patient.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let out = Command::new(bin)
        .args(["--base-port", &base.to_string(), "--data-dir"])
        .arg(dir.path())
        .env_remove("HMS_JWT_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {err}");
    assert!(
        err.contains("patient.db") && err.contains("--create-missing-databases"),
        "{err}"
    );
    assert!(
        !dir.path().join("patient.db").exists(),
        "no empty database was created"
    );
}

/// Replicas starting together on one PostgreSQL database apply the migrations once: the
/// migrator holds a database lock around them, and every start sees the same schema.
#[tokio::test]
async fn replicas_starting_together_on_postgres_migrate_once() {
    let Some(backend) = hms_testkit::Backend::postgres() else {
        println!(
            "SKIPPED replicas_starting_together_on_postgres_migrate_once: HMS_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = hms_testkit::fresh_database(&backend, dir.path(), "replicas").await;
    let start = |_: usize| {
        let url = url.clone();
        async move {
            let db = hms_kit::db::Db::connect(&url).await?;
            db.migrate((hms_billing::SERVICE.migrations)(
                hms_kit::db::Backend::Postgres,
            ))
            .await?;
            Ok::<_, anyhow::Error>(db)
        }
    };
    let started = futures::future::join_all((0..4).map(start)).await;
    let dbs: Vec<_> = started
        .into_iter()
        .map(|r| r.expect("every replica starts"))
        .collect();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(dbs[0].pool())
        .await
        .unwrap();
    let expected = (hms_billing::SERVICE.migrations)(hms_kit::db::Backend::Postgres)
        .migrations
        .len()
        + sqlx::migrate!("../migrations/kit/postgres")
            .migrations
            .len();
    assert_eq!(
        applied as usize, expected,
        "each migration applied exactly once"
    );
    for db in dbs {
        db.close().await;
    }
    if let hms_testkit::Backend::Postgres(server) = &backend {
        hms_testkit::drop_database(server, &url).await;
    }
}

/// Starts the embedded default on `dir`; returns the child and its base port once ready.
async fn start_daemon(dir: &std::path::Path) -> (std::process::Child, u16) {
    start_daemon_at(dir, free_base_port()).await
}

/// Starts the embedded default on `dir` at `base`; returns the child and `base` once ready.
async fn start_daemon_at(dir: &std::path::Path, base: u16) -> (std::process::Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hms-daemon"))
        .args(["--base-port", &base.to_string(), "--data-dir"])
        .arg(dir)
        .env_remove("HMS_JWT_SECRET")
        .env("HMS_RATE_LIMIT_PER_SECOND", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(format!("http://127.0.0.1:{}/ready", base + 6))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("hms-daemon did not come up on {}", dir.display());
}

/// A backup taken while patients are being written holds every write acknowledged before it
/// began; the daemon started on the backup serves them, with the same admin token.
#[tokio::test]
async fn a_backup_under_write_load_restores_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (data, copy) = (dir.path().join("data"), dir.path().join("backup"));
    let (mut live, base) = start_daemon(&data).await;
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{base}/v1/patients");
    // Four writers, each recording the ids its creates were acknowledged with.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let writers: Vec<_> = (0..4u32)
        .map(|w| {
            let (http, url, token, stop, acked) = (http.clone(), url.clone(), token.clone(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let body = serde_json::json!({"name": "Backup Load", "phone": format!("9{w}{n:08}"), "dob": "1990-01-01"});
                    if let Ok(r) = http.post(&url).bearer_auth(&token).json(&body).send().await {
                        if r.status() == 201 {
                            let p: serde_json::Value = r.json().await.unwrap();
                            acked.lock().unwrap().push(p["patient_id"].as_i64().unwrap());
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before: Vec<i64> = acked.lock().unwrap().clone();
    let out = tokio::task::spawn_blocking({
        let (data, copy) = (data.clone(), copy.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_hms-daemon"))
                .args(["backup", "--out"])
                .arg(&copy)
                .arg("--data-dir")
                .arg(&data)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let total = acked.lock().unwrap().len();
    assert!(
        before.len() >= 10 && total > before.len(),
        "writes ran through the backup: {} then {total}",
        before.len()
    );
    live.kill().unwrap();
    live.wait().unwrap();

    // Restored: a daemon on the copy serves every write acknowledged before the backup began.
    let (mut restored, base) = start_daemon(&copy).await;
    let token_copy = std::fs::read_to_string(copy.join("admin.token")).unwrap();
    assert_eq!(token_copy.trim(), token, "the same admin token");
    for id in &before {
        let r = http
            .get(format!("http://127.0.0.1:{base}/v1/patients/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "patient {id}, acknowledged before the backup, is in it"
        );
    }
    // A second backup into a directory that is not empty is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_hms-daemon"))
        .args(["backup", "--out"])
        .arg(&copy)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    restored.kill().unwrap();
    restored.wait().unwrap();
}

/// A key rotation logs nobody out: a token signed with the old key is still accepted after the
/// restart on the new key, until the old key is dropped.
#[tokio::test]
async fn rotating_the_key_keeps_old_tokens_until_the_old_key_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut first, _) = start_daemon(&data).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let old_token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();

    let out = Command::new(env!("CARGO_BIN_EXE_hms-daemon"))
        .args(["key", "rotate", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(new_token, old_token);

    let http = reqwest::Client::new();
    let status = |base: u16, token: String| {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{base}/v1/patients"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (mut second, base) = start_daemon(&data).await;
    assert_eq!(
        status(base, old_token.clone()).await,
        200,
        "no 401 for a token of the old key"
    );
    assert_eq!(status(base, new_token.clone()).await, 200);
    second.kill().unwrap();
    second.wait().unwrap();

    // Dropped: the old key's tokens are refused, the new key's accepted.
    std::fs::remove_file(data.join("signing.key.previous")).unwrap();
    let (mut third, base) = start_daemon(&data).await;
    assert_eq!(status(base, old_token).await, 401);
    assert_eq!(status(base, new_token).await, 200);
    third.kill().unwrap();
    third.wait().unwrap();
}

/// The README's walk-through, run as written on the embedded default: only the binary
/// `cargo run` would build and the ports differ (the daemon here listens on free ones).
/// Run twice, as a reader retrying it would: the same keys book once and charge once.
#[tokio::test]
async fn the_readme_walk_through_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("<!-- walk-through: start -->\n```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n<!-- walk-through: end -->").next())
        .expect("README.md marks its walk-through");
    const HMSCTL: &str = "cargo run -q --release -p hms-cli --bin hmsctl --";
    assert!(
        block.contains(HMSCTL) && block.contains("localhost:8001"),
        "{block}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("docs"), dir.path().join("docs")).unwrap();
    let (mut daemon, base) =
        start_daemon_at(&dir.path().join("hms-data"), free_base_port_ending_in_1()).await;
    let script = block
        .replace(
            HMSCTL,
            &format!("{} --base-port {base}", hmsctl().display()),
        )
        .replace("localhost:800", &format!("127.0.0.1:{}", base / 10));
    for run in 1..=2 {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "run {run}: {stdout}\n{stderr}");
        assert!(
            !stdout.contains("\"code\":"),
            "run {run}: an error answer:\n{stdout}"
        );
        assert!(
            stdout.contains("\"status\":\"CANCELLED\""),
            "run {run}: {stdout}"
        );
    }

    let token = std::fs::read_to_string(dir.path().join("hms-data/admin.token")).unwrap();
    let http = reqwest::Client::new();
    let get = |port: u16, path: &str| {
        http.get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(token.trim())
            .send()
    };
    let mut bill = serde_json::Value::Null;
    for _ in 0..50 {
        bill = get(base + 2, "/v1/bills/1")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if bill["status"] == "PAID" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bill["status"], "PAID", "{bill}");
    assert_eq!(bill["balance"], "0.00", "{bill}");
    let payments: serde_json::Value = get(base + 5, "/v1/payments?bill_id=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        payments["items"].as_array().unwrap().len(),
        1,
        "charged once over two runs: {payments}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// Seven free ports from one ending in 1, so `localhost:8001…8007` map onto them digit for digit.
fn free_base_port_ending_in_1() -> u16 {
    loop {
        let base = free_base_port();
        let base = base - base % 10 + 1;
        if base < 60000
            && (0..7).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

/// `hmsctl`, built beside this package's binary by `cargo test --workspace` (else built now).
fn hmsctl() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_hms-daemon")).with_file_name("hmsctl");
    if !path.exists() {
        let built = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "-q", "-p", "hms-cli", "--bin", "hmsctl"])
            .status()
            .unwrap();
        assert!(
            built.success() && path.exists(),
            "hmsctl could not be built at {}",
            path.display()
        );
    }
    path
}

/// `token issue --help` states each default once (it once showed `[default: 8h]` twice).
#[test]
fn token_help_states_its_default_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_hms-daemon"))
        .args(["token", "issue", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert_eq!(help.matches("[default: 8h]").count(), 1, "{help}");
}
