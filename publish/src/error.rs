//! `PublishError`: every way a write to Port (or the publish worker around it) can fail, one
//! variant per case a caller acts on; the Port request's own failures are the shared client's
//! [`PortError`]. Retry decisions on these errors live in [`crate::retry`].

use adoport_shared::bus::BusError;
use adoport_shared::config::ConfigError;
use adoport_shared::messages::DecodeError;
use adoport_shared::port::PortError;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A request to Port failed: refused credentials, an HTTP status, no answer, an unreadable
    /// answer, a client that cannot be built (see [`PortError`]).
    #[error(transparent)]
    Port(#[from] PortError),

    /// Publish itself cannot start (its mapping, its resources).
    #[error("cannot set up the Port client: {0}")]
    Setup(String),

    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    Bus(#[from] BusError),

    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl PublishError {
    /// Port refused the credentials: fatal to the worker (see [`PortError::Auth`]).
    pub fn is_auth(&self) -> bool {
        matches!(self, PublishError::Port(error) if error.is_auth())
    }
}
