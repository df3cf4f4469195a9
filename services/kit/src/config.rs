//! Configuration: documented defaults, then an optional TOML file, then `HMS_*` variables.
//!
//! | key (file) | variable | default |
//! |---|---|---|
//! | `bind` | `HMS_BIND` | `127.0.0.1` |
//! | `base_port` | `HMS_BASE_PORT` | `8001` (patient; the others follow in port order) |
//! | `data_dir` | `HMS_DATA_DIR` | `./hms-data` (SQLite files, signing key, admin token) |
//! | `create_missing_databases` | `HMS_CREATE_MISSING_DATABASES` | `false`: a lost SQLite file stops the start |
//! | `jwt_secret` | `HMS_JWT_SECRET` | unset: read from `jwt_secret_file` |
//! | `jwt_secret_file` | `HMS_JWT_SECRET_FILE` | `<data_dir>/signing.key` |
//! | `jwt_previous_secrets` | `HMS_JWT_PREVIOUS_SECRETS` | none: keys rotated out that still verify (comma-separated; also `<jwt_secret_file>.previous`, one per line) |
//! | `clinic_timezone` | `HMS_CLINIC_TIMEZONE` | `Asia/Kolkata` |
//! | `currency` | `HMS_CURRENCY` | `INR` |
//! | `default_consultation_fee` | `HMS_DEFAULT_CONSULTATION_FEE` | `"500.00"`: a new doctor's fee when none is given |
//! | `clinic_open` / `clinic_close` | `HMS_CLINIC_OPEN` / `HMS_CLINIC_CLOSE` | `09:00` / `18:00` (clinic time) |
//! | `booking_lead_minutes` | `HMS_BOOKING_LEAD_MINUTES` | `120` |
//! | `booking_horizon_days` | `HMS_BOOKING_HORIZON_DAYS` | `365`: no slot further ahead |
//! | `daily_cap` | `HMS_DAILY_CAP` | `8` (appointments per doctor per clinic day) |
//! | `cancellation_fee_window_minutes` | `HMS_CANCELLATION_FEE_WINDOW_MINUTES` | `120` (50% fee at or inside it) |
//! | `no_show_grace_minutes` | `HMS_NO_SHOW_GRACE_MINUTES` | `15` |
//! | `reschedule_cutoff_minutes` | `HMS_RESCHEDULE_CUTOFF_MINUTES` | `60` |
//! | `reminder_offsets_minutes` | `HMS_REMINDER_OFFSETS_MINUTES` | `[1440, 120]` (24 h and 2 h before) |
//! | `email_provider` / `sms_provider` | `HMS_EMAIL_PROVIDER` / `HMS_SMS_PROVIDER` | `record` (`smtp`, `webhook` / `webhook`) |
//! | `notification_webhook_url` | `HMS_NOTIFICATION_WEBHOOK_URL` | unset |
//! | `smtp_url`, `smtp_from` | `HMS_SMTP_URL`, `HMS_SMTP_FROM` | unset (`smtp://relay:25`, plain SMTP to a relay on the hospital network), `HMS <no-reply@hms.local>` |
//! | `notification_max_attempts` | `HMS_NOTIFICATION_MAX_ATTEMPTS` | `8` (then `failed`, visible) |
//! | `log_level` | `HMS_LOG_LEVEL` | `info` |
//! | `log_format` | `HMS_LOG_FORMAT` | `json` (`pretty` for a terminal) |
//! | `http_timeout_ms` | `HMS_HTTP_TIMEOUT_MS` | `3000` (calls to other services) |
//! | `db_max_connections` | `HMS_DB_MAX_CONNECTIONS` | `10` (per service, PostgreSQL) |
//! | `request_timeout_ms` | `HMS_REQUEST_TIMEOUT_MS` | `10000` (whole request) |
//! | `max_body_bytes` | `HMS_MAX_BODY_BYTES` | `65536` |
//! | `metrics_public` | `HMS_METRICS_PUBLIC` | `true` (`false`: `/metrics` needs an admin or service token) |
//! | `rate_limit_per_second`, `rate_limit_burst` | `HMS_RATE_LIMIT_PER_SECOND`, `HMS_RATE_LIMIT_BURST` | `300`, `600` per person's token and instance (`0` = off) |
//! | `outbox_poll_ms` | `HMS_OUTBOX_POLL_MS` | `1000` (relay safety-net poll) |
//! | `outbox_max_attempts` | `HMS_OUTBOX_MAX_ATTEMPTS` | `20` (then the delivery is parked, never dropped) |
//! | `outbox_relays` | `HMS_OUTBOX_RELAYS` | `4` (relays per subscriber delivering at once, so a slow subscriber holds back only its own deliveries; each keeps every aggregate's order) |
//! | `outbox_max_backoff_ms` | `HMS_OUTBOX_MAX_BACKOFF_MS` | `300000` (longest wait between attempts) |
//! | `services.<svc>.port` | `HMS_<SVC>_PORT` | base port + offset |
//! | `services.<svc>.url` | `HMS_<SVC>_URL` | `http://<bind>:<port>` (how others reach it) |
//! | `services.<svc>.database_url` | `HMS_<SVC>_DATABASE_URL` | `sqlite://<data_dir>/<svc>.db` |
//! | `services.<svc>.subscribers` | `HMS_<SVC>_SUBSCRIBERS` | the services that consume its events |
//!
//! The file is `HMS_CONFIG` if set. Secrets never appear in `Debug` output.

use crate::Service;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// Settings of one service; every field falls back to a derived default.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceSettings {
    pub port: Option<u16>,
    pub url: Option<String>,
    pub database_url: Option<String>,
    /// Names of the services (or `services.<name>.url` entries) its events go to.
    pub subscribers: Option<Vec<String>>,
}

/// The whole configuration of a daemon (one or all services).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub bind: IpAddr,
    pub base_port: u16,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    pub jwt_secret_file: Option<PathBuf>,
    /// Keys that signed tokens before the current one: they still verify, until dropped.
    pub jwt_previous_secrets: Vec<String>,
    pub clinic_timezone: String,
    pub currency: String,
    /// The fee of a doctor created without one (the legacy clients' shape).
    pub default_consultation_fee: hms_client::Money,
    /// Clinic opening time, clinic-local `HH:MM`.
    pub clinic_open: String,
    /// Clinic closing time, clinic-local `HH:MM` (the last slot ends here).
    pub clinic_close: String,
    /// Minimum time between now and a booked slot's start.
    pub booking_lead_minutes: i64,
    /// How far ahead a slot may be booked or moved to, in days.
    pub booking_horizon_days: i64,
    /// Most appointments a doctor may have in one clinic-local day.
    pub daily_cap: i64,
    /// A cancellation this close to the start (or later) carries the 50% fee.
    pub cancellation_fee_window_minutes: i64,
    /// A no-show may be recorded this long after the start, not before.
    pub no_show_grace_minutes: i64,
    /// No rescheduling this close to the current start.
    pub reschedule_cutoff_minutes: i64,
    /// Hours before an appointment its reminders go out, in minutes.
    pub reminder_offsets_minutes: Vec<i64>,
    /// How e-mails are delivered: `record` (kept as sent, shown to staff), `smtp`, `webhook`.
    pub email_provider: String,
    /// How SMS are delivered: `record` or `webhook`.
    pub sms_provider: String,
    /// Where the webhook provider posts messages (configuration only, never from a request).
    pub notification_webhook_url: Option<String>,
    /// SMTP relay, `smtp://host:port`: plain SMTP to a relay on the hospital's network.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// Attempts before a notification is marked failed.
    pub notification_max_attempts: i64,
    pub log_level: String,
    pub log_format: String,
    pub http_timeout_ms: u64,
    /// Connections per service to its database (PostgreSQL; SQLite uses one writer and two readers).
    pub db_max_connections: u32,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub metrics_public: bool,
    /// Requests per second each person's token may make to one service instance (a token
    /// bucket); beyond it, 429 `rate_limited` with `Retry-After`. Service tokens are exempt.
    /// `0` turns the limit off (load tests).
    pub rate_limit_per_second: u32,
    /// How many requests above the rate a token may burst.
    pub rate_limit_burst: u32,
    pub outbox_poll_ms: u64,
    /// Create a SQLite database this data directory once held but has lost, instead of
    /// refusing to start. Only after deciding not to restore it from a backup.
    pub create_missing_databases: bool,
    pub outbox_max_attempts: i64,
    /// Relays per service, delivering at once: a claimed delivery is leased, and a delivery
    /// waits while an earlier event of its aggregate is pending, so several never break an
    /// aggregate's order; while one waits on a slow subscriber the others carry on.
    pub outbox_relays: usize,
    pub outbox_max_backoff_ms: u64,
    pub services: BTreeMap<String, ServiceSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            base_port: 8001,
            data_dir: PathBuf::from("./hms-data"),
            create_missing_databases: false,
            jwt_secret: None,
            jwt_secret_file: None,
            jwt_previous_secrets: Vec::new(),
            clinic_timezone: "Asia/Kolkata".into(),
            currency: "INR".into(),
            default_consultation_fee: hms_client::Money(50_000),
            clinic_open: "09:00".into(),
            clinic_close: "18:00".into(),
            booking_lead_minutes: 120,
            booking_horizon_days: 365,
            daily_cap: 8,
            cancellation_fee_window_minutes: 120,
            no_show_grace_minutes: 15,
            reschedule_cutoff_minutes: 60,
            reminder_offsets_minutes: vec![24 * 60, 120],
            email_provider: "record".into(),
            sms_provider: "record".into(),
            notification_webhook_url: None,
            smtp_url: None,
            smtp_from: "HMS <no-reply@hms.local>".into(),
            notification_max_attempts: 8,
            log_level: "info".into(),
            log_format: "json".into(),
            http_timeout_ms: 3000,
            db_max_connections: 10,
            request_timeout_ms: 10_000,
            max_body_bytes: 64 * 1024,
            metrics_public: true,
            rate_limit_per_second: 300,
            rate_limit_burst: 600,
            outbox_poll_ms: 1000,
            outbox_max_attempts: 20,
            outbox_relays: 4,
            outbox_max_backoff_ms: 300_000,
            services: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("base_port", &self.base_port)
            .field("data_dir", &self.data_dir)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field(
                "jwt_previous_secrets",
                &format!("<{} redacted>", self.jwt_previous_secrets.len()),
            )
            .field("clinic_timezone", &self.clinic_timezone)
            .field("currency", &self.currency)
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Maps `HMS_PATIENT_DATABASE_URL` to `services.patient.database_url`; other keys stay flat.
fn env_key(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    for svc in Service::ALL {
        if let Some(rest) = lower.strip_prefix(&format!("{}_", svc.name())) {
            return format!("services.{}.{rest}", svc.name());
        }
    }
    lower
}

impl Config {
    /// Defaults, then the file named by `HMS_CONFIG` (if any), then `HMS_*` variables.
    pub fn load() -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Ok(path) = std::env::var("HMS_CONFIG") {
            if !std::path::Path::new(&path).exists() {
                anyhow::bail!("HMS_CONFIG names {path}, which does not exist");
            }
            fig = fig.merge(Toml::file(path));
        }
        let env = Env::prefixed("HMS_")
            .ignore(&["CONFIG", "TOKEN"])
            .map(|k| env_key(k.as_str()).into());
        fig = fig.merge(env_lists(env));
        let cfg: Config = fig.extract()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.clinic_timezone.parse::<chrono_tz::Tz>().is_err() {
            anyhow::bail!(
                "clinic_timezone '{}' is not an IANA time zone (e.g. Asia/Kolkata)",
                self.clinic_timezone
            );
        }
        let open = parse_hhmm(&self.clinic_open)
            .ok_or_else(|| anyhow::anyhow!("clinic_open '{}' is not HH:MM", self.clinic_open))?;
        let close = parse_hhmm(&self.clinic_close)
            .ok_or_else(|| anyhow::anyhow!("clinic_close '{}' is not HH:MM", self.clinic_close))?;
        anyhow::ensure!(open < close, "clinic_open must be before clinic_close");
        anyhow::ensure!(self.daily_cap >= 1, "daily_cap must be at least 1");
        for (what, p, allowed) in [
            (
                "email_provider",
                &self.email_provider,
                &["record", "smtp", "webhook"][..],
            ),
            (
                "sms_provider",
                &self.sms_provider,
                &["record", "webhook"][..],
            ),
        ] {
            anyhow::ensure!(
                allowed.contains(&p.as_str()),
                "{what} '{p}' is not one of {allowed:?}"
            );
        }
        if [&self.email_provider, &self.sms_provider]
            .iter()
            .any(|p| p.as_str() == "webhook")
        {
            anyhow::ensure!(
                self.notification_webhook_url.is_some(),
                "the webhook provider needs notification_webhook_url"
            );
        }
        if self.email_provider == "smtp" {
            anyhow::ensure!(self.smtp_url.is_some(), "the smtp provider needs smtp_url");
        }
        Ok(())
    }

    /// Clinic hours as minutes after clinic-local midnight: `(open, close)`.
    pub fn clinic_hours(&self) -> (u32, u32) {
        (
            parse_hhmm(&self.clinic_open).unwrap_or(9 * 60),
            parse_hhmm(&self.clinic_close).unwrap_or(18 * 60),
        )
    }

    fn settings(&self, svc: &str) -> ServiceSettings {
        self.services.get(svc).cloned().unwrap_or_default()
    }

    /// The port a service listens on.
    pub fn port(&self, svc: Service) -> u16 {
        self.settings(svc.name())
            .port
            .unwrap_or(self.base_port + svc.port_offset())
    }

    /// The URL other services and `hmsctl` reach a service (or named subscriber) at.
    pub fn url(&self, name: &str) -> Option<String> {
        if let Some(url) = self.settings(name).url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let svc: Service = name.parse().ok()?;
        let host = match self.bind {
            IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        Some(format!("http://{host}:{}", self.port(svc)))
    }

    /// Where every service is, for the shared client.
    pub fn service_urls(&self) -> hms_client::ServiceUrls {
        let mut urls = hms_client::ServiceUrls::local("127.0.0.1");
        for svc in Service::ALL {
            if let Some(u) = self.url(svc.name()) {
                urls.set(svc, u);
            }
        }
        urls
    }

    /// The database of a service: configured, or a SQLite file in the data directory.
    pub fn database_url(&self, svc: Service) -> String {
        self.settings(svc.name()).database_url.unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join(format!("{}.db", svc.name())).display()
            )
        })
    }

    /// Who receives a service's events: configured, or the given default topology.
    pub fn subscribers(&self, svc: Service, default: &[Service]) -> Vec<String> {
        self.settings(svc.name())
            .subscribers
            .unwrap_or_else(|| default.iter().map(|s| s.name().to_string()).collect())
    }

    /// Sets one service's settings (tests and the daemon's flags use this).
    pub fn service_mut(&mut self, name: &str) -> &mut ServiceSettings {
        self.services.entry(name.to_string()).or_default()
    }

    /// The clinic's time zone (validated at load).
    pub fn clinic_tz(&self) -> chrono_tz::Tz {
        self.clinic_timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Kolkata)
    }

    /// Where the signing key lives when not given inline.
    pub fn jwt_secret_path(&self) -> PathBuf {
        self.jwt_secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing.key"))
    }
}

/// `HH:MM` → minutes after midnight (`24:00` allowed as the end of a day).
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// Variables become typed values; comma-separated `*_SUBSCRIBERS` become lists
/// (`HMS_PATIENT_SUBSCRIBERS=appointment,notification`; empty = none).
fn env_lists(env: Env) -> Figment {
    let mut fig = Figment::new();
    for (key, value) in env.iter() {
        let key = key.as_str().to_string();
        if key.ends_with(".subscribers")
            || key == "reminder_offsets_minutes"
            || key == "jwt_previous_secrets"
        {
            let list: Vec<figment::value::Value> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("parsing a value is infallible"))
                .collect();
            fig = fig.merge(Serialized::global(&key, list));
        } else {
            let value: figment::value::Value =
                value.parse().expect("parsing a value is infallible");
            fig = fig.merge(Serialized::global(&key, value));
        }
    }
    fig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_variables_map_to_service_settings() {
        assert_eq!(
            env_key("PATIENT_DATABASE_URL"),
            "services.patient.database_url"
        );
        assert_eq!(env_key("DATA_DIR"), "data_dir");
        assert_eq!(env_key("NOTIFICATION_URL"), "services.notification.url");
    }

    /// The only test in this crate that touches the environment.
    #[test]
    fn variables_override_defaults_and_lists_split_on_commas() {
        std::env::set_var("HMS_PATIENT_DATABASE_URL", "postgres://p@db/patient");
        std::env::set_var("HMS_PATIENT_SUBSCRIBERS", "appointment, notification");
        std::env::set_var("HMS_DOCTOR_PORT", "9102");
        std::env::set_var("HMS_DAILY_CAP", "12");
        let cfg = Config::load().unwrap();
        for k in [
            "HMS_PATIENT_DATABASE_URL",
            "HMS_PATIENT_SUBSCRIBERS",
            "HMS_DOCTOR_PORT",
            "HMS_DAILY_CAP",
        ] {
            std::env::remove_var(k);
        }
        assert_eq!(
            cfg.database_url(Service::Patient),
            "postgres://p@db/patient"
        );
        assert_eq!(
            cfg.subscribers(Service::Patient, &[]),
            vec!["appointment", "notification"]
        );
        assert_eq!(cfg.port(Service::Doctor), 9102);
        assert_eq!(cfg.daily_cap, 12);
        assert_eq!(cfg.port(Service::Patient), 8001);
    }

    #[test]
    fn defaults_derive_ports_urls_and_files() {
        let cfg = Config::default();
        assert_eq!(cfg.port(Service::Notification), 8007);
        assert_eq!(cfg.url("doctor").as_deref(), Some("http://127.0.0.1:8002"));
        assert!(cfg
            .database_url(Service::Patient)
            .ends_with("patient.db?mode=rwc"));
        assert!(format!(
            "{:?}",
            Config {
                jwt_secret: Some("s3cret".into()),
                ..Config::default()
            }
        )
        .contains("<redacted>"));
    }
}
