//! Spawning real services for black-box tests (used by the test suites of `hms-daemon` and
//! `hms-cli`): random ports, throw-away databases (SQLite
//! files in a temp dir, or fresh PostgreSQL databases when `HMS_TEST_POSTGRES_URL` is set),
//! a test-settable clock, tokens for every role, and the logs they write, captured.

pub mod subscriber;

/// Every service, as the embedded default runs them (the test suites' one list of them).
pub const EVERY_SERVICE: [&hms_kit::server::ServiceDef; 7] = [
    &hms_patient::SERVICE,
    &hms_doctor::SERVICE,
    &hms_billing::SERVICE,
    &hms_appointment::SERVICE,
    &hms_prescription::SERVICE,
    &hms_payment::SERVICE,
    &hms_notification::SERVICE,
];

use hms_client::{HmsClient, ServiceUrls};
use hms_kit::auth::{Keys, Role};
use hms_kit::clock::Clock;
use hms_kit::config::Config;
use hms_kit::db::Db;
use hms_kit::server::{self, Running, ServiceDef};
use hms_kit::Service;
use sqlx::Connection;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

/// Which database the services under test use.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// Server URL of a PostgreSQL that may create databases.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL when `HMS_TEST_POSTGRES_URL` is set.
    pub fn postgres() -> Option<Backend> {
        std::env::var("HMS_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(Backend::Postgres)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }
}

/// Runs a test body on SQLite and, when configured, on PostgreSQL:
/// `cargo test sqlite` / `cargo test postgres` select one.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($b:ident: Backend) $body:block)*) => { $(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($b: $crate::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run($crate::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                match $crate::Backend::postgres() {
                    Some(b) => run(b).await,
                    // Written past the test harness's capture, so the skip is always visible.
                    None => {
                        use std::io::Write;
                        let _ = writeln!(
                            std::io::stderr(),
                            "SKIPPED {}::postgres: HMS_TEST_POSTGRES_URL is not set",
                            module_path!()
                        );
                    }
                }
            }
        }
    )* };
}

/// Everything every service logged in this test process.
pub fn logs() -> String {
    let buf = log_buffer().lock().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUF: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUF.get_or_init(|| Mutex::new(Vec::new()))
}

struct Sink;

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    hms_kit::logging::init_with_writer("info", "json", || Sink);
}

/// A fresh database URL for `name` on `backend`.
pub async fn fresh_database(backend: &Backend, dir: &std::path::Path, name: &str) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/{name}.db", dir.display()),
        Backend::Postgres(server) => {
            sqlx::any::install_default_drivers();
            let db = format!(
                "hms_t_{}_{name}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            let mut conn = sqlx::AnyConnection::connect(server)
                .await
                .expect("connect to HMS_TEST_POSTGRES_URL");
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut conn)
                .await
                .expect("create a throw-away database");
            let _ = conn.close().await;
            hms_kit::db::with_database(server, &db)
        }
    }
}

/// Drops a throw-away PostgreSQL database, even with connections open.
pub async fn drop_database(server: &str, url: &str) {
    let Some(db) = hms_kit::db::database_name(url) else {
        return;
    };
    if let Ok(mut conn) = sqlx::AnyConnection::connect(server).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// Real services on random ports, with their own databases.
pub struct TestApp {
    pub backend: Backend,
    pub running: Vec<Running>,
    pub keys: Arc<Keys>,
    pub clock: Clock,
    pub config: Arc<Config>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    databases: Vec<String>,
}

impl TestApp {
    /// Starts `defs` with the clock at the real now.
    pub async fn spawn(backend: &Backend, defs: &[&'static ServiceDef]) -> TestApp {
        Self::spawn_with(backend, defs, Clock::system(), |_| {}).await
    }

    /// Starts `defs` with `clock` and a configuration `tweak`.
    pub async fn spawn_with(
        backend: &Backend,
        defs: &[&'static ServiceDef],
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            outbox_poll_ms: 200,
            outbox_max_backoff_ms: 400,
            // Tests run two at a time, each with up to five services and replicas, against one
            // PostgreSQL server (100 connections by default).
            db_max_connections: 4,
            ..Config::default()
        };
        let mut listeners = Vec::new();
        let mut databases = Vec::new();
        for def in defs {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let url = fresh_database(backend, dir.path(), def.service.name()).await;
            databases.push(url.clone());
            let s = config.service_mut(def.service.name());
            s.port = Some(port);
            s.url = Some(format!("http://127.0.0.1:{port}"));
            s.database_url = Some(url);
            listeners.push(l);
        }
        // Services not started here are down: never reach whatever runs on the default ports.
        for svc in Service::ALL {
            if !defs.iter().any(|d| d.service == svc) {
                config.service_mut(svc.name()).url =
                    Some(format!("http://127.0.0.1:{}", subscriber::closed_port()));
            }
        }
        tweak(&mut config);
        let config = Arc::new(config);
        let keys = Arc::new(Keys::from_secret(SECRET.as_bytes()));
        let mut running = Vec::new();
        for (def, l) in defs.iter().zip(listeners) {
            running.push(
                server::start(def, config.clone(), keys.clone(), clock.clone(), l)
                    .await
                    .unwrap_or_else(|e| panic!("{} did not start: {e:#}", def.service)),
            );
        }
        TestApp {
            backend: backend.clone(),
            running,
            keys,
            clock,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            dir,
            databases,
        }
    }

    pub fn service(&self, svc: Service) -> &Running {
        self.running
            .iter()
            .find(|r| r.service == svc)
            .unwrap_or_else(|| panic!("{svc} is not running in this test"))
    }

    pub fn url(&self, svc: Service) -> String {
        self.service(svc).url()
    }

    pub fn db(&self, svc: Service) -> &Db {
        &self.service(svc).ctx.db
    }

    /// A token for `role` (subject `test-<role>`); doctors get doctor id 1.
    pub fn token(&self, role: Role) -> String {
        let doctor = (role == Role::Doctor).then_some(1);
        self.keys.issue(
            role,
            &format!("test-{role}"),
            doctor,
            chrono::Duration::hours(1),
        )
    }

    pub fn doctor_token(&self, doctor_id: i64) -> String {
        self.keys.issue(
            Role::Doctor,
            &format!("dr-{doctor_id}"),
            Some(doctor_id),
            chrono::Duration::hours(1),
        )
    }

    /// The typed client, authenticated as `role`.
    pub fn client(&self, role: Role) -> HmsClient {
        let mut urls = ServiceUrls::local("127.0.0.1");
        for r in &self.running {
            urls.set(r.service, r.url());
        }
        HmsClient::new(urls, Duration::from_secs(20)).with_token(self.token(role))
    }

    /// The typed client, authenticated as doctor `doctor_id`.
    pub fn doctor_client(&self, doctor_id: i64) -> HmsClient {
        self.client(Role::Admin)
            .with_token(self.doctor_token(doctor_id))
    }

    /// A raw request to `svc`, authenticated as `role`.
    pub fn req(
        &self,
        role: Role,
        method: reqwest::Method,
        svc: Service,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url(svc)))
            .bearer_auth(self.token(role))
    }

    /// Starts a second instance of `def` on its own port, sharing the first one's database and
    /// configuration (what a second replica behind a Kubernetes Service is). Returns its URL.
    pub async fn spawn_replica(&mut self, def: &'static ServiceDef) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = server::start(
            def,
            self.config.clone(),
            self.keys.clone(),
            self.clock.clone(),
            l,
        )
        .await
        .unwrap_or_else(|e| panic!("replica of {} did not start: {e:#}", def.service));
        let url = r.url();
        self.running.push(r);
        url
    }

    /// Stops one service (gracefully); its database and port stay for [`TestApp::start_service`].
    pub async fn stop_service(&mut self, svc: Service) {
        let i = self
            .running
            .iter()
            .position(|r| r.service == svc)
            .expect("running");
        self.running.remove(i).stop().await;
    }

    /// Starts a service again on its configured port and database (a restart).
    pub async fn start_service(&mut self, def: &'static ServiceDef) {
        let port = self.config.port(def.service);
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("its port is free again");
        let r = server::start(
            def,
            self.config.clone(),
            self.keys.clone(),
            self.clock.clone(),
            l,
        )
        .await
        .unwrap_or_else(|e| panic!("{} did not restart: {e:#}", def.service));
        self.running.push(r);
    }

    pub async fn stop(self) {
        for r in self.running {
            r.stop().await;
        }
        if let Backend::Postgres(server) = &self.backend {
            for url in &self.databases {
                drop_database(server, url).await;
            }
        }
    }
}

/// Sends `req`: the status and the JSON body (null when there is none; a body that is not JSON
/// fails the test — every answer of the services is JSON).
pub async fn answer(req: reqwest::RequestBuilder) -> (reqwest::StatusCode, serde_json::Value) {
    let resp = req.send().await.expect("the service answers");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("a whole body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A new patient body with distinct contact details.
pub fn new_patient(name: &str, n: u32) -> hms_client::models::NewPatient {
    hms_client::models::NewPatient {
        patient_id: None,
        name: name.to_string(),
        email: Some(format!("person{n}@example.org")),
        phone: format!("98{:08}", n),
        dob: "1985-04-12".parse().unwrap(),
        created_at: None,
    }
}

/// A new doctor body.
pub fn new_doctor(
    name: &str,
    department: &str,
    specialization: &str,
) -> hms_client::models::NewDoctor {
    hms_client::models::NewDoctor {
        doctor_id: None,
        name: name.to_string(),
        email: None,
        phone: None,
        department: department.to_string(),
        specialization: specialization.to_string(),
        consultation_fee: Some("500.00".parse().unwrap()),
        working_hours: None,
        created_at: None,
    }
}

/// The first event of `event_type` in a producer's outbox, as its relay would deliver it.
pub async fn outbox_event(db: &Db, source: &str, event_type: &str) -> hms_client::models::Event {
    outbox_events(db, source, event_type)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {event_type} in the outbox"))
}

/// Every event of `event_type` in a producer's outbox, oldest first, as its relay would
/// deliver them.
pub async fn outbox_events(
    db: &Db,
    source: &str,
    event_type: &str,
) -> Vec<hms_client::models::Event> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT event_id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, correlation_id, occurred_at \
         FROM outbox WHERE event_type = $1 ORDER BY occurred_at, aggregate_id",
    )
    .bind(event_type)
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|row| hms_client::models::Event {
            event_id: row.get::<String, _>("event_id").parse().unwrap(),
            event_type: row.get("event_type"),
            source: source.into(),
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            aggregate_seq: row.get("aggregate_seq"),
            occurred_at: hms_kit::time::from_db(&row.get::<String, _>("occurred_at")).unwrap(),
            correlation_id: row.get("correlation_id"),
            payload: serde_json::from_str(&row.get::<String, _>("payload")).unwrap(),
        })
        .collect()
}
