//! `berth catalog import FILE`: registers the servers of an MCP client's configuration
//! (Claude Desktop, Claude Code, Cursor, VS Code) as custom catalog entries, through the
//! REST API of a running Berth, so the caller's own role decides what it may register
//! (process entries are for administrators). It reports what it registered, what was
//! refused and why, and what it could not map.

mod mapping;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::cli::config::Settings;
use crate::cli::events_tail::{problem_text, resolve_token, resolve_url};
use crate::cli::table::{Align, Table};
use mapping::map_config;

/// The largest configuration file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `berth catalog import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The client's configuration: Claude Desktop's `claude_desktop_config.json`, Claude
    /// Code's `.mcp.json`, Cursor's `mcp.json` or VS Code's `.vscode/mcp.json`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Prints the entries it would register, and registers none.
    #[arg(long)]
    pub dry_run: bool,
    /// Berth's address (default: where the `berth serve` of this data directory listens).
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the bearer token (default: the `BERTH_TOKEN` environment variable
    /// when set, else `<data_dir>/admin-token`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Runs it; fails when Berth refused an entry it could map.
pub async fn run(settings: &Settings, args: &ImportArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_FILE_BYTES,
        "{} is larger than {MAX_FILE_BYTES} bytes: not an MCP client configuration",
        file.display()
    );
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (format, mapped) =
        map_config(&text).with_context(|| format!("reading {}", file.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: {} servers, in `{}`",
        file.display(),
        mapped.len(),
        format.name()
    )?;
    if args.dry_run {
        for server in &mapped {
            match &server.entry {
                Ok(entry) => writeln!(out, "{}", serde_json::to_string_pretty(entry)?)?,
                Err(why) => writeln!(out, "`{}` not imported: {why}", server.name)?,
            }
        }
        return Ok(());
    }
    let base = resolve_url(args.url.as_deref(), settings);
    let token = resolve_token(args.token_file.as_deref(), &settings.data_dir)?;
    let client = reqwest::Client::new();
    let catalog = format!("{}/api/v1/catalog", base.trim_end_matches('/'));
    let mut table = Table::new(&[
        ("SERVER", Align::Left),
        ("ENTRY", Align::Left),
        ("RESULT", Align::Left),
    ]);
    let mut refused = 0;
    let mut notes = Vec::new();
    for server in &mapped {
        let entry = match &server.entry {
            Ok(entry) => entry,
            Err(why) => {
                table.row(vec![
                    server.name.clone(),
                    "-".into(),
                    format!("not imported: {why}"),
                ]);
                continue;
            }
        };
        let entry_name = entry["name"].as_str().unwrap_or_default().to_owned();
        let answer = client
            .post(&catalog)
            .bearer_auth(token.expose_secret())
            .json(entry)
            .send()
            .await
            .with_context(|| format!("sending the entries to {base}"))?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let result = if status.is_success() {
            notes.extend(server.notes.iter().map(|n| format!("{entry_name}: {n}")));
            format!(
                "registered {} ({})",
                body["id"].as_str().unwrap_or("?"),
                entry["runtime"]["type"].as_str().unwrap_or("?")
            )
        } else {
            refused += 1;
            format!("refused ({}): {}", status.as_u16(), problem_text(&body))
        };
        table.row(vec![server.name.clone(), entry_name, result]);
    }
    table.write(&mut out)?;
    for note in &notes {
        writeln!(out, "note: {note}")?;
    }
    anyhow::ensure!(refused == 0, "Berth refused {refused} of the entries");
    Ok(())
}
