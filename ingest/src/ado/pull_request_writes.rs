//! The Git API's pull-request writes the pull-request actions make: create, update (which also
//! completes and abandons), add reviewers, open a comment thread — and the repository and pull
//! request reads they start from. Every write is sent exactly once
//! ([`AdoClient::post_json_once`], [`AdoClient::patch_json_once`]): a lost answer may hide a
//! change that happened, so the caller reports it instead of repeating it.

use serde_json::Value;

use super::client::AdoClient;
use super::error::AdoError;
use super::ids::{ProjectId, RepositoryId};
use super::values;

impl AdoClient {
    /// `GET {org}/{project}/_apis/git/repositories/{repository}`: by id or by name within the
    /// project.
    pub async fn project_repository(
        &self,
        project_id: &ProjectId,
        repository: &str,
    ) -> Result<Value, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/git/repositories/{}",
            encode_segment(repository)
        ));
        Ok(self.get_json(&url, &[]).await?.body)
    }

    fn pull_requests_url(&self, project_id: &ProjectId, repository_id: &RepositoryId) -> String {
        self.url(&format!(
            "{project_id}/_apis/git/repositories/{repository_id}/pullrequests"
        ))
    }

    /// `…/pullrequests/{id}{rest}` of one pull request (`rest`: `""`, `"/reviewers"`, …).
    fn pull_request_url(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        pull_request_id: u64,
        rest: &str,
    ) -> String {
        format!(
            "{}/{pull_request_id}{rest}",
            self.pull_requests_url(project_id, repository_id)
        )
    }

    /// `GET {org}/{project}/_apis/git/repositories/{repository}/pullrequests/{id}`.
    pub async fn repository_pull_request(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        pull_request_id: u64,
    ) -> Result<Value, AdoError> {
        let url = self.pull_request_url(project_id, repository_id, pull_request_id, "");
        Ok(self.get_json(&url, &[]).await?.body)
    }

    /// `POST …/pullrequests` with `body`, once: the pull request created.
    pub async fn create_pull_request(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = self.pull_requests_url(project_id, repository_id);
        Ok(self.post_json_once(&url, &[], body).await?.body)
    }

    /// `PATCH …/pullrequests/{id}` with `body`, once: the pull request as it is now.
    pub async fn update_pull_request(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        pull_request_id: u64,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = self.pull_request_url(project_id, repository_id, pull_request_id, "");
        Ok(self.patch_json_once(&url, &[], body).await?.body)
    }

    /// `POST …/pullrequests/{id}/reviewers` with `[{id}]`, once: the reviewers added.
    pub async fn add_pull_request_reviewers(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        pull_request_id: u64,
        reviewers: &Value,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.pull_request_url(project_id, repository_id, pull_request_id, "/reviewers");
        values(&url, self.post_json_once(&url, &[], reviewers).await?.body)
    }

    /// `POST …/pullrequests/{id}/threads` with `body`, once: the thread created.
    pub async fn create_pull_request_thread(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        pull_request_id: u64,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = self.pull_request_url(project_id, repository_id, pull_request_id, "/threads");
        Ok(self.post_json_once(&url, &[], body).await?.body)
    }
}

/// A name as one URL path segment (spaces and reserved characters escaped).
pub fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(super::encode_segment("my repo/x"), "my%20repo%2Fx");
        assert_eq!(super::encode_segment("Shop-1.2_a~"), "Shop-1.2_a~");
    }
}
