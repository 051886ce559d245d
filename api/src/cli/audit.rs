//! `berth audit list` and `berth audit export`: the audit trail from the command line,
//! read from the database directly (Berth running or not), after bringing the audit
//! read model up to date. Exports are written batch by batch with the writers of
//! `GET /api/v1/audit/export`, so a trail of millions of entries takes constant memory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_projections::{list_audit, AuditFilter, PageRequest, Projections};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::audit_file::{AuditFile, ExportFormat};
use crate::cli::commands::with_database;
use crate::cli::config::Settings;
use crate::cli::table::{Align, Table};

/// The most entries `berth audit list` prints; `berth audit export` has no limit.
pub const MAX_LIST_LIMIT: i64 = 10_000;

/// `berth audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Prints the newest audit entries matching the filters, newest first.
    List {
        /// Which entries.
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// How many entries at most (1 to 10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=MAX_LIST_LIMIT))]
        limit: i64,
        /// One JSON object per line (as `GET /api/v1/audit` lists them) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Writes every entry matching the filters, oldest first, as JSON Lines or CSV
    /// (as `GET /api/v1/audit/export` serves them).
    Export {
        /// Which entries.
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// `jsonl` (one JSON object per line) or `csv` (with a header row).
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Where to write the file (standard output when absent). It appears complete or
        /// not at all: it is written beside, as `FILE.partial`, and renamed at the end.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// The filters of `berth audit list` and `berth audit export`, as those of
/// `GET /api/v1/audit`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuditFilterArgs {
    /// Who acted, e.g. `user:admin` or `system:process-manager`.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only entries about this server.
    #[arg(long, value_name = "ID")]
    pub server: Option<Uuid>,
    /// The action, e.g. `server.start_requested`.
    #[arg(long)]
    pub action: Option<String>,
    /// Entries at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// Entries strictly before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
    /// Only entries of this unit of work (e.g. a bulk operation's id).
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<Uuid>,
}

/// An RFC 3339 time, for `--from` and `--to`.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-01-31T00:00:00Z ({e})"))
}

impl AuditFilterArgs {
    /// The filter these flags ask for (every owner's entries: the command line acts
    /// with database access), or an error naming the flag at fault.
    pub fn to_filter(&self) -> anyhow::Result<AuditFilter> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                anyhow::bail!("`--to` ({to}) must not be before `--from` ({from})");
            }
        }
        Ok(AuditFilter {
            actor: self.actor.clone(),
            server_id: self.server,
            action: self.action.clone(),
            from: self.from,
            to: self.to,
            correlation_id: self.correlation_id,
            owner: None,
        })
    }
}

/// Runs `berth audit …`.
pub async fn run(settings: &Settings, command: &AuditCommand) -> anyhow::Result<()> {
    // Flags are checked before a cluster is started for nothing.
    match command {
        AuditCommand::List {
            filter,
            limit,
            json,
        } => {
            let filter = filter.to_filter()?;
            with_audit(settings, async |pool| {
                list(pool, &filter, *limit, *json).await
            })
            .await
        }
        AuditCommand::Export {
            filter,
            format,
            output,
        } => {
            let filter = filter.to_filter()?;
            with_audit(settings, async |pool| {
                export(pool, filter, *format, output.as_deref()).await
            })
            .await
        }
    }
}

/// Runs `work` with the audit read model caught up with every event committed so far.
async fn with_audit(
    settings: &Settings,
    work: impl AsyncFnOnce(&Pool) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(2)
            .context("creating the connection pool")?;
        let outcome = async {
            Projections::new(database.database().clone(), pool.clone())
                .catch_up(berth_projections::audit::NAME)
                .await
                .context("catching up the audit read model")?;
            work(&pool).await
        }
        .await;
        pool.close();
        outcome
    })
    .await
}

async fn list(pool: &Pool, filter: &AuditFilter, limit: i64, json: bool) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let page = list_audit(
        &client,
        filter,
        PageRequest {
            page: 1,
            page_size: limit,
        },
    )
    .await
    .context("reading the audit log")?;
    let mut out = std::io::stdout().lock();
    if json {
        for entry in &page.items {
            serde_json::to_writer(&mut out, entry)?;
            writeln!(out)?;
        }
    } else {
        let mut table = Table::new(&[
            ("POSITION", Align::Right),
            ("AT", Align::Left),
            ("ACTOR", Align::Left),
            ("ACTION", Align::Left),
            ("TARGET", Align::Left),
            ("SUMMARY", Align::Left),
        ]);
        for e in &page.items {
            table.row(vec![
                e.position.to_string(),
                e.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                e.actor.to_string(),
                e.action.to_string(),
                format!("{}/{}", e.target_type, e.target_id),
                e.summary.clone(),
            ]);
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    eprintln!(
        "{} of {} matching entries, newest first",
        page.items.len(),
        page.total
    );
    Ok(())
}

async fn export(
    pool: &Pool,
    filter: AuditFilter,
    format: ExportFormat,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let mut file = AuditFile::new(filter, format);
    match output {
        None => {
            let mut out = std::io::stdout().lock();
            write_all(pool, &mut file, &mut out).await?;
        }
        Some(path) => {
            let partial = partial_path(path);
            let written = async {
                let created = crate::owner_only_file::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?;
                let mut out = std::io::BufWriter::new(created);
                write_all(pool, &mut file, &mut out).await?;
                out.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("writing {}", partial.display()))?;
                std::fs::rename(&partial, path).with_context(|| {
                    format!("renaming {} to {}", partial.display(), path.display())
                })
            }
            .await;
            if written.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            written?;
        }
    }
    eprintln!(
        "exported {} audit entries as {}{}",
        file.entries(),
        match format {
            ExportFormat::Jsonl => "JSON Lines",
            ExportFormat::Csv => "CSV",
        },
        output.map_or(String::new(), |p| format!(" to {}", p.display()))
    );
    Ok(())
}

/// Writes every chunk of `file` to `out`, one batch at a time.
async fn write_all(pool: &Pool, file: &mut AuditFile, out: &mut impl Write) -> anyhow::Result<()> {
    let client = pool.get().await?;
    while let Some(chunk) = file
        .next_chunk(&client)
        .await
        .context("reading the audit log")?
    {
        out.write_all(&chunk).context("writing the export")?;
    }
    out.flush().context("writing the export")?;
    Ok(())
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_the_filter_and_an_inverted_range_is_named() {
        let args = AuditFilterArgs {
            actor: Some("user:ann".into()),
            from: parse_time("2026-01-01T00:00:00Z").ok(),
            to: parse_time("2026-02-01T00:00:00+01:00").ok(),
            ..AuditFilterArgs::default()
        };
        let filter = args.to_filter().ok();
        assert_eq!(
            filter.as_ref().and_then(|f| f.actor.as_deref()),
            Some("user:ann")
        );
        assert_eq!(filter.and_then(|f| f.owner), None);
        let inverted = AuditFilterArgs {
            from: args.to,
            to: args.from,
            ..AuditFilterArgs::default()
        };
        let message = inverted
            .to_filter()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("--to") && message.contains("--from"),
            "{message}"
        );
        assert!(parse_time("yesterday").is_err_and(|e| e.contains("RFC 3339")));
    }

    #[test]
    fn the_commands_parse() {
        use clap::Parser;

        use crate::cli::args::{Cli, Command};
        use crate::cli::replay::ReplayCommand;

        let parse = |line: &str| Cli::try_parse_from(line.split(' ')).map(|c| c.command);
        match parse("berth audit list --actor user:ann --limit 7 --json") {
            Ok(Command::Audit(AuditCommand::List {
                filter,
                limit: 7,
                json: true,
            })) => assert_eq!(filter.actor.as_deref(), Some("user:ann")),
            other => panic!("unexpected parse: {other:?}"),
        }
        match parse(
            "berth audit export --format csv --output /tmp/a.csv --from 2026-01-01T00:00:00Z",
        ) {
            Ok(Command::Audit(AuditCommand::Export {
                format: ExportFormat::Csv,
                output: Some(path),
                filter,
            })) => {
                assert_eq!(path, Path::new("/tmp/a.csv"));
                assert!(filter.from.is_some());
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        assert!(matches!(
            parse("berth audit export"),
            Ok(Command::Audit(AuditCommand::Export {
                format: ExportFormat::Jsonl,
                output: None,
                ..
            }))
        ));
        assert!(parse("berth audit list --limit 10001").is_err());
        let id = Uuid::nil();
        assert!(matches!(
            parse(&format!("berth replay server {id} --at 12")),
            Ok(Command::Replay(ReplayCommand::Server {
                at: Some(berth_projections::servers::AsOf::Position(12)),
                ..
            }))
        ));
        assert!(parse(&format!("berth replay server {id} --at soon")).is_err());
    }

    #[test]
    fn a_partial_file_sits_beside_the_output() {
        assert_eq!(
            partial_path(Path::new("/tmp/x/audit.csv")),
            Path::new("/tmp/x/audit.csv.partial")
        );
    }
}
