//! `excludedTags` (`OCEAN__INTEGRATION__CONFIG__EXCLUDED_TAGS`): projects carrying any of these
//! tags are left out of every project-derived kind (the crawl's project list leaves them out,
//! [`crate::crawl_context`]) and their live work-item events ignored.
//! Organization-level kinds (team, member, user, group, group-member) are not filtered.
//!
//! A project's tags are read from its properties; when that read fails the project is kept
//! (with a warning): dropping it would delete its entities on the strength of an error.

use crate::ado::{AdoClient, ProjectId};

/// The configured tags, trimmed, without empty ones.
pub(crate) fn normalized(tags: &[String]) -> Vec<String> {
    tags.iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a project (by id) carries one of `excluded_tags` (compared case-insensitively, as
/// Azure DevOps treats tags). `false` when there are none, or when its tags cannot be read.
pub(crate) async fn is_excluded(
    client: &AdoClient,
    excluded_tags: &[String],
    project_id: &ProjectId,
) -> bool {
    if excluded_tags.is_empty() {
        return false;
    }
    match client.project_tags(project_id).await {
        Ok(tags) => tags
            .iter()
            .any(|tag| excluded_tags.iter().any(|x| x.eq_ignore_ascii_case(tag))),
        Err(e) => {
            tracing::warn!(project = project_id.as_str(), error = %e, "could not read the project's tags for excludedTags; the project is kept");
            false
        }
    }
}
