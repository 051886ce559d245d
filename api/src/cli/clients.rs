//! `berth clients config CLIENT`: what an MCP client needs to reach the gateway, with a
//! fresh API key (limited to the profile when one is given), shown this once.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::cli::config::Settings;
use crate::cli::events_tail::resolve_url;
use crate::cli::mcp::gateway_url;
use crate::cli::users::issue_key;
use crate::owner_only_file;

/// The MCP clients Berth writes configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    /// Claude Desktop (`claude_desktop_config.json`): starts `berth mcp connect`.
    ClaudeDesktop,
    /// Claude Code (`.mcp.json`, or the `claude mcp add` command).
    ClaudeCode,
    /// Cursor (`.cursor/mcp.json`).
    Cursor,
    /// VS Code (`.vscode/mcp.json`).
    Vscode,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            Self::ClaudeDesktop => "claude-desktop",
            Self::ClaudeCode => "claude-code",
            Self::Cursor => "cursor",
            Self::Vscode => "vscode",
        }
    }
}

/// `berth clients config`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The client.
    #[arg(value_enum)]
    pub client: ClientKind,
    /// Reach only this gateway profile (`/mcp/p/NAME`), with a key limited to it.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Whose key it is.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Berth's address as the client reaches it (default: where the `berth serve` of this
    /// data directory listens).
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    pub url: Option<String>,
}

/// The server's name in the client's configuration.
const ENTRY: &str = "berth";

/// Creates the key, and prints the configuration (Claude Desktop's refers to a key file
/// written beside the data directory's other keys, mode 0600; the others hold the key).
pub async fn config(settings: &Settings, args: &ConfigArgs) -> anyhow::Result<()> {
    let base = resolve_url(args.url.as_deref(), settings);
    let url = gateway_url(&base, args.profile.as_deref());
    let profiles: Vec<String> = args.profile.iter().cloned().collect();
    let key_name = format!(
        "{}-{}",
        args.client.name(),
        args.profile.as_deref().unwrap_or("all")
    );
    let issued = issue_key(settings, &args.user, &key_name, None, &profiles).await?;
    let key = issued.key.expose_secret();
    let snippet = match args.client {
        ClientKind::ClaudeDesktop => {
            let path = key_file(&settings.data_dir, &key_name)?;
            write_key(&path, key)?;
            let berth = std::env::current_exe().context("finding the berth binary")?;
            let mut connect = vec![
                "mcp".to_owned(),
                "connect".into(),
                "--url".into(),
                base.clone(),
                "--key-file".into(),
                path.display().to_string(),
            ];
            if let Some(profile) = &args.profile {
                connect.extend(["--profile".to_owned(), profile.clone()]);
            }
            json!({"mcpServers": {ENTRY: {"command": berth.display().to_string(), "args": connect}}})
        }
        ClientKind::ClaudeCode => {
            eprintln!(
                "add it with: claude mcp add --transport http {ENTRY} {url} --header \"Authorization: Bearer {key}\""
            );
            eprintln!("or put this in .mcp.json:");
            http_snippet(args.client, &url, key)
        }
        ClientKind::Cursor | ClientKind::Vscode => http_snippet(args.client, &url, key),
    };
    eprintln!(
        "created API key {} ({}…) for {}{}; it is shown this once only",
        issued.id,
        issued.prefix,
        args.user,
        args.profile
            .as_deref()
            .map(|p| format!(", limited to the profile {p}"))
            .unwrap_or_default()
    );
    println!("{}", serde_json::to_string_pretty(&snippet)?);
    Ok(())
}

/// The configuration of a client that reaches the gateway over HTTP (every client but
/// Claude Desktop, which starts `berth mcp connect`): what the CLI prints and the
/// console shows.
pub fn http_snippet(client: ClientKind, url: &str, key: &str) -> Value {
    match client {
        ClientKind::ClaudeCode | ClientKind::ClaudeDesktop => {
            http_entry("mcpServers", url, key, Some("http"))
        }
        ClientKind::Cursor => http_entry("mcpServers", url, key, None),
        ClientKind::Vscode => http_entry("servers", url, key, Some("http")),
    }
}

fn http_entry(section: &str, url: &str, key: &str, kind: Option<&str>) -> Value {
    let mut server = json!({"url": url, "headers": {"Authorization": format!("Bearer {key}")}});
    if let Some(kind) = kind {
        server["type"] = json!(kind);
    }
    json!({section: {ENTRY: server}})
}

fn key_file(data_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("client-keys");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    Ok(dir.join(format!("{name}.key")))
}

fn write_key(path: &Path, key: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = owner_only_file::create(path)
        .with_context(|| format!("writing the key to {}", path.display()))?;
    writeln!(file, "{key}")?;
    Ok(())
}
