//! `hms-daemon`: runs one, several or all HMS services, and issues tokens.
//!
//! With no arguments it is `hms-daemon serve --all`: every service on its port, each with its
//! own SQLite file under `./hms-data`, a signing key and an admin token created on first start.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hms_kit::auth::{write_private, Keys, Role};
use hms_kit::clock::Clock;
use hms_kit::config::Config;
use hms_kit::server::{self, Running, ServiceDef};
use hms_kit::Service;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// jemalloc rather than the system allocator: the services allocate and free on dozens of
/// threads (the runtime's and each SQLite connection's). Measured in one sitting
/// (docs/benchmarks.md): 12–16% more bookings a second, and freed memory goes back to the
/// system within a fraction of a second (its settings: `.cargo/config.toml`). Built unprefixed,
/// it is SQLite's allocator too (SQLite's C code calls `malloc`): otherwise each connection's
/// thread took a C library arena of its own and kept what it freed, 4 MiB more resident.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Every service this build can run, in port order.
fn registry() -> Vec<&'static ServiceDef> {
    vec![
        &hms_patient::SERVICE,
        &hms_doctor::SERVICE,
        &hms_billing::SERVICE,
        &hms_appointment::SERVICE,
        &hms_prescription::SERVICE,
        &hms_payment::SERVICE,
        &hms_notification::SERVICE,
    ]
}

#[derive(Parser)]
#[command(
    name = "hms-daemon",
    version,
    about = "Runs the HMS services (all of them, with no arguments)"
)]
struct Cli {
    #[command(flatten)]
    place: Place,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the services live; these override configuration (file and HMS_* variables).
#[derive(Args, Clone, Default)]
struct Place {
    /// Directory of the SQLite files, signing key and admin token [default: ./hms-data]
    #[arg(long, global = true, env = "HMS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1]
    #[arg(long, global = true, env = "HMS_BIND")]
    bind: Option<IpAddr>,
    /// Port of the patient service; the others follow in order [default: 8001]
    #[arg(long, global = true, env = "HMS_BASE_PORT")]
    base_port: Option<u16>,
    /// Begin a service's database empty when this data directory held it but it is gone
    /// (otherwise the start stops, naming the file, so it can be restored from a backup)
    #[arg(long, global = true)]
    create_missing_databases: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run services: `serve --all`, or `serve patient doctor`.
    Serve {
        /// Run every service this build has.
        #[arg(long, conflicts_with = "services")]
        all: bool,
        /// Services to run (patient, doctor, billing, appointment, prescription, payment, notification).
        services: Vec<Service>,
    },
    /// The signing key of the embedded default (`<data-dir>/signing.key`).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Tokens for people and scripts.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// A consistent copy of every service's SQLite database, taken while the services run
    /// (SQLite's online `VACUUM INTO`: one read snapshot, writers carry on), with the signing
    /// key and admin token, into a new directory; `hms-daemon --data-dir OUT` starts on it.
    /// PostgreSQL databases are backed up with PostgreSQL's own tools (docs/runbooks.md).
    #[command(
        after_help = "Example:\n  hms-daemon backup --data-dir hms-data --out /backups/hms-2026-11-25"
    )]
    Backup {
        /// A directory that does not exist yet (or is empty).
        #[arg(long)]
        out: PathBuf,
        /// Services to back up (default: all in this build).
        services: Vec<Service>,
    },
    /// Inspect and repair services' outboxes (their databases, per configuration).
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Pending and parked deliveries per service.
    Status {
        /// Services to look at (default: all in this build).
        services: Vec<Service>,
    },
    /// Put parked deliveries back in the queue, after fixing their cause.
    Requeue {
        services: Vec<Service>,
        /// Only this event.
        #[arg(long)]
        event: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// A new key signs from the next start; the old one moves to `signing.key.previous` and
    /// still verifies the tokens it signed, so nobody is logged out. Drop it (delete its line)
    /// once those tokens have expired. A new admin token is written with the new key.
    Rotate,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a token signed with this deployment's key.
    Issue {
        /// reception, doctor, billing, admin or service
        #[arg(long)]
        role: Role,
        /// Who the token is for (a user name, or service:<name> for services).
        #[arg(long)]
        subject: String,
        /// The doctor's id (required for --role doctor; scopes the token to that doctor).
        #[arg(long)]
        doctor_id: Option<i64>,
        /// How long it is valid: 30m, 8h, 30d
        #[arg(long, default_value = "8h", value_parser = parse_ttl)]
        ttl: chrono::Duration,
    },
}

fn parse_ttl(s: &str) -> Result<chrono::Duration, String> {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 30m, 8h or 30d"))?;
    let d = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(format!("'{s}' is not a duration like 30m, 8h or 30d")),
    };
    if n <= 0 {
        return Err("the duration must be positive".into());
    }
    Ok(d)
}

fn load_config(place: &Place) -> anyhow::Result<Config> {
    let mut cfg = Config::load()?;
    if let Some(d) = &place.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(b) = place.bind {
        cfg.bind = b;
    }
    if let Some(p) = place.base_port {
        cfg.base_port = p;
    }
    cfg.create_missing_databases |= place.create_missing_databases;
    Ok(cfg)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(&cli.place, true, Vec::new()).await,
        Some(Command::Serve { all, services }) => {
            let all = all || services.is_empty();
            serve(&cli.place, all, services).await
        }
        Some(Command::Token { command }) => issue(&cli.place, command),
        Some(Command::Key {
            command: KeyCommand::Rotate,
        }) => rotate(&cli.place),
        Some(Command::Outbox { command }) => outbox(&cli.place, command).await,
        Some(Command::Backup { out, services }) => backup(&cli.place, &out, &services).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hms-daemon: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn rotate(place: &Place) -> anyhow::Result<()> {
    let cfg = load_config(place)?;
    anyhow::ensure!(
        cfg.jwt_secret.is_none(),
        "the key is configured (HMS_JWT_SECRET): rotate it there — the new key as HMS_JWT_SECRET, \
         the old one added to HMS_JWT_PREVIOUS_SECRETS (docs/runbooks.md)"
    );
    let file = cfg.jwt_secret_path();
    let kid = hms_kit::auth::rotate_file(&file)?;
    let (keys, _) = Keys::load_rotated(None, &file, false, &cfg.jwt_previous_secrets)?;
    let admin = keys.issue(Role::Admin, "admin", None, chrono::Duration::days(365));
    write_private(&cfg.data_dir.join("admin.token"), &admin)?;
    println!(
        "New signing key {kid} in {}; the old one verifies from {} until you drop it. \
         Restart hms-daemon to sign with the new key.",
        file.display(),
        hms_kit::auth::previous_file(&file).display()
    );
    Ok(())
}

fn issue(place: &Place, cmd: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Issue {
        role,
        subject,
        doctor_id,
        ttl,
    } = cmd;
    if role == Role::Doctor && doctor_id.is_none() {
        anyhow::bail!("--role doctor needs --doctor-id (a doctor token is scoped to one doctor)");
    }
    let cfg = load_config(place)?;
    let (keys, _) = Keys::load(cfg.jwt_secret.as_deref(), &cfg.jwt_secret_path(), false)
        .context("no signing key: start hms-daemon once to create one, or set HMS_JWT_SECRET")?;
    println!("{}", keys.issue(role, &subject, doctor_id, ttl));
    Ok(())
}

fn select(wanted: &[Service]) -> anyhow::Result<Vec<&'static ServiceDef>> {
    let built = registry();
    if wanted.is_empty() {
        return Ok(built);
    }
    wanted
        .iter()
        .map(|w| {
            built
                .iter()
                .copied()
                .find(|d| d.service == *w)
                .ok_or_else(|| {
                    let have: Vec<_> = built.iter().map(|d| d.service.name()).collect();
                    anyhow::anyhow!(
                        "the {w} service is not part of this build (available: {})",
                        have.join(", ")
                    )
                })
        })
        .collect()
}

async fn backup(place: &Place, out: &std::path::Path, services: &[Service]) -> anyhow::Result<()> {
    let cfg = load_config(place)?;
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: a backup goes into a new directory",
            out.display()
        );
    }
    std::fs::create_dir_all(out)?;
    for def in select(services)? {
        let url = cfg.database_url(def.service);
        let name = def.service.name();
        if !url.starts_with("sqlite:") {
            println!("{name:<13} PostgreSQL: back it up with pg_dump (docs/runbooks.md)");
            continue;
        }
        let db = hms_kit::db::Db::open(
            &url,
            hms_kit::db::Open {
                service: name,
                create_missing: false,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("opening the {name} database"))?;
        let target = out.join(format!("{name}.db"));
        let started = std::time::Instant::now();
        hms_kit::db::backup_sqlite(&db, &target)
            .await
            .with_context(|| format!("backing up the {name} database"))?;
        db.close().await;
        let bytes = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        println!(
            "{name:<13} {} ({} KiB, {} ms)",
            target.display(),
            bytes / 1024,
            started.elapsed().as_millis()
        );
    }
    // What the copy needs to start and to accept the tokens already given out.
    for file in [cfg.jwt_secret_path(), cfg.data_dir.join("admin.token")] {
        if let (true, Some(name)) = (file.exists(), file.file_name()) {
            write_private(&out.join(name), &std::fs::read_to_string(&file)?)?;
        }
    }
    println!(
        "Backup complete: start on it with hms-daemon --data-dir {}",
        out.display()
    );
    Ok(())
}

async fn outbox(place: &Place, cmd: OutboxCommand) -> anyhow::Result<()> {
    let cfg = load_config(place)?;
    let (services, event) = match &cmd {
        OutboxCommand::Status { services } => (services, None),
        OutboxCommand::Requeue { services, event } => (services, event.as_deref()),
    };
    for def in select(services)? {
        let db = hms_kit::db::Db::open(
            &cfg.database_url(def.service),
            hms_kit::db::Open {
                service: def.service.name(),
                create_missing: cfg.create_missing_databases,
                ..Default::default()
            },
        )
        .await?;
        db.migrate((def.migrations)(db.backend())).await?;
        if let OutboxCommand::Requeue { .. } = cmd {
            let n = hms_kit::outbox::requeue_parked(&db, event).await?;
            println!("{:<13} re-queued {n}", def.service.name());
        }
        let s = hms_kit::outbox::stats(&db).await?;
        println!(
            "{:<13} pending {:>5}  parked {:>5}  lag {:>6.1} s",
            def.service.name(),
            s.pending,
            s.parked,
            s.lag_seconds
        );
        db.close().await;
    }
    Ok(())
}

async fn serve(place: &Place, all: bool, wanted: Vec<Service>) -> anyhow::Result<()> {
    // Take over SIGTERM/SIGINT before anything starts: a stop during start-up is then a
    // graceful stop once start-up is done, never an abrupt kill.
    let stop = Shutdown::listen()?;
    let cfg = load_config(place)?;
    hms_kit::logging::init(&cfg.log_level, &cfg.log_format);
    let defs = select(if all { &[] } else { &wanted })?;

    // The embedded default (SQLite everywhere, no key configured) creates its own key and an
    // admin token on first start. Anything else must be given its key: auth is never off.
    let embedded = defs
        .iter()
        .all(|d| cfg.database_url(d.service).starts_with("sqlite:"))
        && cfg.jwt_secret.is_none();
    let (keys, created) = Keys::load_rotated(
        cfg.jwt_secret.as_deref(),
        &cfg.jwt_secret_path(),
        embedded,
        &cfg.jwt_previous_secrets,
    )
    .context("set HMS_JWT_SECRET (or HMS_JWT_SECRET_FILE) to the deployment's signing key")?;
    let keys = Arc::new(keys);
    let admin_token = cfg.data_dir.join("admin.token");
    if created || (embedded && !admin_token.exists()) {
        let token = keys.issue(Role::Admin, "admin", None, chrono::Duration::days(365));
        write_private(&admin_token, &token)?;
    }

    let cfg = Arc::new(cfg);
    let mut running: Vec<Running> = Vec::new();
    for def in &defs {
        let addr = SocketAddr::new(cfg.bind, cfg.port(def.service));
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                for r in running {
                    r.stop().await;
                }
                anyhow::bail!(
                    "{} service cannot listen on {addr}: {e} (use --base-port or HMS_{}_PORT)",
                    def.service,
                    def.service.name().to_uppercase()
                );
            }
        };
        match server::start(def, cfg.clone(), keys.clone(), Clock::system(), listener).await {
            Ok(r) => running.push(r),
            Err(e) => {
                for r in running {
                    r.stop().await;
                }
                return Err(e);
            }
        }
    }

    eprintln!("HMS is running:");
    for r in &running {
        eprintln!(
            "  {:<13} {}   (API page: {}/docs)",
            r.service.name(),
            r.url(),
            r.url()
        );
    }
    if embedded && admin_token.exists() {
        eprintln!(
            "Admin token: {} (send it as 'Authorization: Bearer <token>'; hmsctl reads it from there)",
            admin_token.display()
        );
        eprintln!("More tokens: hms-daemon token issue --role reception --subject <name>");
    }

    stop.wait().await;
    tracing::info!("shutting down: finishing in-flight requests");
    for r in running {
        r.stop().await;
    }
    Ok(())
}

/// SIGTERM or SIGINT, registered when created.
struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    #[cfg(unix)]
    fn listen() -> anyhow::Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Shutdown {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn listen() -> anyhow::Result<Shutdown> {
        Ok(Shutdown {})
    }

    #[cfg(unix)]
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
