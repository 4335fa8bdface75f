//! Which configured organization and which project an action run's inputs name (the
//! `organization` and `project` inputs every action takes), and the Azure DevOps message of
//! an error answer, for the text reported on the run.

use serde_json::Value;

use super::{ActionsError, Organizations};
use crate::ado::{AdoClient, AdoError, ProjectId};

/// The client of the organization and the project (`GET _apis/projects/{id}`) the inputs
/// name: the organization by name or URL when given, otherwise the one that has the project.
pub async fn resolve_project<'a>(
    organizations: &'a Organizations,
    project: &ProjectId,
    organization: Option<&str>,
) -> Result<(&'a AdoClient, Value), ActionsError> {
    let candidates: Vec<&AdoClient> = match organization {
        Some(wanted) => {
            let wanted_trimmed = wanted.trim_end_matches('/');
            let found: Vec<&AdoClient> = organizations
                .clients()
                .iter()
                .filter(|c| {
                    c.organization_url().eq_ignore_ascii_case(wanted_trimmed)
                        || c.organization_name().as_str().eq_ignore_ascii_case(wanted)
                })
                .collect();
            if found.is_empty() {
                return Err(ActionsError::Input(format!(
                    "organization {wanted:?} is not one this integration is configured for ({}); fix the \"organization\" input",
                    organizations.names().join(", ")
                )));
            }
            found
        }
        None => organizations.clients().iter().collect(),
    };
    let mut found = Vec::new();
    for client in candidates {
        match client.project(project).await {
            Ok(value) => found.push((client, value)),
            Err(AdoError::NotFound { .. }) => {}
            Err(e) => {
                return Err(ActionsError::Ado(format!(
                    "could not look up project {project:?} in {}: {e}",
                    client.organization_url()
                )));
            }
        }
    }
    match found.len() {
        0 => Err(ActionsError::Input(format!(
            "project {project:?} was not found in {}; the \"project\" input takes a project's name or id",
            organizations.names().join(", ")
        ))),
        1 => Ok(found.remove(0)),
        _ => Err(ActionsError::Input(format!(
            "project {project:?} exists in several organizations ({}); name one in the \"organization\" input",
            found
                .iter()
                .map(|(c, _)| c.organization_name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The Azure DevOps error message in an error answer's body (`TF401181: …`), or the error's
/// own text when the body is not Azure DevOps' error JSON.
pub fn ado_message(error: &AdoError) -> String {
    match error {
        AdoError::Status { body, .. } | AdoError::Exhausted { body, .. } => {
            message_in(body).unwrap_or_else(|| error.to_string())
        }
        AdoError::NotFound { message, .. } if !message.is_empty() => message.clone(),
        other => other.to_string(),
    }
}

/// The `message` of an Azure DevOps error body, even from an excerpt that cuts the JSON short
/// after it (the client keeps the first few hundred characters of a body).
fn message_in(body: &str) -> Option<String> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return value
            .get("message")
            .and_then(Value::as_str)
            .map(String::from);
    }
    let start = body.find("\"message\"")? + "\"message\"".len();
    let rest = body[start..].trim_start().strip_prefix(':')?.trim_start();
    serde_json::Deserializer::from_str(rest)
        .into_iter::<String>()
        .next()?
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_is_read_from_a_cut_body() {
        let cut = r#"{"$id":"1","innerException":null,"message":"TF401181: The pull request cannot be edited due to its state.","typeName":"Microsoft.TeamFoundation.Git.Ser"#;
        assert_eq!(
            super::message_in(cut).as_deref(),
            Some("TF401181: The pull request cannot be edited due to its state.")
        );
        assert_eq!(super::message_in("<html>bad gateway</html>"), None);
    }
}
