//! Counting a transaction's calls of PL/pgSQL functions (trigger functions included), to
//! show which triggers an insert ran.

use deadpool_postgres::Transaction;

/// Starts counting `tx`'s calls of PL/pgSQL functions.
pub async fn count_in(tx: &Transaction<'_>) {
    tx.batch_execute("SET LOCAL track_functions = 'pl'")
        .await
        .expect("tracking function calls");
}

/// How many times `tx` has called the function `name` since [`count_in`].
pub async fn calls(tx: &Transaction<'_>, name: &str) -> i64 {
    tx.query_one(
        "SELECT coalesce(pg_stat_get_xact_function_calls($1::text::regproc), 0)",
        &[&name],
    )
    .await
    .expect("the calls")
    .get(0)
}
