//! The widgets table in SQLite (rusqlite, bundled), used from async handlers
//! through `spawn_blocking`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Widget {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
}

#[derive(Debug, Deserialize)]
pub struct NewWidget {
    pub name: String,
    pub price_cents: i64,
}

/// A shared SQLite connection; counts queries so tests can see cache hits.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    queries: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
pub struct DbError(pub String);

impl<E: std::fmt::Display> From<E> for DbError {
    fn from(e: E) -> Self {
        DbError(e.to_string())
    }
}

impl Db {
    /// Opens (or creates) the database file, or an in-memory database for `":memory:"`.
    pub fn open(path: &str) -> Result<Db, DbError> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            Connection::open(Path::new(path))?
        };
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS widgets (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 name TEXT NOT NULL,
                 price_cents INTEGER NOT NULL
             );",
        )?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            queries: Arc::default(),
        })
    }

    /// How many queries ran so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        self.queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| DbError("database lock poisoned".into()))?;
            f(&conn).map_err(DbError::from)
        })
        .await?
    }

    pub async fn get(&self, id: i64) -> Result<Option<Widget>, DbError> {
        self.with(move |c| {
            c.query_row(
                "SELECT id, name, price_cents FROM widgets WHERE id = ?1",
                params![id],
                |r| {
                    Ok(Widget {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        price_cents: r.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    pub async fn page(&self, page: u32, size: u32) -> Result<Vec<Widget>, DbError> {
        let offset = i64::from(page.saturating_sub(1)) * i64::from(size);
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, name, price_cents FROM widgets ORDER BY id LIMIT ?1 OFFSET ?2",
            )?;
            let rows = stmt.query_map(params![size, offset], |r| {
                Ok(Widget {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    price_cents: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn count(&self) -> Result<i64, DbError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM widgets", [], |r| r.get(0)))
            .await
    }

    pub async fn insert(&self, new: NewWidget) -> Result<Widget, DbError> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO widgets (name, price_cents) VALUES (?1, ?2)",
                params![new.name, new.price_cents],
            )?;
            Ok(Widget {
                id: c.last_insert_rowid(),
                name: new.name,
                price_cents: new.price_cents,
            })
        })
        .await
    }

    /// Updates a widget; `None` when it does not exist.
    pub async fn update(&self, id: i64, new: NewWidget) -> Result<Option<Widget>, DbError> {
        self.with(move |c| {
            let n = c.execute(
                "UPDATE widgets SET name = ?1, price_cents = ?2 WHERE id = ?3",
                params![new.name, new.price_cents, id],
            )?;
            Ok((n == 1).then_some(Widget {
                id,
                name: new.name,
                price_cents: new.price_cents,
            }))
        })
        .await
    }

    /// Deletes a widget; false when it did not exist.
    pub async fn delete(&self, id: i64) -> Result<bool, DbError> {
        self.with(move |c| Ok(c.execute("DELETE FROM widgets WHERE id = ?1", params![id])? == 1))
            .await
    }
}
