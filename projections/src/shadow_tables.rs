//! Empty copies of read-model tables in a schema of their own, with the same columns,
//! defaults, constraints and indexes under the same names, so that a copy moved into
//! `public` later is indistinguishable from the table it replaces.
//!
//! Non-unique indexes are given back as statements to run once the copy is filled: one sorted build of each index costs a fraction of maintaining it row by
//! row while a million events go in, and no projector's writes need them.

use berth_infrastructure::StoreError;
use deadpool_postgres::GenericClient;

/// `name` quoted as an SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const CONSTRAINTS: &str =
    "SELECT c.conname::text, pg_get_constraintdef(c.oid) FROM pg_constraint c \
     WHERE c.conrelid = to_regclass($1) AND c.contype IN ('p', 'u', 'c', 'x', 'f') \
     ORDER BY c.contype = 'f', c.conname";

// Indexes that do not back a constraint (those come with the constraint).
const INDEXES: &str = "SELECT i.relname::text, pg_get_indexdef(x.indexrelid) \
     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
     WHERE x.indrelid = to_regclass($1) \
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) \
     ORDER BY i.relname";

/// What a copy still lacks while it is being filled: statements to run once it is full.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    /// `ALTER TABLE … ADD CONSTRAINT …`: each locks its table, so one at a time, first.
    pub constraints: Vec<String>,
    /// `CREATE INDEX …`: any number may run at once on one table.
    pub indexes: Vec<String>,
}

impl Deferred {
    /// Adds `other`'s statements to these.
    pub(crate) fn extend(&mut self, other: Deferred) {
        self.constraints.extend(other.constraints);
        self.indexes.extend(other.indexes);
    }
}

/// Creates `schema.table` shaped like `public.table`, empty, with its constraints and
/// unique indexes (none when `append_only`); returns the statements adding the rest, for
/// once it is filled. Constraints and indexes keep their names: names are unique per
/// schema, and the copy lives in another.
pub(crate) async fn clone_table(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    append_only: bool,
) -> Result<Deferred, StoreError> {
    let live = format!("public.{}", ident(table));
    let copy = format!("{}.{}", ident(schema), ident(table));
    client
        .batch_execute(&format!(
            "CREATE TABLE {copy} (LIKE {live} INCLUDING DEFAULTS INCLUDING GENERATED \
             INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)"
        ))
        .await?;
    let mut later = Deferred::default();
    for row in client.query(CONSTRAINTS, &[&live]).await? {
        let (name, definition): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let add = format!(
            "ALTER TABLE {copy} ADD CONSTRAINT {} {definition}",
            ident(&name)
        );
        if append_only {
            later.constraints.push(add);
        } else {
            client.batch_execute(&add).await?;
        }
    }
    for row in client.query(INDEXES, &[&live]).await? {
        let (name, definition): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        // `CREATE [UNIQUE] INDEX name ON public.table USING …`: keep everything from
        // USING on (method, keys, opclasses, predicate), aim it at the copy.
        let using = definition.find(" USING ").ok_or_else(|| {
            StoreError::Malformed(format!("index definition without USING: {definition}"))
        })?;
        let unique = if definition.starts_with("CREATE UNIQUE INDEX") {
            "UNIQUE "
        } else {
            ""
        };
        let create = format!(
            "CREATE {unique}INDEX {} ON {copy}{}",
            ident(&name),
            &definition[using..]
        );
        // A unique index may be what an upsert's ON CONFLICT relies on: it is needed
        // from the first row, unless the projector only appends.
        if unique.is_empty() || append_only {
            later.indexes.push(create);
        } else {
            client.batch_execute(&create).await?;
        }
    }
    Ok(later)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("servers"), "\"servers\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
