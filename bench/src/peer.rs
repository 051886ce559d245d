//! The peer: cqrs-es's official PostgreSQL event store (postgres-es) running Berth's own
//! server aggregate, in a database of its own on the same server, with the schema its
//! README prescribes.

use std::collections::BTreeMap;

use berth_domain::server::{RestartPolicy, Server, ServerCommand};
use cqrs_es::AggregateError;
use postgres_es::{postgres_cqrs, PostgresCqrs};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::workload;

/// postgres-es's `db/init.sql`: its events and snapshots tables.
const SCHEMA: &str = "
CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    payload        json NOT NULL,
    metadata       json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots (
    aggregate_type   text NOT NULL,
    aggregate_id     text NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);";

/// Berth's server aggregate on postgres-es.
pub struct PeerStore {
    cqrs: PostgresCqrs<Server>,
}

impl PeerStore {
    /// Creates postgres-es's tables in the (empty) database at `uri` and a pool of
    /// `connections`.
    pub async fn connect(uri: &str, connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect(uri)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self {
            cqrs: postgres_cqrs(pool, vec![], ()),
        })
    }

    /// Creates server `n` of `catalog_id`; returns its id.
    pub async fn create_server(&self, catalog_id: Uuid, n: usize) -> anyhow::Result<String> {
        let id = Uuid::now_v7().to_string();
        let new = workload::new_server(catalog_id, n);
        let command = ServerCommand::Create {
            owner: format!("user:{}", workload::USER),
            catalog_id,
            catalog_version: 1,
            schema: workload::schema(),
            name: new.name,
            config: new.config,
            secrets: BTreeMap::new(),
            restart_policy: RestartPolicy::Never,
        };
        self.cqrs
            .execute_with_metadata(&id, command, workload::metadata().to_map())
            .await?;
        Ok(id)
    }

    /// Runs the `n`-th config change on server `id`, trying again (as Berth's command
    /// bus does, at most `attempts` times) when a concurrent writer won the race.
    /// Returns how many tries were lost to conflicts.
    pub async fn update(&self, id: &str, n: u64, attempts: u32) -> anyhow::Result<u32> {
        let mut lost = 0;
        loop {
            let result = self
                .cqrs
                .execute_with_metadata(
                    id,
                    workload::update_command(n),
                    workload::metadata().to_map(),
                )
                .await;
            match result {
                Ok(()) => return Ok(lost),
                Err(AggregateError::AggregateConflict) if lost + 1 < attempts => lost += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
