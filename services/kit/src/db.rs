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
use sqlx::{Any, AnyPool, Executor};
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

/// A write transaction.
pub type Tx = sqlx::Transaction<'static, Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service's connection pool and what kind of database is behind it.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    sqlite_file: Option<PathBuf>,
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
        Self::connect_with(url, 10).await
    }

    /// As [`Db::connect`], with at most `max` PostgreSQL connections.
    pub async fn connect_with(url: &str, max: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL (use sqlite://… or postgres://…)");
        };
        let file = sqlite_file(url);
        if let Some(dir) = file.as_ref().and_then(|f| f.parent()) {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let mut opts = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => max.max(1),
            });
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                         PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        Ok(Db {
            pool,
            backend,
            sqlite_file: file,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
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
        service.run(&self.pool).await?;
        Ok(())
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite).
    pub async fn begin(&self) -> Result<Tx, Error> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// Begins a read-only transaction that sees one snapshot throughout, so a response built
    /// from several queries (a bill and its lines) is never torn by a commit in between:
    /// REPEATABLE READ on PostgreSQL (its default READ COMMITTED snapshots per statement); on
    /// SQLite a deferred transaction keeps the snapshot of its first read.
    pub async fn begin_read(&self) -> Result<Tx, Error> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN").await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        Ok(tx)
    }

    /// Readiness: the database answers and the migrations are applied; for SQLite, the file
    /// is still where it was opened (a deleted data file would silently lose every write).
    pub async fn ping(&self) -> Result<(), String> {
        if let Some(f) = &self.sqlite_file {
            if !f.exists() {
                return Err(format!("database file {} is missing", f.display()));
            }
        }
        let probe = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations");
        match tokio::time::timeout(Duration::from_secs(2), probe.fetch_one(&self.pool)).await {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(Ok(_)) => Err("migrations have not been applied".into()),
            Ok(Err(e)) => Err(format!("database error: {e}")),
            Err(_) => Err("database did not answer within 2 s".into()),
        }
    }

    pub async fn close(&self) {
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

/// A value bound into a [`Select`].
#[derive(Debug, Clone)]
pub enum Bind {
    Int(i64),
    Text(String),
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
        let mut binds = binds.into_iter();
        for ch in fragment.chars() {
            if ch == '?' {
                let b = binds.next().expect("as many binds as '?' in the fragment");
                self.binds.push(b);
                self.sql.push_str(&format!("${}", self.binds.len()));
            } else {
                self.sql.push(ch);
            }
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

/// After rows were inserted with explicit ids (legacy imports keep theirs), moves
/// PostgreSQL's id sequence past them so assigned ids never collide. SQLite's rowid needs
/// nothing. The one backend-specific statement outside migrations, kept here.
pub async fn sync_id_sequence(
    backend: Backend,
    tx: &mut Tx,
    table: &str,
    column: &str,
) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             GREATEST((SELECT MAX({column}) FROM {table}), 1))"
        ))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
