//! Query strings of console pages: the API's own query structs, read the API's way,
//! except that empty fields (a filter form left blank) count as absent.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use serde::de::DeserializeOwned;

use crate::console::caller::ConsoleError;
use crate::http::extract::parse_query;

/// `T` from the query string, blanks left out.
#[derive(Debug)]
pub struct ConsoleQuery<T>(pub T);

/// The query string without its empty parameters (and without `page`, which links set).
pub fn filters_of(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(name, value)| !value.is_empty() && name != "page")
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

/// The value `filters` give `name`, if any.
pub fn filter_value(filters: &[(String, String)], name: &str) -> Option<String> {
    filters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// A link to page `page` of `path` with the same filters.
pub fn page_link(path: &str, filters: &[(String, String)], page: i64) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(filters);
    query.append_pair("page", &page.to_string());
    format!("{path}?{}", query.finish())
}

impl<T: DeserializeOwned> FromRequest for ConsoleQuery<T> {
    type Error = ConsoleError;
    type Future = Ready<Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let kept: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                form_urlencoded::parse(req.query_string().as_bytes())
                    .filter(|(_, value)| !value.is_empty()),
            )
            .finish();
        ready(parse_query(&kept).map(ConsoleQuery).map_err(Into::into))
    }
}
