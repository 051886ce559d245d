//! Empty copies of read-model tables in a schema of their own, with the same columns,
//! defaults, constraints and indexes under the same names, so that a copy moved into
//! `public` later is indistinguishable from the table it replaces.

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

/// Creates `schema.table` shaped like `public.table`, empty. Constraints and indexes keep
/// their names: names are unique per schema, and the copy lives in another one.
pub(crate) async fn clone_table(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<(), StoreError> {
    let live = format!("public.{}", ident(table));
    let copy = format!("{}.{}", ident(schema), ident(table));
    client
        .batch_execute(&format!(
            "CREATE TABLE {copy} (LIKE {live} INCLUDING DEFAULTS INCLUDING GENERATED \
             INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)"
        ))
        .await?;
    for row in client.query(CONSTRAINTS, &[&live]).await? {
        let (name, definition): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        client
            .batch_execute(&format!(
                "ALTER TABLE {copy} ADD CONSTRAINT {} {definition}",
                ident(&name)
            ))
            .await?;
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
        client
            .batch_execute(&format!(
                "CREATE {unique}INDEX {} ON {copy}{}",
                ident(&name),
                &definition[using..]
            ))
            .await?;
    }
    Ok(())
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
