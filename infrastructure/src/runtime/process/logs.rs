//! A process's log: the last lines in memory for `logs` and `follow_logs`, and every line
//! appended to a file in the log directory for people reading it later.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_application::runtime::RuntimeError;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::runtime::LineSplitter;

/// Lines kept in memory per server.
pub const RING_LINES: usize = 2_000;
/// Lines a follower may fall behind before it is told it skipped some.
const FOLLOW_BACKLOG: usize = 1_024;
/// Lines waiting for the file writer before the pumps wait for it.
const FILE_BACKLOG: usize = 1_024;
/// Size at which a log file is moved aside (to `<name>.1`) when a run starts.
const ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// One server's log, kept across its runs.
#[derive(Debug)]
pub struct LogBook {
    ring: Mutex<Ring>,
    file: PathBuf,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<String>,
    live: Option<broadcast::Sender<String>>,
    generation: u64,
}

impl LogBook {
    /// A log writing its file to `file`.
    pub fn new(file: PathBuf) -> Self {
        Self {
            ring: Mutex::new(Ring::default()),
            file,
        }
    }

    /// The file this log is appended to.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The last `count` lines.
    pub fn tail(&self, count: usize) -> Vec<String> {
        let ring = self.ring();
        let skip = ring.lines.len().saturating_sub(count);
        ring.lines.iter().skip(skip).cloned().collect()
    }

    /// The last `tail` lines, then every line written from now until the current run's
    /// output ends. A follower too slow to keep up gets one error naming how many lines
    /// it missed, then the stream goes on.
    pub fn follow(&self, tail: usize) -> BoxStream<'static, Result<String, RuntimeError>> {
        // One lock for both: no line is missed or repeated between the two.
        let ring = self.ring();
        let skip = ring.lines.len().saturating_sub(tail);
        let backlog: Vec<_> = ring.lines.iter().skip(skip).cloned().map(Ok).collect();
        let live = ring.live.as_ref().map(broadcast::Sender::subscribe);
        drop(ring);
        let live = stream::unfold(live, |live| async move {
            let mut receiver = live?;
            match receiver.recv().await {
                Ok(line) => Some((Ok(line), Some(receiver))),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let error = RuntimeError::Failed(format!(
                        "the log follower fell behind; {missed} lines were skipped"
                    ));
                    Some((Err(error), Some(receiver)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        stream::iter(backlog).chain(live).boxed()
    }

    /// Opens the log of a new run: followers see its lines until every [`RunLog`] handle
    /// is dropped, and its lines are appended to the file (moved aside first when large).
    pub async fn begin_run(self: &Arc<Self>) -> RunLog {
        let generation = {
            let mut ring = self.ring();
            ring.generation += 1;
            ring.live = Some(broadcast::channel(FOLLOW_BACKLOG).0);
            ring.generation
        };
        let file = match open_log_file(&self.file).await {
            Ok(file) => {
                let (sender, receiver) = mpsc::channel(FILE_BACKLOG);
                tokio::spawn(write_log_file(file, receiver, self.file.clone()));
                Some(sender)
            }
            Err(error) => {
                tracing::warn!(file = %self.file.display(), %error, "cannot open the process log file; keeping logs in memory only");
                None
            }
        };
        RunLog {
            end: Arc::new(RunEnd {
                book: Arc::clone(self),
                generation,
            }),
            file,
        }
    }

    fn push(&self, line: String) {
        let mut ring = self.ring();
        if ring.lines.len() == RING_LINES {
            ring.lines.pop_front();
        }
        if let Some(live) = &ring.live {
            // No follower is not an error.
            let _ = live.send(line.clone());
        }
        ring.lines.push_back(line);
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring valid, so a poisoned lock is
        // still safe to use.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where one run's output goes; cheap to clone, one per output pump.
#[derive(Clone, Debug)]
pub struct RunLog {
    end: Arc<RunEnd>,
    file: Option<mpsc::Sender<String>>,
}

#[derive(Debug)]
struct RunEnd {
    book: Arc<LogBook>,
    generation: u64,
}

impl Drop for RunEnd {
    fn drop(&mut self) {
        let mut ring = self.book.ring();
        // A late pump of an earlier run must not end the followers of the current one.
        if ring.generation == self.generation {
            ring.live = None;
        }
    }
}

impl RunLog {
    async fn line(&self, line: String) {
        self.end.book.push(line.clone());
        if let Some(file) = &self.file {
            let stamped = format!(
                "{} {line}",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
            // The writer only stops when the file fails; it has said so already.
            let _ = file.send(stamped).await;
        }
    }
}

/// Copies `reader`'s lines into the log until it ends.
pub fn pump_lines<R>(mut reader: R, log: RunLog) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = LineSplitter::default();
        let mut buffer = vec![0_u8; 8 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    for line in lines.push(&buffer[..read]) {
                        log.line(line).await;
                    }
                }
            }
        }
        if let Some(rest) = lines.finish() {
            log.line(rest).await;
        }
    })
}

async fn open_log_file(path: &Path) -> std::io::Result<tokio::fs::File> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    if tokio::fs::metadata(path)
        .await
        .is_ok_and(|meta| meta.len() > ROTATE_BYTES)
    {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".1");
        tokio::fs::rename(path, aside).await?;
    }
    // Readable by Berth's user only: a server's output may hold its secrets, and other
    // servers run on the same host.
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .await
}

async fn write_log_file(file: tokio::fs::File, mut lines: mpsc::Receiver<String>, path: PathBuf) {
    let mut file = BufWriter::new(file);
    while let Some(line) = lines.recv().await {
        let mut written = file.write_all(line.as_bytes()).await;
        if written.is_ok() {
            written = file.write_all(b"\n").await;
        }
        if written.is_ok() && lines.is_empty() {
            written = file.flush().await;
        }
        if let Err(error) = written {
            tracing::warn!(file = %path.display(), %error, "writing the process log file failed; keeping logs in memory only");
            return;
        }
    }
    let _ = file.flush().await;
}
