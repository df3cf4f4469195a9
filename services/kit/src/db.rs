//! The database of a service: SQLite (embedded default) or PostgreSQL (production), one code
//! path. Business SQL is written once with `$n` placeholders, which both backends accept;
//! only migrations differ per backend (`migrations/<service>/{sqlite,postgres}`).
//!
//! Two facts that decide correctness (RELIABILITY.md D3): every write transaction on SQLite
//! begins `IMMEDIATE` (a deferred one fails with "database is locked" under concurrency instead
//! of waiting), and PostgreSQL runs at READ COMMITTED, where invariants are held by
//! constraints and guarded updates, not by the isolation level.

use crate::error::Error;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyQueryResult, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Connection, Executor};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::tx::{Conn, Read, Tx, Write};
use crate::tx::{Readers, Writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service's connections and what kind of database is behind it.
///
/// On SQLite, where one transaction writes at a time, writes have one connection of their own
/// (`writer`, held for good: [`crate::tx`]) and reads a pool of others (WAL: readers never
/// wait for the writer). Writers queue, in order, for that connection instead of racing for
/// the file's lock through the busy timeout, whose handler sleeps and retries. On PostgreSQL
/// reads and writes share one pool.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    writer: Option<Writer>,
    /// SQLite's reader connections, held out of `pool` (see [`crate::tx`]).
    readers: Option<Readers>,
    backend: Backend,
    service: &'static str,
    sqlite_file: Option<Arc<DataFile>>,
    faults: Arc<Faults>,
    /// The checkpoint task of a SQLite file's (see [`checkpoints`]), stopped with the last
    /// copy of this handle (the task holds a reader pool, which would otherwise never close).
    _checkpoints: Option<Arc<Stops>>,
}

/// A database URL `server` with its database name replaced by `db` (the same server, user and
/// options): a throw-away database beside the one configured.
pub fn with_database(server: &str, db: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut url = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// The database name of a PostgreSQL URL (its last path segment, without options).
pub fn database_name(url: &str) -> Option<&str> {
    let base = url.split('?').next()?;
    let after_scheme = base.find("://").map_or(base, |i| &base[i + 3..]);
    let (_host, name) = after_scheme.split_once('/')?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct Stops(tokio::task::AbortHandle);

impl Drop for Stops {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When a storage fault last cleared. A SQLite connection that lived through a fault may have
/// been left read-only by it (SQLite falls back to read-only when it cannot write a file, and
/// stays so), so connections older than the moment a fault cleared are not used again.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    failing: std::sync::atomic::AtomicBool,
    cleared_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Faults {
    fn saw(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        if !ok {
            self.failing.store(true, Ordering::Relaxed);
        } else if self.failing.swap(false, Ordering::Relaxed) {
            *self.cleared_at.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now());
        }
    }

    /// Whether a connection of this age lived through a fault that has since cleared.
    pub(crate) fn outlived(&self, age: Duration) -> bool {
        self.cleared_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| age > t.elapsed())
    }
}

/// SQLite connections for reads, per database (beside its one writer). A read holds one for
/// tens of microseconds, and patient reads go through the writer's group commit; two per
/// database kept the mixed run's rate of four, and each connection costs memory.
const SQLITE_READERS: u32 = 2;

/// Each SQLite connection keeps its own page cache (2 MB by default; seven databases of five
/// connections would hold 70 MB). The writer's keeps what every write walks (the indexes'
/// upper levels, the tables' last pages); readers' caches would each hold copies of the same
/// hot pages, so they keep few and read the rest from the operating system's file cache, which
/// holds one copy for all. With 2 readers, a 512 KB writer's cache and 256 KB readers', the
/// resident size after a minute of mixed load is 59 MB (66 MB with four readers of 256 KB and a
/// 1 MB writer's, 92 MB with four readers of 1 MB), at the same rate.
const WRITER_CACHE_KIB: i64 = 512;
const READER_CACHE_KIB: i64 = 256;

/// The write-ahead log's length, in pages, at which the writer checkpoints it itself, after
/// a commit and before its next write. The checkpoint task ([`checkpoints`]) normally keeps
/// the log well under this; the writer's own checkpoint is the backstop that bounds the log
/// if the task falls behind. At SQLite's default (1,000 pages) a busy database's log reached
/// it between two of the task's turns, and the writer spent 4% of a booking run's samples
/// copying and syncing pages while every write of its database waited.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 4_000;

/// Checkpoints (the write-ahead log's pages copied back into the database file) are made by a
/// task of their own, on a reader connection, every [`CHECKPOINT_EVERY`]. SQLite's own, made
/// by the connection that commits, held the writer — and every write waiting on it — while it
/// copied and synced the file; it stays as a backstop ([`WRITER_AUTOCHECKPOINT_PAGES`]). (Every
/// second instead of every 250 ms, the booking run's rate did not move and its p90 and p99 rose
/// by a tenth: each checkpoint a larger burst. The backstop at 10,000 pages let a log grow to
/// 40 MB, which it never shrinks below, and left the daemon 6 MB larger after a minute of
/// mixed load.)
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Sets up a new SQLite connection (WAL, foreign keys, busy timeout, NORMAL sync, a page
/// cache of `cache_kib`, its own checkpoints at `autocheckpoint` pages of log if given), once it is
/// known that it can write `path`. Temporary data stays in memory: a statement that inserts
/// many rows at once (an audit batch, a day's slots) keeps a statement journal, which
/// otherwise spills to a temporary file with a `write` per page.
fn sqlite_setup(
    path: Option<PathBuf>,
    cache_kib: i64,
    autocheckpoint: Option<i64>,
) -> impl for<'c> Fn(
    &'c mut sqlx::AnyConnection,
    sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'c, Result<(), sqlx::Error>>
       + Send
       + Sync
       + 'static {
    move |conn, _| {
        // SQLite opens a file it cannot write read-only, silently, and such a connection
        // would refuse every write long after the fault cleared: a connection is only made
        // while the file can be written.
        let unwritable = path.as_deref().and_then(|p| writable(p).err());
        Box::pin(async move {
            if let Some(why) = unwritable {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    why,
                )));
            }
            let own_checkpoints = autocheckpoint
                .map(|pages| format!(" PRAGMA wal_autocheckpoint = {pages};"))
                .unwrap_or_default();
            conn.execute(
                format!(
                    "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                     PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; \
                     PRAGMA cache_size = -{cache_kib}; PRAGMA temp_store = MEMORY;{own_checkpoints}"
                )
                .as_str(),
            )
            .await?;
            // The check above races the open: a file made writable between the two would
            // pass a connection opened read-only. SQLite refuses a write transaction on such
            // a connection before taking any lock, so asking for one settles it.
            conn.execute("BEGIN IMMEDIATE").await?;
            conn.execute("ROLLBACK").await?;
            Ok(())
        })
    }
}

/// Checkpoints `readers`' database every [`CHECKPOINT_EVERY`] until the pool closes. Passive:
/// it copies what no reader still needs and waits for nobody, the writer committing meanwhile.
async fn checkpoints(pool: AnyPool, readers: Readers) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        let checkpoint = async {
            let mut reader = readers.hold().await?;
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *reader)
                .await
        };
        if let Err(e) = checkpoint.await {
            // A fault of the file shows in the writes and in /ready; the next tick tries again.
            tracing::debug!(error = %e, "checkpoint failed");
        }
    }
}

/// How a service opens its database.
#[derive(Debug, Clone)]
pub struct Open {
    /// Named in errors and readiness reasons ("the patient database …").
    pub service: &'static str,
    /// At most this many PostgreSQL connections.
    pub max_connections: u32,
    /// Create a SQLite file this data directory once held but has lost. Off for services:
    /// a start over a lost database would otherwise begin empty and silently drop every record.
    pub create_missing: bool,
}

impl Default for Open {
    fn default() -> Self {
        Open {
            service: "hms",
            max_connections: 10,
            create_missing: true,
        }
    }
}

/// The SQLite file a pool writes to, and the identity (device, inode) it had when opened.
///
/// SQLite keeps writing through its open descriptors into a file that was deleted or replaced
/// under it, and acknowledges those writes; they are lost at the next start. So every write
/// transaction first checks that the path still names the same, writable file.
#[derive(Debug)]
struct DataFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl DataFile {
    fn open(path: &Path) -> std::io::Result<DataFile> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(DataFile {
            path: path.to_path_buf(),
            identity: (m.dev(), m.ino()),
        })
    }

    /// Why a write now could be lost, if it could.
    fn check(&self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let shown = self.path.display();
        let m = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("database file {shown} was deleted"))
            }
            Err(e) => return Err(format!("database file {shown} cannot be read: {e}")),
        };
        if (m.dev(), m.ino()) != self.identity {
            return Err(format!(
                "database file {shown} was replaced by another file; restart to open it"
            ));
        }
        writable(&self.path)
    }
}

/// Whether a SQLite file (and its WAL) can be written now. access(2) rather than the mode
/// bits: it also sees read-only mounts and immutable files, and holds for root. Never open the
/// file here: closing any descriptor of it would drop SQLite's POSIX locks.
fn writable(path: &Path) -> Result<(), String> {
    let mut files = vec![path.to_path_buf()];
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    if wal.exists() {
        files.push(wal);
    }
    for f in files {
        if let Err(e) = rustix::fs::access(&f, rustix::fs::Access::WRITE_OK) {
            return Err(format!(
                "database file {} is not writable: {e}",
                f.display()
            ));
        }
    }
    Ok(())
}

/// The list, in a data directory, of the SQLite files HMS created there. A listed file that
/// is missing at start was lost, not never made.
const MANIFEST: &str = ".hms-databases";

fn manifest_lists(dir: &Path, name: &str) -> bool {
    std::fs::read_to_string(dir.join(MANIFEST))
        .map(|s| s.lines().any(|l| l == name))
        .unwrap_or(false)
}

fn manifest_add(dir: &Path, name: &str) -> std::io::Result<()> {
    use std::io::Write;
    if manifest_lists(dir, name) {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(MANIFEST))?;
    writeln!(f, "{name}")
}

fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`); for SQLite, creates the file's
    /// directory and turns on WAL, foreign keys, a 5 s busy timeout and NORMAL sync.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        Self::open(url, Open::default()).await
    }

    /// As [`Db::connect`], as `how` says.
    pub async fn open(url: &str, how: Open) -> anyhow::Result<Db> {
        let max = how.max_connections;
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL (use sqlite://… or postgres://…)");
        };
        let file = sqlite_file(url);
        if let Some(f) = &file {
            let dir = f.parent().filter(|d| !d.as_os_str().is_empty());
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            if let (Some(dir), Some(name)) = (dir, &name) {
                if !f.exists() && manifest_lists(dir, name) && !how.create_missing {
                    anyhow::bail!(
                        "database file {} is missing, though this data directory held it \
                         (listed in {}): restore it from a backup, or start with \
                         --create-missing-databases to begin it empty",
                        f.display(),
                        dir.join(MANIFEST).display()
                    );
                }
                std::fs::create_dir_all(dir)?;
            }
        }
        // The file is created once, here; the pool then opens it `mode=rw`, so a connection
        // opened after the file was lost fails instead of quietly starting an empty database
        // at the same path (which the next start would take for the real one).
        let url = match backend {
            Backend::Sqlite
                if file.is_some() && (!url.contains("mode=") || url.contains("mode=rwc")) =>
            {
                let create = if url.contains("mode=") {
                    url.to_string()
                } else {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{sep}mode=rwc")
                };
                sqlx::AnyConnection::connect(&create).await?.close().await?;
                create.replace("mode=rwc", "mode=rw")
            }
            _ => url.to_string(),
        };
        // A pool asks a connection whether it is alive before handing it out. A server's
        // connection can have been dropped meanwhile; an embedded SQLite connection cannot,
        // and asking it is a message to its thread and one back, on every transaction and
        // every read. (A SQLite connection made before a storage fault is retired by
        // `before_acquire` below.)
        let mut opts = AnyPoolOptions::new()
            .test_before_acquire(backend == Backend::Postgres)
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(match backend {
                // The readers held, and one more for whoever asks the pool itself (an
                // operator's command, a test): opened only then.
                Backend::Sqlite => SQLITE_READERS + 1,
                Backend::Postgres => max.max(1),
            });
        // A connection goes back to the pool only outside any transaction. A request dropped
        // at an await (client gone, timeout, shutdown) can leave one mid-transaction, holding
        // SQLite's write lock or PostgreSQL's row locks, in windows the driver does not cover
        // (between BEGIN's acknowledgement and the transaction object taking charge). A
        // dropped transaction's rollback is queued, not yet run, so flush it first; what is
        // still open after that is closed, which ends the transaction and frees its locks.
        //
        // On PostgreSQL the driver's own count can miss a transaction the server has open (a
        // request dropped after sending BEGIN, before the count moved), so the server is asked,
        // by a simple-protocol query (one message, one timestamp): outside an explicit
        // transaction `now()` (its start) is exactly this statement's start; in one it is
        // earlier, however little, and in an aborted one the question fails. Either way: closed.
        opts = opts.after_release(move |conn, _| {
            Box::pin(async move {
                if conn.is_in_transaction() {
                    conn.ping().await?;
                    if conn.is_in_transaction() {
                        tracing::warn!("a connection came back inside a transaction; closed");
                        return Ok(false);
                    }
                }
                if backend == Backend::Postgres {
                    // `raw_sql`: the simple protocol. A prepared statement's messages arrive
                    // one by one, and its implicit transaction can start microseconds before
                    // the statement's own timestamp; a simple query's cannot.
                    let idle = conn
                        .fetch_one(sqlx::raw_sql("SELECT now() = statement_timestamp()"))
                        .await
                        .and_then(|row| sqlx::Row::try_get::<bool, _>(&row, 0));
                    if !matches!(idle, Ok(true)) {
                        tracing::warn!("a connection came back inside a transaction; closed");
                        return Ok(false);
                    }
                }
                Ok(true)
            })
        });
        let faults = Arc::new(Faults::default());
        if backend == Backend::Sqlite {
            let seen = faults.clone();
            opts = opts.before_acquire(move |_, meta| {
                let stale = seen.outlived(meta.age);
                Box::pin(async move { Ok(!stale) })
            });
        }
        let (pool, writer, readers) = match backend {
            Backend::Sqlite => {
                let writer = opts
                    .clone()
                    .max_connections(1)
                    .after_connect(sqlite_setup(
                        file.clone(),
                        WRITER_CACHE_KIB,
                        Some(WRITER_AUTOCHECKPOINT_PAGES),
                    ))
                    .connect(&url)
                    .await?;
                let readers = opts
                    // Readers never write, so never checkpoint on their own (SQLite's default
                    // stays; the task's checkpoints are asked for explicitly).
                    .after_connect(sqlite_setup(file.clone(), READER_CACHE_KIB, None))
                    // Opened now and kept: a reader opened under load stalled its database's
                    // writer. Billing reads nothing until visits are paid, so its readers were
                    // opened then, at its busiest writing; in two whole-visit runs of about
                    // eight, the writer's `BEGIN IMMEDIATE` waited 3 and 5 s from the moment a
                    // reader was opened, and a read waiting for that reader was refused 503.
                    // (Taken by the readers held below, at once; the pool keeps no minimum of
                    // its own, which would race them and open the spare too.)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect(&url)
                    .await?;
                let held = Readers::new(readers.clone(), faults.clone(), SQLITE_READERS as usize);
                held.open_all().await?;
                (
                    readers,
                    Some(Writer::new(writer, faults.clone())),
                    Some(held),
                )
            }
            Backend::Postgres => (opts.connect(&url).await?, None, None),
        };
        let sqlite_file = match &file {
            Some(f) => {
                if let (Some(dir), Some(name)) = (f.parent(), f.file_name()) {
                    if !dir.as_os_str().is_empty() {
                        manifest_add(dir, &name.to_string_lossy())?;
                    }
                }
                Some(Arc::new(DataFile::open(f)?))
            }
            None => None,
        };
        let _checkpoints = match (&sqlite_file, &readers) {
            (Some(_), Some(held)) => Some(Arc::new(Stops(
                tokio::spawn(checkpoints(pool.clone(), held.clone())).abort_handle(),
            ))),
            _ => None,
        };
        Ok(Db {
            pool,
            writer,
            readers,
            backend,
            service: how.service,
            sqlite_file,
            faults,
            _checkpoints,
        })
    }

    /// The service this database belongs to.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// 503 `storage_unavailable` if a write now could be lost (the file deleted, replaced or
    /// not writable).
    pub fn check_storage(&self) -> Result<(), Error> {
        match &self.sqlite_file {
            Some(f) => {
                let checked = f.check();
                self.faults.saw(checked.is_ok());
                checked.map_err(|r| Error::storage(self.service, r))
            }
            None => Ok(()),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool itself, for an operator's command or a test. A service reads through
    /// [`Db::read`] or [`Db::begin_read`] (on SQLite the readers held, which a return to the
    /// pool does not cost a round trip to the connection's thread) and writes outside
    /// [`Db::begin`] through [`Db::write`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for a single statement that writes (an UPDATE without a transaction
    /// around it; anything larger uses [`Db::begin`]): on SQLite the one writer connection,
    /// held until the answer is dropped (`.execute(&mut *db.write().await?)`), on PostgreSQL
    /// one of the pool.
    pub async fn write(&self) -> Result<Write, sqlx::Error> {
        match &self.writer {
            Some(writer) => Ok(Write::Held(writer.hold().await?)),
            None => Ok(Write::Pooled(self.pool.acquire().await?)),
        }
    }

    /// Applies the shared kit migrations (outbox, inbox; versions below 100) and the service's
    /// own (versions 100 and up) as one ordered set.
    pub async fn migrate(&self, mut service: Migrator) -> anyhow::Result<()> {
        let kit = match self.backend {
            Backend::Sqlite => sqlx::migrate!("../../migrations/kit/sqlite"),
            Backend::Postgres => sqlx::migrate!("../../migrations/kit/postgres"),
        };
        let mut all: Vec<_> = kit.migrations.iter().cloned().collect();
        all.extend(service.migrations.iter().cloned());
        all.sort_by_key(|m| m.version);
        service.migrations = Cow::Owned(all);
        // On a connection of its own, closed afterwards: a migration may edit a table's
        // definition in place (SQLite's procedure for changing a CHECK), and no connection
        // that read the old definition should serve requests.
        let mut conn = self.pool.acquire().await?;
        service.run_direct(&mut *conn).await?;
        conn.close().await?;
        Ok(())
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite), once the storage is known
    /// to keep what it acknowledges.
    pub async fn begin(&self) -> Result<Tx, Error> {
        self.check_storage()?;
        Ok(self.begin_unchecked().await?)
    }

    async fn begin_unchecked(&self) -> Result<Tx, sqlx::Error> {
        match &self.writer {
            Some(writer) => writer.begin().await,
            None => Ok(Conn::Pooled(self.pool.begin().await?)),
        }
    }

    /// Begins a read-only transaction that sees one snapshot throughout, so a response built
    /// from several queries (a bill and its lines) is never torn by a commit in between:
    /// REPEATABLE READ on PostgreSQL (its default READ COMMITTED snapshots per statement); on
    /// SQLite a deferred transaction keeps the snapshot of its first read.
    pub async fn begin_read(&self) -> Result<Tx, Error> {
        if let Some(readers) = &self.readers {
            return Ok(readers.begin().await?);
        }
        let tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        Ok(Conn::Pooled(tx))
    }

    /// A connection for reads outside a transaction (`.fetch_all(&mut *db.read().await?)`):
    /// on SQLite a reader held until the answer is dropped, on PostgreSQL one of the pool.
    pub async fn read(&self) -> Result<Read, sqlx::Error> {
        match &self.readers {
            Some(readers) => Ok(Conn::Held(readers.hold().await?)),
            None => Ok(Conn::Pooled(self.pool.acquire().await?)),
        }
    }

    /// Readiness: the database answers, the migrations are applied, and on SQLite a write
    /// reaches the file (still the one opened, writable, and a committed probe succeeds), so
    /// a full disk or a failing device shows here and clears when it does.
    pub async fn ping(&self) -> Result<(), String> {
        if let Some(f) = &self.sqlite_file {
            let checked = f.check();
            self.faults.saw(checked.is_ok());
            checked?;
        }
        let probe = async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&mut *self.read().await?)
                .await?;
            if self.backend == Backend::Sqlite {
                let mut tx = self.begin_unchecked().await?;
                let v: i64 = sqlx::query_scalar("PRAGMA user_version")
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(&format!("PRAGMA user_version = {v}"))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<i64, sqlx::Error>(n)
        };
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(Ok(_)) => Err("migrations have not been applied".into()),
            Ok(Err(e)) => Err(format!("database error: {e}")),
            Err(_) => Err("database did not answer within 2 s".into()),
        }
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        if let Some(readers) = &self.readers {
            readers.close().await;
        }
        self.pool.close().await;
    }
}

/// Which constraint family a database error is, on either backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// UNIQUE or PRIMARY KEY; also PostgreSQL exclusion (23P01) and SQLite `RAISE(ABORT)`
    /// triggers (1811), which guard overlap rules.
    Unique,
    Check,
    ForeignKey,
}

/// Classifies a constraint violation, so the store can turn the database's verdict into a
/// precise client error (409 `slot_taken`, 422 `daily_cap_reached`, …).
pub fn violation(e: &sqlx::Error) -> Option<Violation> {
    let db = e.as_database_error()?;
    use sqlx::error::ErrorKind as K;
    match db.kind() {
        K::UniqueViolation => return Some(Violation::Unique),
        K::CheckViolation => return Some(Violation::Check),
        K::ForeignKeyViolation => return Some(Violation::ForeignKey),
        _ => {}
    }
    match db.code().as_deref() {
        Some("23P01") | Some("1811") => Some(Violation::Unique),
        _ => None,
    }
}

/// A value bound into a [`Select`] or a [`Script`]. A NULL is typed: PostgreSQL refuses a text
/// NULL for an integer column.
#[derive(Debug, Clone)]
pub enum Bind {
    Int(i64),
    Text(String),
    /// An integer or NULL.
    OptInt(Option<i64>),
}

/// A query with optional filters, numbered `$n` placeholders, bound in order.
///
/// ```text
/// let mut q = Select::new("SELECT … FROM patients WHERE 1=1");
/// if let Some(n) = name { q.and("LOWER(name) LIKE ?", Bind::Text(like(n))); }
/// q.push(" ORDER BY patient_id LIMIT ?", Bind::Int(limit));
/// ```
#[derive(Debug, Clone)]
pub struct Select {
    sql: String,
    binds: Vec<Bind>,
}

impl Select {
    pub fn new(base: &str) -> Self {
        Select {
            sql: base.to_string(),
            binds: Vec::new(),
        }
    }

    /// Appends `fragment`, replacing each `?` with the next placeholder for `binds`.
    pub fn push(&mut self, fragment: &str, binds: impl IntoIterator<Item = Bind>) -> &mut Self {
        use std::fmt::Write;
        let mut binds = binds.into_iter();
        // Copied a run at a time: a script's text is a few kilobytes, made for every write,
        // and a character at a time it was the daemon's costliest function of its own.
        self.sql.reserve(fragment.len() + 8);
        let mut runs = fragment.split('?');
        if let Some(first) = runs.next() {
            self.sql.push_str(first);
        }
        for run in runs {
            let b = binds.next().expect("as many binds as '?' in the fragment");
            self.binds.push(b);
            let _ = write!(self.sql, "${}", self.binds.len());
            self.sql.push_str(run);
        }
        self
    }

    /// Appends ` AND <cond>` with one bound value.
    pub fn and(&mut self, cond: &str, bind: Bind) -> &mut Self {
        self.push(&format!(" AND {cond}"), [bind])
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The query, with every value bound.
    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for b in &self.binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::OptInt(i) => q.bind(*i),
            };
        }
        q
    }

    pub async fn fetch_all<'e, E>(&self, exec: E) -> Result<Vec<AnyRow>, sqlx::Error>
    where
        E: Executor<'e, Database = Any>,
    {
        self.query().fetch_all(exec).await
    }

    pub async fn execute<'e, E>(&self, exec: E) -> Result<AnyQueryResult, sqlx::Error>
    where
        E: Executor<'e, Database = Any>,
    {
        self.query().execute(exec).await
    }
}

/// How a step of a [`Script`] turns the database's refusal into the client's error (a
/// claim's unique violation into 409 `slot_taken`); `None` leaves the error as it is.
type Refusal = Box<dyn Fn(&sqlx::Error) -> Option<Error> + Send + Sync>;

struct Step {
    sql: String,
    binds: Vec<Bind>,
    refuse: Option<Refusal>,
}

/// Write statements whose only answer is success or a refusal, sent to the database together.
///
/// On SQLite every statement is a message to the connection's own thread and one back — tens
/// of microseconds each on a busy machine, most of a write transaction's time, and a database
/// has one writer. A script goes as one multi-statement query inside a savepoint: one
/// hand-off. If any statement is refused, the savepoint is rolled back and the statements run
/// again one at a time, so the one refused is known and answered by its own [`Script::refusing`]
/// mapping (the same database judges both times: this is the writer's transaction). On
/// PostgreSQL (one statement per message in its protocol) the statements run one at a time.
#[derive(Default)]
pub struct Script {
    steps: Vec<Step>,
}

impl Script {
    pub fn new() -> Self {
        Script::default()
    }

    /// Adds a statement, its `?` placeholders bound to `binds` in order.
    pub fn push(&mut self, sql: &str, binds: impl IntoIterator<Item = Bind>) -> &mut Self {
        let binds: Vec<Bind> = binds.into_iter().collect();
        debug_assert_eq!(sql.matches('?').count(), binds.len(), "{sql}");
        self.steps.push(Step {
            sql: sql.to_string(),
            binds,
            refuse: None,
        });
        self
    }

    /// How the statement added last answers a refusal.
    pub fn refusing(
        &mut self,
        refuse: impl Fn(&sqlx::Error) -> Option<Error> + Send + Sync + 'static,
    ) -> &mut Self {
        if let Some(step) = self.steps.last_mut() {
            step.refuse = Some(Box::new(refuse));
        }
        self
    }

    /// Adds `other`'s statements after this script's.
    pub fn append(&mut self, other: Script) -> &mut Self {
        self.steps.extend(other.steps);
        self
    }

    pub async fn run(self, tx: &mut Tx) -> Result<(), Error> {
        self.fetch_all(tx).await.map(drop)
    }

    /// Runs the script as [`Script::run`] does and answers the rows its statements return (a
    /// query, or writes with `RETURNING`), in their order: a read that depends on the writes
    /// before it, in the same hand-off.
    pub async fn fetch_all(self, tx: &mut Tx) -> Result<Vec<sqlx::any::AnyRow>, Error> {
        if !self.together(tx) {
            // One statement is all-or-nothing by itself; on PostgreSQL a refused statement
            // ends the transaction.
            return self.one_by_one(tx).await;
        }
        let mut all = Select::new("SAVEPOINT script; ");
        self.push_joined(&mut all);
        all.push("; RELEASE script", []);
        if let Ok(rows) = all.query().fetch_all(&mut **tx).await {
            return Ok(rows);
        }
        // Refused: undo what ran of it, and find out which statement, inside the same
        // savepoint (what was applied before the refused one must not stay either).
        sqlx::query("ROLLBACK TO script").execute(&mut **tx).await?;
        let outcome = self.one_by_one(tx).await;
        let end = if outcome.is_ok() {
            "RELEASE script"
        } else {
            "ROLLBACK TO script; RELEASE script"
        };
        sqlx::query(end).execute(&mut **tx).await?;
        outcome
    }

    /// Runs the script in one hand-off without a savepoint of its own, for a caller that
    /// undoes the whole transaction if it is refused (and then does the work again another
    /// way, where a refusal is judged): a batch of events applied together. A savepoint costs
    /// two statements, and SQLite copies every page the script changes into its journal, so
    /// it could be rolled back alone; here nothing would be. Answers the rows its statements
    /// return, as [`Script::fetch_all`] does.
    pub async fn run_undone_with_transaction(
        self,
        tx: &mut Tx,
    ) -> Result<Vec<sqlx::any::AnyRow>, Error> {
        if !self.together(tx) {
            return self.one_by_one(tx).await;
        }
        let mut all = Select::new("");
        self.push_joined(&mut all);
        Ok(all.query().fetch_all(&mut **tx).await?)
    }

    /// Whether the statements go as one multi-statement query: on SQLite, if there are several.
    fn together(&self, tx: &Tx) -> bool {
        self.steps.len() > 1 && backend_of(tx) == Backend::Sqlite
    }

    /// Appends the statements to `all`, separated by `;`, their values bound in order.
    fn push_joined(&self, all: &mut Select) {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                all.push("; ", []);
            }
            all.push(&step.sql, step.binds.iter().cloned());
        }
    }

    /// Each statement alone, in order; the rows they return.
    async fn one_by_one(&self, tx: &mut Tx) -> Result<Vec<sqlx::any::AnyRow>, Error> {
        let mut rows = Vec::new();
        for step in &self.steps {
            let mut one = Select::new("");
            one.push(&step.sql, step.binds.iter().cloned());
            match one.query().fetch_all(&mut **tx).await {
                Ok(got) => rows.extend(got),
                Err(e) => {
                    return Err(step
                        .refuse
                        .as_ref()
                        .and_then(|r| r(&e))
                        .unwrap_or_else(|| e.into()))
                }
            }
        }
        Ok(rows)
    }
}

/// The backend a connection (or a transaction, through `&mut **tx`) talks to.
pub fn backend_of(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// The prefix that keeps SQLite's planner from answering a column's predicate by an index
/// (`+col = ?`: the value unchanged, the index not considered), so that a query is driven by
/// the index its author chose; nothing on PostgreSQL, which has no such operator on text and
/// plans by its statistics.
pub fn unindexed(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "+",
        Backend::Postgres => "",
    }
}

/// A `FROM` source of one row per element of a JSON array of rows (arrays) bound at `param`
/// (`"$2"`, a JSON text such as `[[1,"a"],[2,"b"]]`; see [`json_rows_param`]): read a row's
/// fields with `j.value ->> 0`, `j.value ->> 1`, … (text on PostgreSQL: cast what is not), and
/// order by `j.key` to keep the array's order.
///
/// For statements whose size is the batch's: a multi-row `VALUES` list is a new statement
/// text (prepared again, evicting others from the connection's cache) for every batch size,
/// and SQLite looks up each of its numbered parameters by a scan of all of them, so binding
/// costs the square of the rows. One JSON array is one parameter and one cached statement.
pub fn json_rows(backend: Backend, param: &str) -> String {
    match backend {
        Backend::Sqlite => format!("json_each({param}) AS j"),
        Backend::Postgres => {
            format!("jsonb_array_elements(CAST({param} AS jsonb)) WITH ORDINALITY AS j(value, key)")
        }
    }
}

/// The JSON text of `rows` for a [`json_rows`] parameter (each row a tuple: `(id,)`, `(a, b)`).
pub fn json_rows_param<T: serde::Serialize>(rows: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// A subquery of the ids bound at `param` as a JSON array of ids ([`ids_param`]), for
/// `WHERE id IN {}`: one parameter and one cached statement, whatever the number of ids.
pub fn ids_in(backend: Backend, param: &str) -> String {
    format!(
        "(SELECT CAST(j.value ->> 0 AS BIGINT) FROM {})",
        json_rows(backend, param)
    )
}

/// The parameter of an [`ids_in`] subquery.
pub fn ids_param(ids: &[i64]) -> Result<String, sqlx::Error> {
    let rows: Vec<(i64,)> = ids.iter().map(|&id| (id,)).collect();
    json_rows_param(&rows)
}

/// A `LIKE` pattern matching `term` anywhere, case-insensitively (compare with `LOWER(col)`),
/// with `%`, `_` and `\` in the term taken literally (`ESCAPE '\'`).
pub fn contains_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Copies a SQLite database to `target` while it serves: `VACUUM INTO` reads one snapshot
/// (WAL readers do not block writers, nor writers them) and writes a compact, consistent copy;
/// every transaction committed before it began is in the copy, none after. The copy is then
/// listed in its directory's manifest, like any database HMS made there.
pub async fn backup_sqlite(db: &Db, target: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(db.backend() == Backend::Sqlite, "not a SQLite database");
    anyhow::ensure!(!target.exists(), "{} exists already", target.display());
    let quoted = target.display().to_string().replace('\'', "''");
    sqlx::query(&format!("VACUUM INTO '{quoted}'"))
        .execute(db.pool())
        .await?;
    if let (Some(dir), Some(name)) = (target.parent(), target.file_name()) {
        if !dir.as_os_str().is_empty() {
            manifest_add(dir, &name.to_string_lossy())?;
        }
    }
    Ok(())
}

/// Moves a table's id allocation past every id it holds and past `through`, never back: a
/// record made live never takes an id of the legacy data, imported or rejected. PostgreSQL:
/// the identity's sequence. SQLite: the table is AUTOINCREMENT (see the services' legacy-id
/// migrations), so its row in `sqlite_sequence` is the floor.
pub async fn reserve_ids(
    backend: Backend,
    tx: &mut Tx,
    table: &str,
    column: &str,
    through: i64,
) -> Result<(), sqlx::Error> {
    match backend {
        // A sequence is not transactional: a dry run must not move it.
        Backend::Postgres if crate::dry_run::active() => {}
        Backend::Postgres => {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 GREATEST($1, (SELECT MAX({column}) FROM {table}), \
                          pg_sequence_last_value(pg_get_serial_sequence('{table}', '{column}')::regclass), 1))"
            ))
            .bind(through)
            .execute(&mut **tx)
            .await?;
        }
        Backend::Sqlite => {
            sqlx::query(
                "INSERT INTO sqlite_sequence (name, seq) SELECT $1, 0 \
                 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = $1)",
            )
            .bind(table)
            .execute(&mut **tx)
            .await?;
            sqlx::query(&format!(
                "UPDATE sqlite_sequence SET seq = MAX(seq, $1, (SELECT COALESCE(MAX({column}), 0) FROM {table})) WHERE name = $2"
            ))
            .bind(through)
            .bind(table)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// After a row was written under its own id: the allocation moves past it (never back).
pub async fn sync_id_sequence(
    backend: Backend,
    tx: &mut Tx,
    table: &str,
    column: &str,
) -> Result<(), sqlx::Error> {
    reserve_ids(backend, tx, table, column, 0).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_names_another_database_on_the_same_server() {
        let server = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
        let url = with_database(server, "hms_t_1");
        assert_eq!(
            url,
            "postgres://postgres@127.0.0.1:5432/hms_t_1?sslmode=disable"
        );
        assert_eq!(database_name(&url), Some("hms_t_1"));
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(database_name("postgres://h:5432/"), None);
        assert_eq!(database_name("postgres://h:5432"), None);
    }

    #[test]
    fn select_numbers_placeholders_in_order() {
        let mut q = Select::new("SELECT 1 FROM t WHERE 1=1");
        q.and("a = ?", Bind::Int(1))
            .and("b LIKE ?", Bind::Text("x".into()))
            .push(" LIMIT ?", [Bind::Int(5)]);
        assert_eq!(
            q.sql(),
            "SELECT 1 FROM t WHERE 1=1 AND a = $1 AND b LIKE $2 LIMIT $3"
        );
        assert_eq!(contains_pattern("50%_A"), "%50\\%\\_a%");
    }

    #[test]
    fn sqlite_file_is_found_in_urls() {
        assert_eq!(
            sqlite_file("sqlite://./d/p.db?mode=rwc"),
            Some(PathBuf::from("./d/p.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x"), None);
    }
}
