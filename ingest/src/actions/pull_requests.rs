//! The pull-request actions (`create_pull_request`, `update_pull_request`,
//! `complete_pull_request`, `abandon_pull_request`, `add_pull_request_comment`): find the
//! organization, project, repository and pull request the inputs name, make the one Git API
//! change, and end the Port run with a link to the pull request (or the thread).
//!
//! Each change is sent once, after Port acknowledged the run to this executor: a request
//! without a clear answer fails the run with a message to check the pull request before
//! running the action again. Azure DevOps' refusals are reported with their HTTP status and
//! message (`TF401181: The pull request cannot be edited due to its state.`).

use serde_json::{Value, json};

use super::port_runs::{ActionRun, PortRuns};
use super::pull_request_inputs::{self as pr_inputs, COMPLETE, CREATE, PullRequestRun, Request};
use super::target::{ado_message, resolve_project};
use super::{ActionsError, Organizations};
use crate::ado::{AdoClient, AdoError, ProjectId, RepositoryId, encode_segment};

/// The repository a run works in.
struct Place<'a> {
    action: &'static str,
    client: &'a AdoClient,
    project_id: ProjectId,
    project_name: String,
    repository_id: RepositoryId,
    repository_name: String,
    repository: Value,
}

impl Place<'_> {
    /// The pull request's page in Azure DevOps' web UI.
    fn web_link(&self, pull_request_id: u64) -> String {
        format!(
            "{}/{}/_git/{}/pullrequest/{pull_request_id}",
            self.client.organization_url().trim_end_matches('/'),
            encode_segment(&self.project_name),
            encode_segment(&self.repository_name)
        )
    }

    fn describe(&self, pull_request_id: u64) -> String {
        format!(
            "pull request {pull_request_id} in repository '{}' of project '{}'",
            self.repository_name, self.project_name
        )
    }

    /// The error for a write Azure DevOps did not do: its refusal (status and message), or,
    /// without a clear answer, a warning that it may have happened.
    fn refused(&self, doing: &str, what: &str, error: AdoError) -> ActionsError {
        let action = self.action;
        if error.is_transient() {
            return ActionsError::Ado(format!(
                "{action}: the request to {doing} {what} failed ({error}); it is not repeated automatically because it may have taken effect: check {what} in Azure DevOps before running the action again"
            ));
        }
        match error.status() {
            Some(status) => ActionsError::Ado(format!(
                "{action}: Azure DevOps refused to {doing} {what} (HTTP {status}): {}",
                ado_message(&error)
            )),
            None => ActionsError::Ado(format!(
                "{action}: Azure DevOps did not {doing} {what}: {error}"
            )),
        }
    }

    /// The pull request the run names, read now (its status and source commit).
    async fn pull_request(&self, pull_request_id: u64) -> Result<Value, ActionsError> {
        match self
            .client
            .repository_pull_request(&self.project_id, &self.repository_id, pull_request_id)
            .await
        {
            Ok(pr) => Ok(pr),
            Err(AdoError::NotFound { .. }) => Err(ActionsError::Input(format!(
                "{}: pull request {pull_request_id} was not found in repository '{}' of project '{}'; fix the \"pullRequestId\" input",
                self.action, self.repository_name, self.project_name
            ))),
            Err(e) => Err(ActionsError::Ado(format!(
                "{}: could not read {}: {e}",
                self.action,
                self.describe(pull_request_id)
            ))),
        }
    }
}

/// Whether `action_type` is one of the pull-request actions.
pub fn handles(action_type: &str) -> bool {
    PullRequestRun::action_of(action_type).is_some()
}

fn with_action(action: &str, error: ActionsError) -> ActionsError {
    match error {
        ActionsError::Input(text) => ActionsError::Input(format!("{action}: {text}")),
        ActionsError::Ado(text) => ActionsError::Ado(format!("{action}: {text}")),
        other => other,
    }
}

/// Finds the repository the inputs name in the organization and project they name.
async fn place<'a>(
    organizations: &'a Organizations,
    parsed: &PullRequestRun,
) -> Result<Place<'a>, ActionsError> {
    let action = parsed.action;
    let target = &parsed.target;
    let (client, project) = resolve_project(
        organizations,
        &target.project,
        target.organization.as_deref(),
    )
    .await
    .map_err(|e| with_action(action, e))?;
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(String::from);
    let project_id = ProjectId::new(text(&project, "id").unwrap_or_default());
    let project_name = text(&project, "name").unwrap_or_else(|| target.project.to_string());
    let repository = match client
        .project_repository(&project_id, &target.repository)
        .await
    {
        Ok(repository) => repository,
        Err(AdoError::NotFound { .. }) => {
            return Err(ActionsError::Input(format!(
                "{action}: repository {:?} was not found in project '{project_name}'; the \"repository\" input takes a repository's name or id",
                target.repository
            )));
        }
        Err(e) => {
            return Err(ActionsError::Ado(format!(
                "{action}: could not read repository {:?} of project '{project_name}': {e}",
                target.repository
            )));
        }
    };
    let repository_name = text(&repository, "name").unwrap_or_else(|| target.repository.clone());
    if repository.get("isDisabled").and_then(Value::as_bool) == Some(true) {
        return Err(ActionsError::Input(format!(
            "{action}: repository '{repository_name}' of project '{project_name}' is disabled in Azure DevOps; enable it (Project settings → Repositories) or name another in the \"repository\" input"
        )));
    }
    Ok(Place {
        action,
        client,
        project_id,
        project_name,
        repository_id: RepositoryId::new(text(&repository, "id").unwrap_or_default()),
        repository_name,
        repository,
    })
}

/// Executes a pull-request action run (already acknowledged to this executor) and reports its
/// success on the Port run; errors are for the caller to report.
pub async fn execute(
    port: &PortRuns,
    organizations: &Organizations,
    run: &ActionRun,
) -> Result<(), ActionsError> {
    let Some(action) = PullRequestRun::action_of(&run.action_type) else {
        return Err(ActionsError::Input(format!(
            "{:?} is not a pull-request action",
            run.action_type
        )));
    };
    let parsed = PullRequestRun::parse(action, &run.properties)
        .map_err(|e| ActionsError::Input(e.to_string()))?;
    let place = place(organizations, &parsed).await?;
    port.log(
        &run.id,
        &format!(
            "{action}: repository '{}' of project '{}' ({})",
            place.repository_name,
            place.project_name,
            place.client.organization_name()
        ),
    )
    .await?;
    let (summary, link) = match &parsed.request {
        Request::Create { .. } => create(&place, &parsed.request).await?,
        Request::Update {
            pull_request_id, ..
        } => update(&place, *pull_request_id, &parsed.request).await?,
        Request::Complete {
            pull_request_id, ..
        } => complete(&place, *pull_request_id, &parsed.request).await?,
        Request::Abandon { pull_request_id } => abandon(&place, *pull_request_id).await?,
        Request::Comment {
            pull_request_id,
            comment,
            status,
        } => add_comment(&place, *pull_request_id, comment, status).await?,
    };
    port.patch(&run.id, &json!({"link": link})).await?;
    tracing::info!(run_id = %run.id, action, %link, "pull-request action done");
    port.report_completed(&run.id, true, &summary).await
}

fn pull_request_id_of(action: &str, pr: &Value) -> Result<u64, ActionsError> {
    pr.get("pullRequestId").and_then(Value::as_u64).ok_or_else(|| {
        ActionsError::Ado(format!(
            "{action}: Azure DevOps answered without a pullRequestId; check the repository's pull requests"
        ))
    })
}

async fn create(place: &Place<'_>, request: &Request) -> Result<(String, String), ActionsError> {
    let Request::Create {
        source_branch,
        target_branch,
        title,
        ..
    } = request
    else {
        return Err(ActionsError::Input(format!(
            "{CREATE}: not a create request"
        )));
    };
    let target = match target_branch {
        Some(branch) => branch.clone(),
        None => place
            .repository
            .get("defaultBranch")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| {
                ActionsError::Input(format!(
                    "{CREATE}: repository '{}' has no default branch (it is empty); give the \"targetBranch\" input",
                    place.repository_name
                ))
            })?,
    };
    let body = pr_inputs::create_body(request, &target);
    let what = format!(
        "a pull request from {} into {} in repository '{}'",
        pr_inputs::ref_name(source_branch),
        pr_inputs::ref_name(&target),
        place.repository_name
    );
    let created = place
        .client
        .create_pull_request(&place.project_id, &place.repository_id, &body)
        .await
        .map_err(|e| place.refused("create", &what, e))?;
    let id = pull_request_id_of(CREATE, &created)?;
    let link = place.web_link(id);
    Ok((
        format!("Pull request {id} created: {title:?} ({what}): {link}"),
        link,
    ))
}

async fn update(
    place: &Place<'_>,
    id: u64,
    request: &Request,
) -> Result<(String, String), ActionsError> {
    place.pull_request(id).await?;
    let what = place.describe(id);
    let mut changed = Vec::new();
    if let Some(body) = pr_inputs::update_body(request) {
        place
            .client
            .update_pull_request(&place.project_id, &place.repository_id, id, &body)
            .await
            .map_err(|e| place.refused("update", &what, e))?;
        if let Value::Object(fields) = &body {
            changed.extend(fields.keys().cloned());
        }
    }
    if let Request::Update { reviewers, .. } = request
        && !reviewers.is_empty()
    {
        place
            .client
            .add_pull_request_reviewers(
                &place.project_id,
                &place.repository_id,
                id,
                &pr_inputs::reviewer_refs(reviewers),
            )
            .await
            .map_err(|e| place.refused("add reviewers to", &what, e))?;
        changed.push(format!("{} reviewer(s) added", reviewers.len()));
    }
    let link = place.web_link(id);
    Ok((
        format!("Pull request {id} updated ({}): {link}", changed.join(", ")),
        link,
    ))
}

async fn complete(
    place: &Place<'_>,
    id: u64,
    request: &Request,
) -> Result<(String, String), ActionsError> {
    let current = place.pull_request(id).await?;
    let status = current
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let source = current
        .pointer("/lastMergeSourceCommit/commitId")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ActionsError::Ado(format!(
                "{COMPLETE}: {} has no lastMergeSourceCommit to complete it at (it is {status}); check it in Azure DevOps",
                place.describe(id)
            ))
        })?;
    let body = pr_inputs::complete_body(request, source);
    let what = format!("{} (it is {status})", place.describe(id));
    place
        .client
        .update_pull_request(&place.project_id, &place.repository_id, id, &body)
        .await
        .map_err(|e| place.refused("complete", &what, e))?;
    let strategy = body
        .pointer("/completionOptions/mergeStrategy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target = current
        .get("targetRefName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let link = place.web_link(id);
    Ok((
        format!("Pull request {id} completed into {target} ({strategy}): {link}"),
        link,
    ))
}

async fn abandon(place: &Place<'_>, id: u64) -> Result<(String, String), ActionsError> {
    let current = place.pull_request(id).await?;
    let status = current
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let what = format!("{} (it is {status})", place.describe(id));
    place
        .client
        .update_pull_request(
            &place.project_id,
            &place.repository_id,
            id,
            &json!({"status": "abandoned"}),
        )
        .await
        .map_err(|e| place.refused("abandon", &what, e))?;
    let link = place.web_link(id);
    Ok((format!("Pull request {id} abandoned: {link}"), link))
}

async fn add_comment(
    place: &Place<'_>,
    id: u64,
    comment: &str,
    status: &str,
) -> Result<(String, String), ActionsError> {
    place.pull_request(id).await?;
    let what = place.describe(id);
    let thread = place
        .client
        .create_pull_request_thread(
            &place.project_id,
            &place.repository_id,
            id,
            &pr_inputs::thread_body(comment, status),
        )
        .await
        .map_err(|e| place.refused("add a comment thread to", &what, e))?;
    let thread_id = thread.get("id").and_then(Value::as_u64).unwrap_or_default();
    let link = format!("{}?discussionId={thread_id}", place.web_link(id));
    Ok((
        format!("Comment thread {thread_id} added to pull request {id}: {link}"),
        link,
    ))
}
