//! Paging and filtering shared by the list queries: pages, `LIKE` patterns, and a
//! `WHERE` clause assembled from fixed fragments with bound parameters.

use berth_infrastructure::StoreError;
use deadpool_postgres::GenericClient;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa::ToSchema;

/// Which page of a list to answer. The caller validates it: `page >= 1` and
/// `1 <= page_size <= 500`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: i64,
    /// Items per page.
    pub page_size: i64,
}

impl PageRequest {
    /// Rows to skip before this page.
    pub fn offset(&self) -> i64 {
        (self.page.max(1) - 1).saturating_mul(self.page_size)
    }
}

/// One page of a list, with the number of items in the whole list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items the whole list holds.
    pub total: i64,
    /// This page's number (from 1).
    pub page: i64,
    /// Items per page.
    pub page_size: i64,
}

/// A case-insensitive substring pattern for `ILIKE … ESCAPE '\'` matching `text`
/// literally, or `None` when `text` is absent or empty.
pub(crate) fn contains_pattern(text: Option<&str>) -> Option<String> {
    let text = text.filter(|t| !t.is_empty())?;
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Some(pattern)
}

/// Parameters of a query, boxed so filters can add them one by one.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// A `WHERE` clause made of fixed SQL fragments. Each fragment names its one parameter
/// `$?` (as often as it needs it); it is numbered when pushed, so input only ever
/// travels as a bound parameter.
#[derive(Default)]
pub(crate) struct Filters {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Filters {
    /// Adds `fragment` with `value` bound to its `$?` when `value` is present.
    pub(crate) fn push<T: ToSql + Sync + Send + 'static>(
        &mut self,
        fragment: &'static str,
        value: Option<T>,
    ) {
        if let Some(value) = value {
            self.params.push(Box::new(value));
            let placeholder = format!("${}", self.params.len());
            self.clauses.push(fragment.replace("$?", &placeholder));
        }
    }

    /// ` WHERE a AND b …`, or nothing without filters.
    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The number the next bound parameter will have.
    pub(crate) fn next_placeholder(&self) -> usize {
        self.params.len() + 1
    }

    /// The bound parameters, in placeholder order, followed by `extra`.
    pub(crate) fn params<'a>(
        &'a self,
        extra: &[&'a (dyn ToSql + Sync)],
    ) -> Vec<&'a (dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .chain(extra.iter().copied())
            .collect()
    }
}

/// What a list query reads: fixed SQL, never input.
pub(crate) struct ListQuery {
    /// The selected columns.
    pub columns: &'static str,
    /// The table (or join) read.
    pub from: &'static str,
    /// The `ORDER BY` expression, ending in a unique column so pages are stable.
    pub order: &'static str,
}

impl ListQuery {
    /// Counts the rows matching `filters` and reads the requested page of them, both on
    /// one connection without waiting for each other.
    pub(crate) async fn run<C, T>(
        &self,
        client: &C,
        filters: &Filters,
        page: PageRequest,
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError>
    where
        C: GenericClient,
    {
        let conditions = filters.sql();
        let count_sql = format!("SELECT count(*) FROM {}{conditions}", self.from);
        let n = filters.next_placeholder();
        let page_sql = format!(
            "SELECT {} FROM {}{conditions} ORDER BY {} LIMIT ${n} OFFSET ${}",
            self.columns,
            self.from,
            self.order,
            n + 1
        );
        let (count_statement, page_statement) = tokio::try_join!(
            client.prepare_cached(&count_sql),
            client.prepare_cached(&page_sql)
        )?;
        let limit = page.page_size;
        let offset = page.offset();
        let count_params = filters.params(&[]);
        let page_params = filters.params(&[&limit, &offset]);
        let (count, rows) = tokio::try_join!(
            client.query_one(&count_statement, &count_params),
            client.query(&page_statement, &page_params)
        )?;
        Ok(Page {
            items: rows.iter().map(map).collect::<Result<_, _>>()?,
            total: count.try_get(0)?,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// [`ListQuery::run`] for filters whose rows the `ORDER BY` index may find only late:
    /// walking it from the top, PostgreSQL expects matches to be spread evenly, but the
    /// rows of a time window deep in the past all come after hundreds of thousands of
    /// newer ones. So this counts first and, when at most `few` rows match, reads and
    /// sorts just those (a cost bounded by `few`); more matches are read as `run` reads
    /// them. The page is the same either way.
    pub(crate) async fn run_counted<C, T>(
        &self,
        client: &C,
        filters: &Filters,
        page: PageRequest,
        few: i64,
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError>
    where
        C: GenericClient,
    {
        let conditions = filters.sql();
        let count_sql = format!("SELECT count(*) FROM {}{conditions}", self.from);
        let count_statement = client.prepare_cached(&count_sql).await?;
        let total: i64 = client
            .query_one(&count_statement, &filters.params(&[]))
            .await?
            .try_get(0)?;
        let n = filters.next_placeholder();
        // `OFFSET 0` keeps the subquery from being merged into the outer one, so it is
        // planned on its own: found by the filters' own indexes, then sorted.
        let from = if total <= few {
            format!(
                "(SELECT {} FROM {}{conditions} OFFSET 0) AS matching",
                self.columns, self.from
            )
        } else {
            format!("{}{conditions}", self.from)
        };
        let page_sql = format!(
            "SELECT {} FROM {from} ORDER BY {} LIMIT ${n} OFFSET ${}",
            self.columns,
            self.order,
            n + 1
        );
        let page_statement = client.prepare_cached(&page_sql).await?;
        let limit = page.page_size;
        let offset = page.offset();
        let rows = client
            .query(&page_statement, &filters.params(&[&limit, &offset]))
            .await?;
        Ok(Page {
            items: rows.iter().map(map).collect::<Result<_, _>>()?,
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_input_literally() {
        assert_eq!(contains_pattern(Some("git")).as_deref(), Some("%git%"));
        assert_eq!(
            contains_pattern(Some("50%_a\\b")).as_deref(),
            Some("%50\\%\\_a\\\\b%")
        );
        assert_eq!(contains_pattern(Some("")), None);
        assert_eq!(contains_pattern(None), None);
    }

    #[test]
    fn filters_number_their_parameters_in_order() {
        let mut f = Filters::default();
        assert_eq!(f.sql(), "");
        f.push("state = $?", Some("running".to_string()));
        f.push("owner = $?", None::<String>);
        f.push(
            "(name ILIKE $? OR description ILIKE $?)",
            Some("%a%".to_string()),
        );
        assert_eq!(
            f.sql(),
            " WHERE state = $1 AND (name ILIKE $2 OR description ILIKE $2)"
        );
        assert_eq!(f.next_placeholder(), 3);
        assert_eq!(f.params(&[&1_i64]).len(), 3);
    }

    #[test]
    fn offsets_start_at_zero() {
        assert_eq!(
            PageRequest {
                page: 1,
                page_size: 50
            }
            .offset(),
            0
        );
        assert_eq!(
            PageRequest {
                page: 3,
                page_size: 20
            }
            .offset(),
            40
        );
    }
}
