//! Read-model query latency over the run's data set ([`crate::volume`]: `Scale.events`
//! events, 50 owners), once every projection has caught up: a user's first page of
//! servers, a server by id, and the audit trail filtered as an auditor would (by server,
//! by person, by action, by a time window, by owner). Each query runs `query_samples`
//! times through Berth's query function, and as many times, alternating with it on the
//! same pooled connection, as the same SQL sent raw through tokio-postgres (the
//! baseline: what the query costs PostgreSQL without Berth's code around it). Every
//! baseline's answer is checked against Berth's, so both ask the same question.
//!
//! Then `berth audit export --format jsonl` of the whole trail runs as a child process,
//! and its peak resident memory is set beside that of an export of about a tenth of the
//! trail: a ratio near 1 shows an export's memory does not grow with its length.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use berth_infrastructure::feed::follow::ReaderOptions;
use berth_projections::{
    get_server, list_audit, list_servers, AuditFilter, PageRequest, Projections, ServerFilter,
    PROJECTION_NAMES,
};
use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::report::{Figure, Target};
use crate::stats::Latencies;
use crate::volume::{self, Dataset, OWNERS};
use crate::Bench;

const SCENARIO: &str = "queries";

/// The first page at the API's default size.
const FIRST_PAGE: PageRequest = PageRequest {
    page: 1,
    page_size: 50,
};

/// The audit actions of a server's life in the data set.
const ACTIONS: [&str; 10] = [
    "server.created",
    "server.start_requested",
    "server.provisioning_began",
    "server.container_created",
    "server.running",
    "server.health_changed",
    "server.tools_discovered",
    "server.config_updated",
    "server.stop_requested",
    "server.stopped",
];

/// The columns of `servers` as Berth selects them.
const SERVER_COLUMNS: &str = "id, name, catalog_id, catalog_version, owner, state, enabled, \
     restart_pending, delete_pending, config, secret_keys, health, tools, container_id, \
     last_error, created_at, updated_at, version, position, restart_policy, restart_attempts";

/// The columns of `audit_log` as Berth selects them.
const AUDIT_COLUMNS: &str = "position, at, actor, action, target_type, target_id, summary, \
     request_id, correlation_id, causation_id";

/// Runs the scenario, then drops the data set (this is the last scenario using it).
pub async fn run(bench: &Bench<'_>) -> anyhow::Result<()> {
    let data = volume::dataset(bench).await?;
    let result = measure(bench, &data).await;
    drop(data);
    let released = volume::release().await;
    result?;
    released
}

async fn measure(bench: &Bench<'_>, data: &Dataset) -> anyhow::Result<()> {
    let db = data.database().database();
    let pool = db.pool(2)?;
    let outcome = async {
        let projections = Projections::with_options(
            db.clone(),
            pool.clone(),
            ReaderOptions {
                batch_size: 5_000,
                ..ReaderOptions::default()
            },
        );
        let mut caught_up = Vec::new();
        for name in PROJECTION_NAMES {
            let started = Instant::now();
            projections
                .catch_up(name)
                .await
                .with_context(|| format!("catching {name} up"))?;
            caught_up.push(format!("{name} {:.1} s", started.elapsed().as_secs_f64()));
        }
        let client = pool.get().await?;
        // As autovacuum would have by now on a database in use: without it, counting
        // rows reads the table rather than the index alone.
        let started = Instant::now();
        client.batch_execute("VACUUM (ANALYZE)").await?;
        bench.report.note(
            SCENARIO,
            &format!(
                "projections caught up ({}), then the database vacuumed and analysed ({:.1} s)",
                caught_up.join(", "),
                started.elapsed().as_secs_f64()
            ),
        );
        let samples = Samples::draw(&client, bench.scale.query_samples).await?;
        for query in Query::ALL {
            time_query(bench, &client, &samples, query).await?;
        }
        export_memory(bench, data, &client).await
    }
    .await;
    pool.close();
    outcome
}

/// The parameters the queries are asked with, drawn from the data set.
struct Samples {
    count: usize,
    servers: Vec<Uuid>,
    /// `[from, to)` windows, each holding about 1% of the trail.
    windows: Vec<AuditFilter>,
}

impl Samples {
    async fn draw(client: &Object, count: usize) -> anyhow::Result<Self> {
        let count = count.max(1);
        let limit = i64::try_from(count)?;
        let servers = client
            .query(
                "SELECT id FROM servers ORDER BY random() LIMIT $1",
                &[&limit],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<Vec<Uuid>, _>>()?;
        anyhow::ensure!(!servers.is_empty(), "the data set has no servers");
        // Windows between percentiles of the entries' times: each holds about 1% of the
        // trail (a little more where one transaction's entries share a time).
        let mut windows = Vec::with_capacity(count);
        for row in client
            .query(
                "WITH edges AS (SELECT percentile_disc( \
                     (SELECT array_agg(g / 100.0) FROM generate_series(0, 100) g)) \
                     WITHIN GROUP (ORDER BY at) AS e FROM audit_log) \
                 SELECT e[k], e[k + 1] + interval '1 microsecond' FROM edges, \
                     (SELECT 1 + floor(random() * 100)::int AS k \
                      FROM generate_series(1::bigint, $1)) r",
                &[&limit],
            )
            .await?
        {
            windows.push(AuditFilter {
                from: Some(row.try_get(0)?),
                to: Some(row.try_get(1)?),
                ..AuditFilter::default()
            });
        }
        Ok(Self {
            count,
            servers,
            windows,
        })
    }

    fn server(&self, i: usize) -> Uuid {
        self.servers[i % self.servers.len()]
    }

    /// A user, `user:user<k>`: the owner of servers and the actor of their requests.
    fn user(&self, i: usize) -> String {
        volume::owner(i % OWNERS)
    }
}

/// The queries timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    ServerList,
    ServerById,
    AuditByServer,
    AuditByActor,
    AuditByAction,
    AuditByTime,
    AuditByOwner,
}

impl Query {
    const ALL: [Query; 7] = [
        Query::ServerList,
        Query::ServerById,
        Query::AuditByServer,
        Query::AuditByActor,
        Query::AuditByAction,
        Query::AuditByTime,
        Query::AuditByOwner,
    ];

    fn name(self) -> &'static str {
        match self {
            Query::ServerList => "server list, a user's first page",
            Query::ServerById => "server by id",
            Query::AuditByServer => "audit by server",
            Query::AuditByActor => "audit by actor (a user)",
            Query::AuditByAction => "audit by action",
            Query::AuditByTime => "audit by time window (1% of entries)",
            Query::AuditByOwner => "audit by owner",
        }
    }

    fn is_audit(self) -> bool {
        !matches!(self, Query::ServerList | Query::ServerById)
    }

    /// The audit filter of sample `i`.
    fn audit_filter(self, samples: &Samples, i: usize) -> AuditFilter {
        match self {
            Query::AuditByServer => AuditFilter {
                server_id: Some(samples.server(i)),
                ..AuditFilter::default()
            },
            Query::AuditByActor => AuditFilter {
                actor: Some(samples.user(i)),
                ..AuditFilter::default()
            },
            Query::AuditByAction => AuditFilter {
                action: Some(ACTIONS[i % ACTIONS.len()].to_owned()),
                ..AuditFilter::default()
            },
            Query::AuditByTime => samples.windows[i % samples.windows.len()].clone(),
            Query::AuditByOwner => AuditFilter {
                owner: Some(samples.user(i)),
                ..AuditFilter::default()
            },
            Query::ServerList | Query::ServerById => AuditFilter::default(),
        }
    }

    /// Sample `i` through Berth: the items answered and the list's total.
    async fn berth(
        self,
        client: &Object,
        samples: &Samples,
        i: usize,
    ) -> anyhow::Result<(usize, i64)> {
        match self {
            Query::ServerList => {
                let filter = ServerFilter {
                    owner: Some(samples.user(i)),
                    ..ServerFilter::default()
                };
                let page = list_servers(client, &filter, FIRST_PAGE).await?;
                Ok((page.items.len(), page.total))
            }
            Query::ServerById => {
                let found = get_server(client, samples.server(i)).await?;
                Ok((usize::from(found.is_some()), i64::from(found.is_some())))
            }
            _ => {
                let page = list_audit(client, &self.audit_filter(samples, i), FIRST_PAGE).await?;
                Ok((page.items.len(), page.total))
            }
        }
    }

    /// Sample `i` as the same SQL sent raw: the rows answered and the count.
    async fn raw(
        self,
        client: &Object,
        samples: &Samples,
        i: usize,
    ) -> anyhow::Result<(usize, i64)> {
        if self == Query::ServerById {
            let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE id = $1");
            let statement = client.prepare_cached(&sql).await?;
            let rows = client.query(&statement, &[&samples.server(i)]).await?;
            return Ok((rows.len(), i64::try_from(rows.len())?));
        }
        if self == Query::ServerList {
            let owner = samples.user(i);
            return raw_list(
                client,
                "servers",
                SERVER_COLUMNS,
                "owner = $1",
                "lower(name), id",
                &[&owner],
            )
            .await;
        }
        let filter = self.audit_filter(samples, i);
        let server = filter.server_id.map(|id| id.to_string());
        let (conditions, params): (&str, Vec<&(dyn ToSql + Sync)>) = match self {
            Query::AuditByServer => ("target_type = 'server' AND target_id = $1", vec![&server]),
            Query::AuditByActor => ("actor = $1", vec![&filter.actor]),
            Query::AuditByAction => ("action = $1", vec![&filter.action]),
            Query::AuditByTime => ("at >= $1 AND at < $2", vec![&filter.from, &filter.to]),
            _ => (
                "EXISTS (SELECT 1 FROM stream_owners o WHERE o.aggregate_type = \
                 audit_log.target_type AND o.aggregate_id = audit_log.target_id \
                 AND o.owner = $1)",
                vec![&filter.owner],
            ),
        };
        if self == Query::AuditByTime {
            return raw_window(client, conditions, &params).await;
        }
        raw_list(
            client,
            "audit_log",
            AUDIT_COLUMNS,
            conditions,
            "position DESC",
            &params,
        )
        .await
    }
}

/// A list page as Berth asks for it (count and page pipelined on one connection),
/// without Berth's code: the rows are fetched, not turned into views.
async fn raw_list(
    client: &Object,
    table: &str,
    columns: &str,
    conditions: &str,
    order: &str,
    params: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<(usize, i64)> {
    let n = params.len() + 1;
    let count_sql = format!("SELECT count(*) FROM {table} WHERE {conditions}");
    let page_sql = format!(
        "SELECT {columns} FROM {table} WHERE {conditions} ORDER BY {order} LIMIT ${n} OFFSET ${}",
        n + 1
    );
    let (count, page) = tokio::try_join!(
        client.prepare_cached(&count_sql),
        client.prepare_cached(&page_sql)
    )?;
    let (limit, offset) = (FIRST_PAGE.page_size, FIRST_PAGE.offset());
    let mut page_params = params.to_vec();
    page_params.extend([&limit as &(dyn ToSql + Sync), &offset]);
    let (total, rows) = tokio::try_join!(
        client.query_one(&count, params),
        client.query(&page, &page_params)
    )?;
    Ok((rows.len(), total.try_get(0)?))
}

/// Berth reads at most this many entries of a time window and sorts them, rather than
/// walking back from the newest entry (`FEW_IN_WINDOW` in its audit queries).
const FEW_IN_WINDOW: i64 = 50_000;

/// An audit time window's first page as Berth asks for it: counted first, then its
/// entries read and sorted when few, or found from the newest entry back when many.
async fn raw_window(
    client: &Object,
    conditions: &str,
    params: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<(usize, i64)> {
    let count_sql = format!("SELECT count(*) FROM audit_log WHERE {conditions}");
    let count = client.prepare_cached(&count_sql).await?;
    let total: i64 = client.query_one(&count, params).await?.try_get(0)?;
    let n = params.len() + 1;
    let from = if total <= FEW_IN_WINDOW {
        format!("(SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {conditions} OFFSET 0) AS matching")
    } else {
        format!("audit_log WHERE {conditions}")
    };
    let page_sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM {from} ORDER BY position DESC LIMIT ${n} OFFSET ${}",
        n + 1
    );
    let page = client.prepare_cached(&page_sql).await?;
    let (limit, offset) = (FIRST_PAGE.page_size, FIRST_PAGE.offset());
    let mut page_params = params.to_vec();
    page_params.extend([&limit as &(dyn ToSql + Sync), &offset]);
    let rows = client.query(&page, &page_params).await?;
    Ok((rows.len(), total))
}

/// Times `query`, Berth and raw SQL in turn, and reports p50 and p99 of each.
async fn time_query(
    bench: &Bench<'_>,
    client: &Object,
    samples: &Samples,
    query: Query,
) -> anyhow::Result<()> {
    let (mut berth, mut raw) = (Latencies::new(), Latencies::new());
    let mut matched = 0_u64;
    // One unmeasured round: statements prepared, pages cached, as for a server in use.
    query.berth(client, samples, 0).await?;
    query.raw(client, samples, 0).await?;
    for i in 0..samples.count {
        let started = Instant::now();
        let answer = query.berth(client, samples, i).await?;
        berth.record(started.elapsed());
        let started = Instant::now();
        let baseline = query.raw(client, samples, i).await?;
        raw.record(started.elapsed());
        anyhow::ensure!(
            answer == baseline,
            "{}: Berth answered {answer:?} (items, total), the raw SQL {baseline:?}",
            query.name()
        );
        matched += u64::try_from(answer.1).unwrap_or_default();
    }
    let samples_taken = u64::try_from(samples.count)?;
    for p in [50.0, 99.0] {
        let mut figure = Figure::new(
            SCENARIO,
            format!("{}: p{p}", query.name()),
            "ms",
            berth.percentile_ms(p),
            samples_taken,
        )
        .against(format!("same SQL raw, p{p}"), raw.percentile_ms(p));
        if query.is_audit() && p == 99.0 {
            figure = figure.target(Target::AtMost(50.0));
        }
        bench.report.add(figure);
    }
    bench.report.note(
        SCENARIO,
        &format!(
            "{}: {:.0} matching rows per query on average",
            query.name(),
            matched as f64 / samples.count as f64
        ),
    );
    Ok(())
}

/// Peak RSS of `berth audit export` of the whole trail beside that of about a tenth of it.
async fn export_memory(bench: &Bench<'_>, data: &Dataset, client: &Object) -> anyhow::Result<()> {
    let Some(binary) = bench.berth_binary.clone() else {
        bench.report.note(
            SCENARIO,
            "no `berth` binary beside berth-bench (build berth-api): export memory not measured",
        );
        return Ok(());
    };
    let total: i64 = client
        .query_one("SELECT count(*) FROM audit_log", &[])
        .await?
        .try_get(0)?;
    // Entries before the first time recorded after that of the trail's tenth entry in
    // position order (entries of one transaction share a time).
    let row = client
        .query_one(
            "SELECT to_char(c AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                    (SELECT count(*) FROM audit_log WHERE at < c) \
             FROM (SELECT min(at) AS c FROM audit_log WHERE at > \
                 (SELECT at FROM audit_log ORDER BY position OFFSET $1 LIMIT 1)) t",
            &[&(total / 10)],
        )
        .await?;
    let (cut, small): (Option<String>, i64) = (row.try_get(0)?, row.try_get(1)?);
    let Some(cut) = cut else {
        bench.report.note(
            SCENARIO,
            "every audit entry has the same time: no shorter export to compare with",
        );
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let small_run = export(&binary, data, dir.path(), Some(&cut)).await?;
    anyhow::ensure!(
        small_run.lines == u64::try_from(small)?,
        "the export up to {cut} wrote {} lines for {small} entries",
        small_run.lines
    );
    let full_run = export(&binary, data, dir.path(), None).await?;
    anyhow::ensure!(
        full_run.lines == u64::try_from(total)?,
        "the export wrote {} lines for {total} entries",
        full_run.lines
    );
    bench.report.add(
        Figure::new(
            SCENARIO,
            format!("audit export of {total} entries: peak RSS"),
            "MB",
            full_run.peak_mb,
            full_run.lines,
        )
        .against(format!("export of {small} entries"), small_run.peak_mb),
    );
    bench.report.note(
        SCENARIO,
        &format!(
            "audit export as JSON Lines: {total} entries in {:.1} s ({:.0} entries/s)",
            full_run.seconds,
            full_run.lines as f64 / full_run.seconds.max(f64::EPSILON)
        ),
    );
    Ok(())
}

/// What one export run did.
struct ExportRun {
    lines: u64,
    peak_mb: f64,
    seconds: f64,
}

/// Runs `berth audit export --format jsonl` (entries before `to`, or all) into `dir`
/// and measures its peak resident memory.
async fn export(
    binary: &Path,
    data: &Dataset,
    dir: &Path,
    to: Option<&str>,
) -> anyhow::Result<ExportRun> {
    let output = dir.join(if to.is_some() {
        "part.jsonl"
    } else {
        "all.jsonl"
    });
    let mut command = std::process::Command::new(binary);
    command
        .args(["audit", "export", "--format", "jsonl", "--output"])
        .arg(&output)
        .env("DATABASE_URL", data.database().url())
        .env("BERTH_DATA_DIR", dir.join("data"))
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.txt"))?);
    if let Some(to) = to {
        command.args(["--to", to]);
    }
    let stderr = dir.join("stderr.txt");
    let (status, peak_kb, seconds) = tokio::task::spawn_blocking(move || run_child(command))
        .await
        .context("the export's waiter panicked")??;
    if status != 0 {
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        anyhow::bail!("berth audit export exited with {status}: {}", log.trim());
    }
    let lines = count_lines(&output)?;
    std::fs::remove_file(&output).ok();
    Ok(ExportRun {
        lines,
        peak_mb: peak_kb as f64 / 1024.0,
        seconds,
    })
}

/// Runs `command` to its end; returns its exit code (or 128 + signal), its peak
/// resident memory in KiB (`ru_maxrss`) and how long it ran.
fn run_child(mut command: std::process::Command) -> anyhow::Result<(i32, i64, f64)> {
    // This thread waits for the child, so it lives as long as the child may.
    crate::serve::terminate_with_the_bench(&mut command);
    let started = Instant::now();
    let child = command.spawn().context("starting berth audit export")?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: rusage is plain data, written by the kernel; zero is a valid value of it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for (and reaps) our own child; both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        waited == pid,
        "waiting for berth audit export: {}",
        std::io::Error::last_os_error()
    );
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage.ru_maxrss, seconds))
}

/// The number of lines in the file at `path`.
fn count_lines(path: &Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buffer = vec![0_u8; 1 << 20];
    let mut lines = 0_u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}
