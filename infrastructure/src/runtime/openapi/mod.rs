//! Registered HTTP APIs, served by Berth itself: the operations of an entry's OpenAPI
//! document are the tools of its servers, and a tool call is an HTTP request to the API.

pub mod address;
pub mod call;
