//! Port's self-service actions, executed the way Ocean's actions processor does for a
//! self-hosted integration: poll Port for pending runs of this installation
//! (`claim-pending`), acknowledge each before acting on it, run it against Azure DevOps, and
//! report back on the run (logs, link, external id, status).
//!
//! It lives in ingest because ingest owns every Azure DevOps call, and a run's Port bookkeeping
//! must follow the Azure DevOps call that starts it without a queue in between (see
//! docs/design.md, "Actions"). The actions are `trigger_pipeline` ([`trigger_pipeline`]),
//! whose completion arrives as a service hook ([`completion`]), and the pull-request actions
//! ([`pull_requests`], inputs in [`pull_request_inputs`]), which end when their one change is
//! made. [`inputs`] reads inputs as Port sends them, [`target`] finds the organization and
//! project they name.

pub mod completion;
pub mod inputs;
pub mod port_runs;
pub mod pull_request_inputs;
pub mod pull_requests;
pub mod target;
pub mod trigger_pipeline;
pub mod worker;

use tokio_util::sync::CancellationToken;

use crate::ado::AdoClient;
use adoport_shared::config::Settings;
use adoport_shared::port::PortError;
use adoport_shared::port::retry::classify_status;
use completion::CompletionContext;

pub use port_runs::{ActionRun, PortRuns};
pub use worker::ActionWorker;

/// Why an action could not be done; the text is reported on the Port run.
#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    /// The run's inputs name something that does not exist, or are malformed.
    #[error("{0}")]
    Input(String),
    /// Azure DevOps failed; the text says whether anything may have started.
    #[error("{0}")]
    Ado(String),
    #[error("Port answered HTTP {status} to {request}: {body}")]
    Port {
        request: String,
        status: u16,
        body: String,
    },
    #[error("cannot reach Port at {url}: {detail} (check OCEAN__PORT__BASE_URL)")]
    PortUnreachable { url: String, detail: String },
    /// Port refused the credentials, or answered something its API does not document.
    #[error(transparent)]
    PortClient(PortError),
    #[error("actions cannot start: {0}")]
    Setup(String),
}

impl ActionsError {
    /// Whether the same call may succeed later (by the shared Port retry classifier).
    pub fn is_transient(&self) -> bool {
        match self {
            ActionsError::PortUnreachable { .. } => true,
            ActionsError::Port { status, .. } => classify_status(*status).is_retryable(),
            _ => false,
        }
    }
}

impl From<PortError> for ActionsError {
    fn from(error: PortError) -> Self {
        match error {
            PortError::Status {
                request,
                status,
                excerpt,
                ..
            } => ActionsError::Port {
                request,
                status,
                body: excerpt,
            },
            PortError::Transport { url, source, .. } => ActionsError::PortUnreachable {
                url,
                detail: source.to_string(),
            },
            other => ActionsError::PortClient(other),
        }
    }
}

/// The Azure DevOps organizations actions may run in, one client each.
#[derive(Clone)]
pub struct Organizations {
    clients: Vec<AdoClient>,
}

impl std::fmt::Debug for Organizations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Organizations {
    pub fn new(clients: Vec<AdoClient>) -> Self {
        Self { clients }
    }

    pub fn clients(&self) -> &[AdoClient] {
        &self.clients
    }

    /// The organizations' names, for messages.
    pub fn names(&self) -> Vec<String> {
        self.clients
            .iter()
            .map(|c| c.organization_name().into())
            .collect()
    }

    /// The client whose organization URL starts `link` (a run's web link), else the only one.
    pub fn for_link(&self, link: Option<&str>) -> Option<&AdoClient> {
        let by_link = link.and_then(|link| {
            self.clients.iter().find(|c| {
                let base = c
                    .organization_url()
                    .trim_end_matches('/')
                    .to_ascii_lowercase();
                let link = link.to_ascii_lowercase();
                link.strip_prefix(&base)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
        });
        by_link.or(match self.clients.as_slice() {
            [only] => Some(only),
            _ => None,
        })
    }
}

/// When `OCEAN__ACTIONS_PROCESSOR__ENABLED` is true: starts the executor on `clients` (one per
/// configured organization) and returns what the webhook receiver needs to report completions.
pub fn start(
    settings: &Settings,
    clients: Vec<AdoClient>,
    shutdown: CancellationToken,
) -> Result<Option<CompletionContext>, ActionsError> {
    let processor = &settings.ocean.actions_processor;
    if !processor.enabled {
        return Ok(None);
    }
    let access = settings.port_access().map_err(|e| {
        ActionsError::Setup(format!(
            "OCEAN__ACTIONS_PROCESSOR__ENABLED is true, so ingest needs Port's credentials: {e}"
        ))
    })?;
    let port = PortRuns::new(access)?.stopping_on(shutdown.clone());
    let organizations = Organizations::new(clients);
    let worker = ActionWorker::new(port.clone(), organizations.clone(), processor.clone());
    tokio::spawn(worker.run(shutdown));
    Ok(Some(CompletionContext {
        port,
        organizations,
    }))
}
