//! `berth events tail`: follows `GET /api/v1/events/stream` and prints one line per
//! event; after a dropped connection it reconnects with the last id it printed, so it
//! misses nothing and repeats nothing, until Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::cli::config::Settings;

/// The environment variable holding a bearer token, used when `--token-file` is not given.
pub const TOKEN_ENV: &str = "BERTH_TOKEN";

/// A connection that delivers nothing, not even a keep-alive comment, for this long is
/// taken for dead (the server sends one every 15 s).
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// The first pause before reconnecting after a failure; it doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// `berth events tail` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Start after the event at this position (0: from the first event).
    #[arg(long, default_value_t = 0, value_name = "POSITION")]
    pub after: i64,
    /// Only events of this type, e.g. `ServerStartRequested`.
    #[arg(long = "type", value_name = "EVENT_TYPE")]
    pub event_type: Option<String>,
    /// Only events of this aggregate type (`server`, `catalog_entry`).
    #[arg(long, value_name = "TYPE")]
    pub aggregate_type: Option<String>,
    /// Only events of this aggregate.
    #[arg(long, value_name = "ID")]
    pub aggregate_id: Option<String>,
    /// Berth's address (default: where the `berth serve` of this data directory
    /// listens, recorded in `<data_dir>/berth.url`, else the `listen` setting).
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the bearer token (default: the `BERTH_TOKEN` environment variable
    /// when set, else `<data_dir>/admin-token`).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Print each event as one JSON line (the object `GET /api/v1/events` lists).
    #[arg(long)]
    pub json: bool,
}

/// What to follow and how to print it.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Berth's base URL, e.g. `http://127.0.0.1:7070`.
    pub url: String,
    /// The bearer token.
    pub token: SecretString,
    /// Start after the event at this position.
    pub after: i64,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events of this aggregate type.
    pub aggregate_type: Option<String>,
    /// Only events of this aggregate.
    pub aggregate_id: Option<String>,
    /// JSON lines instead of summaries.
    pub json: bool,
}

/// Why following the stream stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The server refused the request (a bad token, a bad parameter): retrying cannot help.
    #[error("the server refused the event stream ({status}): {detail}")]
    Refused {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The problem document's detail, or the body.
        detail: String,
    },
    /// The URL is not usable.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Printing failed.
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `berth events tail` until Ctrl-C or SIGTERM.
pub async fn run(settings: &Settings, args: &TailArgs) -> anyhow::Result<()> {
    let token = resolve_token(args.token_file.as_deref(), &settings.data_dir)?;
    let options = TailOptions {
        url: resolve_url(args.url.as_deref(), settings),
        token,
        after: args.after,
        event_type: args.event_type.clone(),
        aggregate_type: args.aggregate_type.clone(),
        aggregate_id: args.aggregate_id.clone(),
        json: args.json,
    };
    let mut stdout = std::io::stdout();
    tokio::select! {
        outcome = follow(&options, &mut stdout) => match outcome {
            Ok(()) => Ok(()),
            // `berth events tail | head`: the reader has seen enough.
            Err(TailError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(e.into()),
        },
        stopped = stop_signal() => stopped,
    }
}

/// Where Berth listens: `url` when given, else what the running `berth serve` of the data
/// directory recorded, else the `listen` setting.
pub fn resolve_url(url: Option<&str>, settings: &Settings) -> String {
    if let Some(url) = url {
        return url.to_owned();
    }
    std::fs::read_to_string(settings.data_dir.join(crate::serve::server::URL_FILE))
        .ok()
        .map(|recorded| recorded.trim().to_owned())
        .filter(|recorded| !recorded.is_empty())
        .unwrap_or_else(|| format!("http://{}", settings.listen))
}

/// The bearer token: from `token_file` when given, else `BERTH_TOKEN`, else
/// `<data_dir>/admin-token`.
pub fn resolve_token(token_file: Option<&Path>, data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = match token_file {
        Some(path) => path.to_path_buf(),
        None => match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => {
                return Ok(SecretString::from(token.trim().to_string()))
            }
            _ => data_dir.join("admin-token"),
        },
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the token from {} (pass --token-file PATH or set {TOKEN_ENV})",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(SecretString::from(token.to_string()))
}

async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

/// How one connection ended, when it may be retried.
enum Dropped {
    /// The server ended the stream (it lagged, or Berth is stopping): reconnect soon.
    Ended(String),
    /// The connection failed or went quiet: reconnect after a pause.
    Failed(String),
}

/// Follows the stream, printing each event to `out`, reconnecting after every drop with
/// the last id printed. Returns only when retrying cannot help.
pub async fn follow<W: Write + Send>(options: &TailOptions, out: &mut W) -> Result<(), TailError> {
    let url = stream_url(&options.url)?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| TailError::InvalidUrl {
            url: options.url.clone(),
            reason: e.to_string(),
        })?;
    let mut last = options.after;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let pause = match connect_once(&client, &url, options, &mut last, &mut backoff, out).await {
            Err(fatal) => return Err(fatal),
            Ok(Dropped::Ended(why)) => {
                eprintln!("berth: {why}; reconnecting after event {last}");
                FIRST_BACKOFF
            }
            Ok(Dropped::Failed(why)) => {
                eprintln!(
                    "berth: {why}; reconnecting after event {last} in {:.1} s",
                    backoff.as_secs_f64()
                );
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::time::sleep(pause).await;
    }
}

fn stream_url(base: &str) -> Result<reqwest::Url, TailError> {
    let url = format!("{}/api/v1/events/stream", base.trim_end_matches('/'));
    let parsed = reqwest::Url::parse(&url).map_err(|e| TailError::InvalidUrl {
        url: base.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TailError::InvalidUrl {
            url: base.to_string(),
            reason: "must be an http:// or https:// URL".into(),
        });
    }
    Ok(parsed)
}

/// One connection: prints what arrives and moves `last` along.
async fn connect_once<W: Write + Send>(
    client: &reqwest::Client,
    url: &reqwest::Url,
    options: &TailOptions,
    last: &mut i64,
    backoff: &mut Duration,
    out: &mut W,
) -> Result<Dropped, TailError> {
    let filters: Vec<(&str, &str)> = [
        ("event_type", &options.event_type),
        ("aggregate_type", &options.aggregate_type),
        ("aggregate_id", &options.aggregate_id),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
    .collect();
    let sent = client
        .get(url.clone())
        .query(&filters)
        .bearer_auth(options.token.expose_secret())
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", last.to_string())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            return Ok(Dropped::Failed(format!(
                "cannot reach {}: {e}",
                options.url
            )))
        }
    };
    let status = response.status();
    if !status.is_success() {
        let detail = problem_detail(response).await;
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(TailError::Refused { status, detail });
        }
        return Ok(Dropped::Failed(format!(
            "the server answered {status}: {detail}"
        )));
    }
    *backoff = FIRST_BACKOFF;
    let mut decoder = SseDecoder::default();
    loop {
        let chunk = match tokio::time::timeout(IDLE_LIMIT, response.chunk()).await {
            Err(_) => {
                return Ok(Dropped::Failed(format!(
                    "nothing arrived for {} s",
                    IDLE_LIMIT.as_secs()
                )))
            }
            Ok(Err(e)) => return Ok(Dropped::Failed(format!("the connection failed: {e}"))),
            Ok(Ok(None)) => return Ok(Dropped::Ended("the server ended the stream".into())),
            Ok(Ok(Some(chunk))) => chunk,
        };
        for message in decoder.push(&chunk) {
            match message.event.as_deref() {
                None | Some("message") => {
                    print_event(&message, options.json, out)?;
                    if let Some(id) = message.id.as_deref().and_then(|i| i.parse().ok()) {
                        *last = id;
                    }
                }
                Some("lagged" | "shutdown" | "unavailable") => {
                    let detail = serde_json::from_str::<Value>(&message.data)
                        .ok()
                        .and_then(|v| v["detail"].as_str().map(str::to_string))
                        .unwrap_or(message.data);
                    return Ok(Dropped::Ended(detail));
                }
                Some(_) => {}
            }
        }
    }
}

async fn problem_detail(response: reqwest::Response) -> String {
    let body = response.text().await.unwrap_or_default();
    serde_json::from_str::<Value>(&body)
        .ok()
        .filter(|v| v["detail"].is_string())
        .map_or(body, |problem| problem_text(&problem))
}

/// What a problem document says: its detail (else its title) and each field's message.
pub fn problem_text(problem: &Value) -> String {
    let mut said = vec![problem["detail"]
        .as_str()
        .or(problem["title"].as_str())
        .unwrap_or("no reason given")
        .to_owned()];
    for error in problem["errors"].as_array().into_iter().flatten() {
        said.push(format!(
            "{}: {}",
            error["field"].as_str().unwrap_or("?"),
            error["message"].as_str().unwrap_or("?")
        ));
    }
    said.join("; ")
}

/// Prints one event: `<position> <event_type> <aggregate_type>/<aggregate_id> <actor>`,
/// or its JSON on one line.
fn print_event<W: Write>(message: &SseMessage, json: bool, out: &mut W) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", message.data)?;
    } else {
        let event: Value = serde_json::from_str(&message.data).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{} {} {}/{} {}",
            event["position"],
            text(&event["event_type"]),
            text(&event["aggregate_type"]),
            text(&event["aggregate_id"]),
            text(&event["metadata"]["actor"]),
        )?;
    }
    out.flush()
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field (absent: a plain message).
    pub event: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// Splits a `text/event-stream` body into messages, whatever the chunk boundaries.
#[derive(Debug, Default)]
pub struct SseDecoder {
    pending: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseDecoder {
    /// Feeds the next bytes; returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.pending.extend_from_slice(bytes);
        let mut messages = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if self.has_data || self.current.event.is_some() {
                    messages.push(std::mem::take(&mut self.current));
                }
                self.current = SseMessage::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "id" => self.current.id = Some(value.to_string()),
                "event" => self.current.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_decoded_across_chunk_boundaries() {
        let mut decoder = SseDecoder::default();
        let mut messages = decoder.push(b": keep-alive\n\nid: 4\nda");
        assert!(messages.is_empty());
        messages
            .extend(decoder.push(b"ta: {\"a\":1}\n\nevent: lagged\r\nid: 4\r\ndata: x\r\n\r\n"));
        assert_eq!(
            messages,
            vec![
                SseMessage {
                    id: Some("4".into()),
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    id: Some("4".into()),
                    event: Some("lagged".into()),
                    data: "x".into()
                },
            ]
        );
    }

    #[test]
    fn an_event_prints_as_one_summary_line() {
        let message = SseMessage {
            id: Some("7".into()),
            event: None,
            data: r#"{"position":7,"event_type":"ServerCreated","aggregate_type":"server","aggregate_id":"s1","metadata":{"actor":"user:admin"}}"#.into(),
        };
        let mut out = Vec::new();
        print_event(&message, false, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "7 ServerCreated server/s1 user:admin\n"
        );
        out.clear();
        print_event(&message, true, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(String::from_utf8_lossy(&out), format!("{}\n", message.data));
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert!(stream_url("http://127.0.0.1:7070/").is_ok());
        assert!(stream_url("https://example.test").is_ok());
        assert!(stream_url("ftp://example.test").is_err());
        assert!(stream_url("not a url").is_err());
    }
}
