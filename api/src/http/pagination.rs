//! `page` and `page_size` query parameters, checked once for every list.

use berth_projections::PageRequest;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::problem::{ApiError, ProblemField};

/// The query of a list that takes nothing but a page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Items per page, 1 to 500 (default 50).
    pub page_size: Option<i64>,
}

impl PageQuery {
    /// The page asked for, checked.
    pub fn request(&self) -> Result<PageRequest, ApiError> {
        page_request(self.page, self.page_size)
    }
}

/// Items per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// The most items a page may hold.
pub const MAX_PAGE_SIZE: i64 = 500;

/// Checks `page` (from 1) and `page_size` (1 to 500, default 50), naming every field
/// out of range.
pub fn page_request(page: Option<i64>, page_size: Option<i64>) -> Result<PageRequest, ApiError> {
    let page = page.unwrap_or(1);
    let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    let mut errors = Vec::new();
    if page < 1 {
        errors.push(ProblemField {
            field: "page".into(),
            message: "must be at least 1".into(),
        });
    }
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        errors.push(ProblemField {
            field: "page_size".into(),
            message: format!("must be between 1 and {MAX_PAGE_SIZE}"),
        });
    }
    if errors.is_empty() {
        Ok(PageRequest { page, page_size })
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Every item of a paged list, read a page of [`MAX_PAGE_SIZE`] at a time (for the
/// command line, which prints whole lists).
pub async fn every_item<T, E, Fut>(mut read: impl FnMut(PageRequest) -> Fut) -> Result<Vec<T>, E>
where
    Fut: std::future::Future<Output = Result<berth_projections::Page<T>, E>>,
{
    let mut items = Vec::new();
    for page in 1.. {
        let read = read(PageRequest {
            page,
            page_size: MAX_PAGE_SIZE,
        })
        .await?;
        let done = read.items.len() < usize::try_from(MAX_PAGE_SIZE).unwrap_or(usize::MAX)
            || page.saturating_mul(MAX_PAGE_SIZE) >= read.total;
        items.extend(read.items);
        if done {
            break;
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: Result<PageRequest, ApiError>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(e) => e.problem().errors.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn pages_start_at_one_and_sizes_are_bounded() {
        assert_eq!(
            page_request(None, None).ok(),
            Some(PageRequest {
                page: 1,
                page_size: DEFAULT_PAGE_SIZE
            })
        );
        assert!(page_request(Some(3), Some(500)).is_ok());
        assert_eq!(fields(page_request(Some(1), Some(501))), ["page_size"]);
        assert_eq!(
            fields(page_request(Some(0), Some(0))),
            ["page", "page_size"]
        );
    }
}
