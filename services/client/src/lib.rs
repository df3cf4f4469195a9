//! Typed HMS API: the request/response models every service publishes, and one HTTP client
//! that `hmsctl`, the services' calls to each other, the tests and the load generator share.
//!
//! Models are the wire contract (API.md): `snake_case` fields, RFC 3339 UTC times, money as
//! a decimal string. A change here is a change to the public API.

pub mod client;
pub mod contract;
pub mod error;
pub mod models;
pub mod money;
pub mod schema;
pub mod service;
pub mod time;

pub use client::{HmsClient, ServiceUrls};
pub use error::{ClientError, ErrorBody};
pub use money::Money;
pub use service::Service;
