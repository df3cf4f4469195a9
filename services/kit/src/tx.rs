//! Write transactions, and SQLite's one writer connection held by its database for good.
//!
//! On SQLite every write goes through one connection ([`crate::db::Db`]). It used to be a pool
//! of one, borrowed for each write and given back after; but the driver's pool asks a
//! connection that comes back to prove itself alive (a message to the connection's thread and
//! one back, on every return, whatever the pool's options), and a `BEGIN IMMEDIATE` through the
//! driver's transaction type asks the connection a second time whether it began. So a write
//! transaction cost four hand-offs to the connection's thread besides its statements, and the
//! next writer waited for the last one's return to be checked. Here the connection is held by
//! a lock instead of borrowed: a transaction is `BEGIN IMMEDIATE`, its statements, `COMMIT`.
//!
//! What the pool's checks guarded against is kept: a holder that goes away mid-transaction (a
//! request dropped at an await, a transaction dropped unfinished) leaves the connection marked
//! [`Slot::unsure`], and it is rolled back — at once, by a task, or by the next holder if no
//! runtime is there to run one — before anyone writes through it again. A connection that
//! lived through a storage fault is retired, as the pool's `before_acquire` did.
//!
//! SQLite's reader connections are held the same way ([`Readers`]): each is taken from the
//! pool once and kept, a read borrows one behind its lock, and nothing is asked of the
//! connection's thread when the read gives it back. (Given back to the pool, every read paid
//! that message and its answer — on whole visits about one hand-off in four.)

use crate::db::Faults;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// How long a write waits for the writer connection before it is refused (503), as a wait for
/// a pooled connection was.
const WAIT_FOR_WRITER: Duration = Duration::from_secs(5);

/// SQLite's writer connection and the pool of one that makes (and remakes) it with its setup.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pool: AnyPool,
    slot: Arc<Mutex<Slot>>,
    faults: Arc<Faults>,
    /// Set when it is closed: no connection is taken from the pool after that (one taken
    /// would be kept, and the pool's close waits for every connection to come back).
    closed: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The connection and when it was made; none until the first write, or after a fault.
    held: Option<(PoolConnection<Any>, Instant)>,
    /// A transaction may be open on the connection, or a statement of one still running: its
    /// last holder went away before `COMMIT` or `ROLLBACK` was answered.
    unsure: bool,
}

impl Writer {
    pub(crate) fn new(pool: AnyPool, faults: Arc<Faults>) -> Self {
        Writer {
            pool,
            slot: Arc::new(Mutex::new(Slot::default())),
            faults,
            closed: Arc::default(),
        }
    }

    /// The connection, once no one else holds it, outside any transaction.
    pub(crate) async fn hold(&self) -> Result<Held, sqlx::Error> {
        let slot = tokio::time::timeout(WAIT_FOR_WRITER, self.slot.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        self.ready(Held::new(slot, None)).await
    }

    /// The connection of `held` (its slot locked), made or remade if need be and outside any
    /// transaction.
    async fn ready(&self, mut held: Held) -> Result<Held, sqlx::Error> {
        let slot = held.slot();
        // SQLite falls back to read-only when it cannot write its file, and stays so: a
        // connection made before a fault that has since cleared is not used again.
        if let Some((conn, made)) = slot.held.take() {
            if self.faults.outlived(made.elapsed()) {
                let _ = conn.close().await;
            } else {
                slot.held = Some((conn, made));
            }
        }
        if slot.held.is_none() {
            // Checked holding the slot, which closing takes after setting it.
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(sqlx::Error::PoolClosed);
            }
            slot.held = Some((self.pool.acquire().await?, Instant::now()));
            slot.unsure = false;
        }
        if slot.unsure {
            end_any_transaction(held.conn()).await?;
            held.slot().unsure = false;
        }
        Ok(held)
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`).
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.hold().await?.begin("BEGIN IMMEDIATE").await
    }

    /// Closes the connection and the pool.
    pub(crate) async fn close(&self) {
        self.close_kept().await;
        self.pool.close().await;
    }

    /// Closes the connection kept, once no one holds it.
    async fn close_kept(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut slot) = tokio::time::timeout(WAIT_FOR_WRITER, self.slot.lock()).await {
            if let Some((conn, _)) = slot.held.take() {
                let _ = conn.close().await;
            }
        }
    }
}

/// Rolls back whatever transaction the connection may be in. Asked in a transaction, ROLLBACK
/// ends it; asked outside one, SQLite answers that none is active, which is the same outcome.
async fn end_any_transaction(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    match conn.execute("ROLLBACK").await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("no transaction is active") => Ok(()),
        Err(e) => Err(e),
    }
}

/// SQLite's reader connections of a database, each kept as the writer is: a read holds one
/// (any that is free), and gives it back by unlocking it.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    kept: Arc<[Writer]>,
    /// One permit per connection: a holder of a permit finds a connection free.
    free: Arc<Semaphore>,
}

impl Readers {
    /// `n` connections of `pool`, taken from it as they are first used.
    pub(crate) fn new(pool: AnyPool, faults: Arc<Faults>, n: usize) -> Self {
        Readers {
            kept: (0..n)
                .map(|_| Writer::new(pool.clone(), faults.clone()))
                .collect(),
            free: Arc::new(Semaphore::new(n)),
        }
    }

    /// Makes every connection now, all at once, so that none is made later, while the
    /// database is busy.
    pub(crate) async fn open_all(&self) -> Result<(), sqlx::Error> {
        futures::future::try_join_all(self.kept.iter().map(Writer::hold)).await?;
        Ok(())
    }

    /// A free reader connection, outside any transaction; waited for as a pooled one was.
    pub(crate) async fn hold(&self) -> Result<Held, sqlx::Error> {
        let permit = tokio::time::timeout(WAIT_FOR_WRITER, self.free.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // A permit's holder finds a slot unlocked: every other permit's holder has at most
        // one, and a slot is unlocked before its permit is given back.
        for kept in self.kept.iter() {
            if let Ok(slot) = kept.slot.clone().try_lock_owned() {
                return kept.ready(Held::new(slot, Some(permit))).await;
            }
        }
        Err(sqlx::Error::PoolTimedOut)
    }

    /// Begins a read transaction (`BEGIN`: deferred, its snapshot taken at its first read).
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.hold().await?.begin("BEGIN").await
    }

    /// Closes the connections (the pool is closed by its owner).
    pub(crate) async fn close(&self) {
        for kept in self.kept.iter() {
            kept.close_kept().await;
        }
    }
}

/// A kept connection while one task holds it (the writer, or a reader with its permit).
/// Dropped while [`Slot::unsure`], it has its transaction rolled back by a task of its own, so
/// the write lock (or a reader's snapshot) is not kept until the next holder comes.
#[derive(Debug)]
pub struct Held {
    slot: Option<OwnedMutexGuard<Slot>>,
    /// A reader's permit, given back after its slot is unlocked.
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn new(slot: OwnedMutexGuard<Slot>, permit: Option<OwnedSemaphorePermit>) -> Self {
        Held {
            slot: Some(slot),
            permit,
        }
    }

    fn slot(&mut self) -> &mut Slot {
        self.slot
            .as_mut()
            .expect("a held connection has its slot until dropped")
    }

    /// Begins a transaction with `sql` (`BEGIN IMMEDIATE` on the writer, `BEGIN` on a reader).
    async fn begin(mut self, sql: &str) -> Result<Tx, sqlx::Error> {
        // Marked before it is sent: if this future is dropped while BEGIN is in flight, the
        // transaction it may have opened is ended before the connection is used again.
        self.slot().unsure = true;
        self.conn().execute(sql).await?;
        Ok(Conn::Held(self))
    }

    /// Ends its transaction with `sql` (`COMMIT` or `ROLLBACK`); once answered, the
    /// connection is known to be outside any.
    async fn end(mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn().execute(sql).await?;
        self.slot().unsure = false;
        Ok(())
    }

    fn conn(&mut self) -> &mut AnyConnection {
        let (conn, _) = self
            .slot()
            .held
            .as_mut()
            .expect("a held connection has its connection");
        conn
    }
}

impl Deref for Held {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        let slot = self
            .slot
            .as_ref()
            .expect("a held connection has its slot until dropped");
        let (conn, _) = slot
            .held
            .as_ref()
            .expect("a held connection has its connection");
        conn
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        let permit = self.permit.take();
        if !slot.unsure {
            // The slot is unlocked before the permit goes back (field order is not relied on).
            drop(slot);
            drop(permit);
            return;
        }
        // Ended now, holding the slot (and permit), so the next holder finds it clean;
        // without a runtime (a shutdown), the next holder ends it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some((conn, _)) = slot.held.as_mut() {
                    if end_any_transaction(conn).await.is_ok() {
                        slot.unsure = false;
                    }
                }
                drop(slot);
                drop(permit);
            });
        }
    }
}

/// The writer held (SQLite), or a connection of the pool (PostgreSQL) of the kind `P`: either
/// way, a connection to run statements on.
#[derive(Debug)]
pub enum Conn<P> {
    Held(Held),
    Pooled(P),
}

impl<P: Deref<Target = AnyConnection>> Deref for Conn<P> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Conn::Held(held) => held,
            Conn::Pooled(conn) => conn,
        }
    }
}

impl<P: DerefMut<Target = AnyConnection>> DerefMut for Conn<P> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Held(held) => held,
            Conn::Pooled(conn) => conn,
        }
    }
}

/// A write transaction: on SQLite on the held writer connection, on PostgreSQL on a pooled
/// connection (the driver's own transaction). Statements run on `&mut **tx` (or `&mut *tx`
/// for an owned one); dropped without [`Tx::commit`], it is rolled back.
pub type Tx = Conn<sqlx::Transaction<'static, Any>>;

/// A connection to write single statements through, outside a transaction
/// ([`crate::db::Db::write`]).
pub type Write = Conn<PoolConnection<Any>>;

/// A connection to read through ([`crate::db::Db::read`]): on SQLite a reader held, on
/// PostgreSQL one of the pool.
pub type Read = Conn<PoolConnection<Any>>;

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pooled(tx) => tx.commit().await,
            Conn::Held(held) => held.end("COMMIT").await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pooled(tx) => tx.rollback().await,
            Conn::Held(held) => held.end("ROLLBACK").await,
        }
    }
}
