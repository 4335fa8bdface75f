//! GitOps: Port entities described in `port.yml` spec files of repositories (the
//! port-app-config's `specPath`, a path or a list of them; `useDefaultBranch`; `branch`).
//!
//! - On a `git.push` to a repository's tracked branch (its default branch with
//!   `useDefaultBranch`, else `branch`, default `main`), the specs are read at the ref's old
//!   commit and at the branch's current head (not the push's new commit: a late or forged push
//!   must not undo what later pushes did); `file://path` property values are replaced by that
//!   file's content at the same commit (`.json` parsed). The difference is published: new and
//!   changed entities as upserts, removed ones as deletes. Reading both ends takes every commit
//!   in between into account.
//! - On a resync, the specs on the tracked branch of every repository are read and upserted, so
//!   GitOps entities converge without a push.
//! - A spec that does not parse (or names no blueprint/identifier, or a missing `file://`) is
//!   logged and, for a push, sent to the raw dead-letter queue with the repository, file, commit
//!   and parser error (transform dead-letters it); its entities are neither upserted nor
//!   deleted.
//!
//! Entities travel as raw events of the reserved kind [`GITOPS_KIND`]: transform passes them
//! through without the mapping, publish writes them with the GitOps User-Agent.

use serde_json::{Map, Value};

use crate::ado::{
    AdoClient, AdoError, CommitId, Current, ErrorClass, GitVersion, ProjectId, RepositoryId,
};
use crate::kind::Kind;
use crate::kinds::gitops::{SpecEntities, diff, read_specs};
use crate::kinds::text;
use crate::live_events::ReadFailure;
use crate::plan::{GitopsPlan, KindPlan};
use adoport_shared::messages::{GITOPS_KIND, GitopsSpecError, Origin, RawAction, RawEvent};

/// The object id of "no commit" (a created ref's old id).
const ZERO_OBJECT_ID: &str = "0000000000000000000000000000000000000000";

/// The specs at `commit` (none at the zero commit of a created ref).
async fn read_at(
    client: &AdoClient,
    plan: &GitopsPlan,
    project_id: &ProjectId,
    repository_id: &RepositoryId,
    commit: &str,
) -> Result<SpecEntities, AdoError> {
    if commit == ZERO_OBJECT_ID {
        return Ok(SpecEntities::default());
    }
    let version = GitVersion::Commit(CommitId::new(commit));
    read_specs(client, plan, project_id, repository_id, &version).await
}

/// The raw events of the GitOps changes of a `git.push` (whose envelope carried `resource`),
/// for the webhook receiver to publish: the specs
/// at the push's old commit against the specs at the tracked branch's *current head* (what
/// Azure DevOps holds now), so a late, replayed or forged push never deletes an entity the
/// branch still describes, nor brings back an older version of one.
pub async fn on_push(
    plan: &[KindPlan],
    client: &AdoClient,
    delivery_id: &str,
    resource: &Map<String, Value>,
) -> Result<Vec<RawEvent>, ReadFailure> {
    let Some(plan) = GitopsPlan::of(plan) else {
        return Ok(Vec::new());
    };
    let Some(repository) = resource.get("repository") else {
        return Ok(Vec::new());
    };
    let (Some(repository_id), Some(project_id)) = (
        text(repository, "id").map(RepositoryId::new),
        (repository.pointer("/project/id").and_then(Value::as_str)).map(ProjectId::new),
    ) else {
        return Ok(Vec::new());
    };
    let tracked = plan.tracked_ref(repository);
    let Some(update) = resource
        .get("refUpdates")
        .and_then(Value::as_array)
        .and_then(|updates| updates.iter().find(|u| text(u, "name") == Some(&tracked)))
    else {
        return Ok(Vec::new());
    };
    let failed = |e| ReadFailure::new(Kind::Gitops, format!("{repository_id} {tracked}"), e);
    let old = text(update, "oldObjectId").unwrap_or(ZERO_OBJECT_ID);
    // What the push started from; unknown (the repository is gone) is nothing.
    let before = match read_at(client, &plan, &project_id, &repository_id, old).await {
        Err(e) if e.class() == ErrorClass::Gone => SpecEntities::default(),
        other => other.map_err(failed)?,
    };
    let head = match client
        .branch_now(&project_id, &repository_id, &tracked)
        .await
        .map_err(failed)?
    {
        Current::Found(reference) => text(&reference, "objectId")
            .unwrap_or(ZERO_OBJECT_ID)
            .to_string(),
        // The branch (or the repository) is gone: so are its specs.
        Current::Gone(_) => ZERO_OBJECT_ID.to_string(),
    };
    let after = read_at(client, &plan, &project_id, &repository_id, &head)
        .await
        .map_err(failed)?;
    let origin = Origin::Webhook {
        event_type: "git.push".into(),
        delivery_id: delivery_id.to_string(),
    };
    let event = |action, items| {
        RawEvent::new(
            GITOPS_KIND,
            origin.clone(),
            client.organization_url(),
            action,
            items,
        )
    };
    let mut events = Vec::new();
    for broken in &after.broken {
        tracing::warn!(
            repository = repository_id.as_str(), path = %broken.path, commit = %head, error = %broken.error,
            "GitOps spec does not parse; its entities are left as they are (dead-lettered with the error)"
        );
        let report = GitopsSpecError {
            repository_id: repository_id.to_string(),
            repository: text(repository, "name").map(String::from),
            path: broken.path.clone(),
            commit: head.clone(),
            error: broken.error.clone(),
        };
        events.push(event(RawAction::Upsert, vec![report.into_event_item()]));
    }
    let (upserts, deletes) = diff(&before, &after);
    if !upserts.is_empty() {
        events.push(event(RawAction::Upsert, upserts));
    }
    if !deletes.is_empty() {
        events.push(event(RawAction::Delete, deletes));
    }
    Ok(events)
}
