//! Durable jobs in SQLite: a job is recorded before its id is returned;
//! one worker runs queued jobs in order; after a restart, finished jobs
//! and their files are still served and unfinished ones run again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pipelines::generate::CancelToken;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::ApiError;

pub struct Jobs {
    db: Mutex<Connection>,
    pub dir: PathBuf,
    wake: (Mutex<bool>, Condvar),
    /// The job the worker runs now, and its cancel token.
    running: Mutex<Option<(String, CancelToken)>>,
    /// Set by a draining server: no new job starts, the running one is
    /// stopped and queued again for the next start.
    stopping: AtomicBool,
}

/// What a job row holds.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub request: Value,
    pub status: String,
    pub progress: f64,
    pub error: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    pub mime: String,
    pub bytes: i64,
    pub sha256: String,
}

fn now() -> i64 {
    super::openai_created() as i64
}

fn db_error(e: rusqlite::Error) -> ApiError {
    ApiError::internal(format!("job store: {e}"))
}

pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{:016x}",
        pipelines::generate::sampling::entropy_seed()
    )
}

fn row_to_file(r: &rusqlite::Row) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        id: r.get(0)?,
        name: r.get(1)?,
        path: PathBuf::from(r.get::<_, String>(2)?),
        mime: r.get(3)?,
        bytes: r.get(4)?,
        sha256: r.get(5)?,
    })
}

fn row_to_job(r: &rusqlite::Row) -> rusqlite::Result<Job> {
    let request: String = r.get(2)?;
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        request: serde_json::from_str(&request).unwrap_or(Value::Null),
        status: r.get(3)?,
        progress: r.get(4)?,
        error: r.get(5)?,
        created_at: r.get(6)?,
        completed_at: r.get(7)?,
    })
}

const JOB_COLUMNS: &str = "id, kind, request, status, progress, error, created_at, completed_at";

impl Jobs {
    /// Opens (or creates) the store in `dir`; jobs left running by a
    /// previous process are queued again.
    pub fn open(dir: &Path) -> anyhow::Result<Arc<Jobs>> {
        std::fs::create_dir_all(dir.join("files"))?;
        std::fs::create_dir_all(dir.join("inputs"))?;
        let db = Connection::open(dir.join("jobs.sqlite"))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS jobs (
                 id TEXT PRIMARY KEY, kind TEXT NOT NULL, request TEXT NOT NULL,
                 status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, error TEXT,
                 created_at INTEGER NOT NULL, completed_at INTEGER,
                 idempotency_key TEXT UNIQUE, request_hash TEXT);
             CREATE TABLE IF NOT EXISTS files (
                 id TEXT PRIMARY KEY, job_id TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
                 mime TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS events (
                 job_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL, PRIMARY KEY (job_id, seq));
             UPDATE jobs SET status = 'queued', progress = 0 WHERE status = 'in_progress';",
        )?;
        Ok(Arc::new(Jobs {
            db: Mutex::new(db),
            dir: dir.to_path_buf(),
            wake: (Mutex::new(false), Condvar::new()),
            running: Mutex::new(None),
            stopping: AtomicBool::new(false),
        }))
    }

    fn db(&self) -> Result<std::sync::MutexGuard<'_, Connection>, ApiError> {
        self.db
            .lock()
            .map_err(|_| ApiError::internal("job store lock poisoned"))
    }

    /// Records a job (and wakes the worker). With an idempotency key, the
    /// job first submitted with it is returned for the same request, and a
    /// different request with the same key is a conflict.
    pub fn submit(&self, kind: &str, request: &Value, key: Option<&str>) -> Result<Job, ApiError> {
        let text = request.to_string();
        let hash = body_hash(&text);
        let db = self.db()?;
        if let Some(key) = key {
            let existing: Option<(String, String)> = db
                .query_row(
                    "SELECT id, request_hash FROM jobs WHERE idempotency_key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_error)?;
            if let Some((id, earlier)) = existing {
                if earlier != hash {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "Idempotency-Key was used for a different request",
                    ));
                }
                drop(db);
                return self
                    .get(&id)?
                    .ok_or_else(|| ApiError::internal("job vanished"));
            }
        }
        let id = new_id(if kind == "video" { "video" } else { "job" });
        db.execute(
            "INSERT INTO jobs (id, kind, request, status, created_at, idempotency_key, request_hash) VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6)",
            params![id, kind, text, now(), key, hash],
        )
        .map_err(db_error)?;
        drop(db);
        self.notify();
        self.get(&id)?
            .ok_or_else(|| ApiError::internal("job vanished"))
    }

    fn notify(&self) {
        if let Ok(mut flag) = self.wake.0.lock() {
            *flag = true;
            self.wake.1.notify_all();
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, ApiError> {
        self.db()?
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                row_to_job,
            )
            .optional()
            .map_err(db_error)
    }

    pub fn list(&self, kind: &str) -> Result<Vec<Job>, ApiError> {
        let db = self.db()?;
        let mut stmt = db
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE kind = ?1 ORDER BY created_at DESC, id"
            ))
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![kind], row_to_job)
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    pub fn files(&self, job_id: &str) -> Result<Vec<FileRow>, ApiError> {
        let db = self.db()?;
        let mut stmt = db
            .prepare("SELECT id, name, path, mime, bytes, sha256 FROM files WHERE job_id = ?1 ORDER BY name")
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![job_id], row_to_file)
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    pub fn file(&self, id: &str) -> Result<Option<FileRow>, ApiError> {
        self.db()?
            .query_row(
                "SELECT id, name, path, mime, bytes, sha256 FROM files WHERE id = ?1",
                params![id],
                row_to_file,
            )
            .optional()
            .map_err(db_error)
    }

    /// Deletes a finished or queued job and its files.
    pub fn delete(&self, id: &str) -> Result<bool, ApiError> {
        for f in self.files(id)? {
            let _ = std::fs::remove_file(&f.path);
        }
        let db = self.db()?;
        db.execute("DELETE FROM files WHERE job_id = ?1", params![id])
            .map_err(db_error)?;
        db.execute("DELETE FROM events WHERE job_id = ?1", params![id])
            .map_err(db_error)?;
        Ok(db
            .execute("DELETE FROM jobs WHERE id = ?1", params![id])
            .map_err(db_error)?
            > 0)
    }

    /// Cancels a job: a queued one never starts, a running one stops at
    /// its next generation step.
    pub fn cancel(&self, id: &str) -> Result<(), ApiError> {
        self.db()?
            .execute("UPDATE jobs SET status = 'cancelled', completed_at = ?2 WHERE id = ?1 AND status IN ('queued', 'in_progress')", params![id, now()])
            .map_err(db_error)?;
        if let Ok(running) = self.running.lock() {
            if let Some((_, token)) = running.as_ref().filter(|(r, _)| r == id) {
                token.cancel();
            }
        }
        Ok(())
    }

    /// Drains for shutdown: no job starts after this; the running one is
    /// cancelled and queued again, so it runs at the next start. Waits up
    /// to `wait` for the worker to let go of it.
    pub fn stop(&self, wait: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(running) = self.running.lock() {
            if let Some((_, token)) = running.as_ref() {
                token.cancel();
            }
        }
        self.notify();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && self.running.lock().map(|r| r.is_some()).unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn events(&self, id: &str, after: i64) -> Result<Vec<(i64, Value)>, ApiError> {
        let db = self.db()?;
        let mut stmt = db
            .prepare("SELECT seq, event FROM events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq")
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![id, after], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db_error)?;
        Ok(rows
            .filter_map(Result::ok)
            .map(|(seq, e)| (seq, serde_json::from_str(&e).unwrap_or(Value::Null)))
            .collect())
    }

    pub fn record_event(&self, id: &str, event: &Value) {
        if let Ok(db) = self.db() {
            let _ = db.execute(
                "INSERT INTO events (job_id, seq, event) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?1), ?2)",
                params![id, event.to_string()],
            );
        }
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Result<Vec<(String, i64)>, ApiError> {
        let db = self.db()?;
        let mut stmt = db
            .prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    pub fn set_progress(&self, id: &str, progress: f64) {
        if let Ok(db) = self.db() {
            let _ = db.execute(
                "UPDATE jobs SET progress = ?2 WHERE id = ?1",
                params![id, progress],
            );
        }
    }

    /// Takes the oldest queued job, marking it in progress.
    fn claim(&self) -> Result<Option<Job>, ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let db = self.db()?;
        let id: Option<String> = db
            .query_row(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error)?;
        let Some(id) = id else { return Ok(None) };
        db.execute(
            "UPDATE jobs SET status = 'in_progress', progress = 0 WHERE id = ?1",
            params![id],
        )
        .map_err(db_error)?;
        db.query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            params![id],
            row_to_job,
        )
        .optional()
        .map_err(db_error)
    }

    /// Records a finished job's files (already written under `dir`) and status.
    fn finish(
        &self,
        id: &str,
        result: Result<Vec<(String, PathBuf, String)>, String>,
    ) -> Result<(), ApiError> {
        let mut db = self.db()?;
        let tx = db.transaction().map_err(db_error)?;
        // A job cancelled while it ran keeps that status; its files are dropped.
        let status: Option<String> = tx
            .query_row("SELECT status FROM jobs WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_error)?;
        // Stopped by a drain: queued again, for the next start.
        let requeue = self.stopping.load(Ordering::SeqCst);
        if status.as_deref() != Some("in_progress") || requeue {
            if let Ok(files) = &result {
                for (_, path, _) in files {
                    let _ = std::fs::remove_file(path);
                }
            }
            if requeue && status.as_deref() == Some("in_progress") {
                tx.execute(
                    "UPDATE jobs SET status = 'queued', progress = 0 WHERE id = ?1",
                    params![id],
                )
                .map_err(db_error)?;
            }
            return tx.commit().map_err(db_error);
        }
        match result {
            Ok(files) => {
                for (name, path, mime) in files {
                    let bytes = std::fs::metadata(&path)
                        .map(|m| m.len() as i64)
                        .unwrap_or(0);
                    let sha = pipelines::pack::sha256_file(&path).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO files (id, job_id, name, path, mime, bytes, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![new_id("file"), id, name, path.to_string_lossy(), mime, bytes, sha],
                    )
                    .map_err(db_error)?;
                }
                tx.execute("UPDATE jobs SET status = 'completed', progress = 100, completed_at = ?2 WHERE id = ?1", params![id, now()]).map_err(db_error)?;
            }
            Err(e) => {
                tx.execute("UPDATE jobs SET status = 'failed', error = ?2, completed_at = ?3 WHERE id = ?1", params![id, e, now()]).map_err(db_error)?;
            }
        }
        tx.commit().map_err(db_error)
    }

    /// Runs jobs one after another, for as long as the process lives.
    pub fn start_worker(
        self: &Arc<Jobs>,
        run: impl Fn(&Jobs, &Job, &CancelToken) -> Result<Vec<(String, PathBuf, String)>, String>
            + Send
            + 'static,
    ) {
        let jobs = self.clone();
        std::thread::Builder::new()
            .name("anyforge-jobs".into())
            .spawn(move || loop {
                match jobs.claim() {
                    Ok(Some(job)) => {
                        let token = CancelToken::new();
                        if let Ok(mut running) = jobs.running.lock() {
                            *running = Some((job.id.clone(), token.clone()));
                        }
                        // A drain or cancel that came between claim and here.
                        let status = jobs.get(&job.id).ok().flatten().map(|j| j.status);
                        if jobs.stopping.load(Ordering::SeqCst)
                            || status.as_deref() != Some("in_progress")
                        {
                            token.cancel();
                        }
                        let result = run(&jobs, &job, &token);
                        let _ = jobs.finish(&job.id, result);
                        if let Ok(mut running) = jobs.running.lock() {
                            *running = None;
                        }
                    }
                    _ => {
                        // Sleep until a submission (or a second, for safety).
                        if let Ok(flag) = jobs.wake.0.lock() {
                            if let Ok((mut flag, _)) =
                                jobs.wake
                                    .1
                                    .wait_timeout_while(flag, Duration::from_secs(1), |f| !*f)
                            {
                                *flag = false;
                            }
                        }
                    }
                }
            })
            .ok();
    }
}

/// The SHA-256 of a request body, to tell the same submission from another.
fn body_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A job as OpenAI's video object.
pub fn video_json(job: &Job) -> Value {
    json!({
        "id": job.id,
        "object": "video",
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "status": job.status,
        "progress": job.progress.round() as i64,
        "model": job.request.get("model").cloned().unwrap_or(Value::Null),
        "prompt": job.request.get("prompt").cloned().unwrap_or(Value::Null),
        "seconds": job.request.get("seconds").cloned().unwrap_or(Value::Null),
        "size": job.request.get("size").cloned().unwrap_or(Value::Null),
        "error": job.error.as_ref().map(|e| json!({"code": "generation_failed", "message": e})),
    })
}
