//! The one Port client every role uses: publish's writes, ingest's action-run bookkeeping and
//! the binary's reads all go through [`PortApi`], so sign-in, the token cache and what an
//! answer means for a retry are decided once.
//!
//! - [`auth`]: signing in (`POST /v1/auth/access_token`) and the token cache (renewed before it
//!   expires, and once when Port answers 401);
//! - [`client`]: building URLs and sending a request with the token;
//! - [`answer`]: recording, reading and classifying one answer, a failure as a [`PortError`];
//! - [`retry`]: the classifier (what an answer means: success, retry, retry after Port's wait,
//!   too large, don't retry) and the backoff schedule with its driver, which stops waiting on
//!   shutdown;
//! - [`error`]: [`PortError`], naming the request, the status, a body excerpt and what to do;
//! - [`ids`]: blueprint and entity identifiers as types of their own.
//!
//! What a call means (a bulk upsert, an action run's ack) belongs to the stage that makes it.

pub mod answer;
pub mod auth;
pub mod client;
pub mod error;
pub mod ids;
pub mod retry;

pub use client::PortApi;
pub use error::{PortError, excerpt};
pub use ids::{BlueprintId, EntityId};
pub use retry::{Next, Retry, RetryPolicy, Schedule};
