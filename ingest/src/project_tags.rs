//! `excludedTags` (`OCEAN__INTEGRATION__CONFIG__EXCLUDED_TAGS`): projects carrying any of these
//! tags are left out of every project-derived kind (and their live work-item events ignored).
//! Organization-level kinds (team, member, user, group, group-member) are not filtered.
//!
//! A project's tags are read from its properties; when that read fails the project is kept
//! (with a warning): dropping it would delete its entities on the strength of an error.

use futures_util::{StreamExt, stream};
use serde_json::Value;

use crate::ado::AdoClient;
use crate::crawler::Crawler;
use crate::kinds::CONCURRENT_UNITS;

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
    project_id: &str,
) -> bool {
    if excluded_tags.is_empty() {
        return false;
    }
    match client.project_tags(project_id).await {
        Ok(tags) => tags
            .iter()
            .any(|tag| excluded_tags.iter().any(|x| x.eq_ignore_ascii_case(tag))),
        Err(e) => {
            tracing::warn!(project = project_id, error = %e, "could not read the project's tags for excludedTags; the project is kept");
            false
        }
    }
}

impl Crawler {
    /// Leaves out of project-derived kinds the projects tagged with any of `tags`
    /// (`excludedTags` of the integration config).
    pub fn with_excluded_tags(mut self, tags: &[String]) -> Self {
        self.excluded_tags = normalized(tags);
        self
    }

    /// `projects` without those carrying an excluded tag, in order.
    pub(crate) async fn without_excluded_projects(&self, projects: Vec<Value>) -> Vec<Value> {
        if self.excluded_tags.is_empty() {
            return projects;
        }
        let kept: Vec<Value> = stream::iter(projects)
            .map(|project| async move {
                let id = project
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let excluded = is_excluded(&self.client, &self.excluded_tags, id).await;
                if excluded {
                    let name = project.get("name").and_then(Value::as_str).unwrap_or(id);
                    tracing::info!(
                        project = name,
                        "project left out: it carries one of excludedTags"
                    );
                }
                (!excluded).then_some(project)
            })
            .buffered(CONCURRENT_UNITS)
            .filter_map(|p| async move { p })
            .collect()
            .await;
        kept
    }
}
