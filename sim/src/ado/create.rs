//! Objects created in the simulated organization after start-up, as users create them in
//! Azure DevOps: repositories (empty, as a new repository is until its first push), pull
//! requests and work items. With [`AdoSim::add_project`] (in `live.rs`), the deletions and
//! restores of `recycle.rs` and the renames and state changes of `mod.rs`, they let a test (the
//! chaos soak) keep the organization changing while adoport runs.
//!
//! Ids are never handed out twice: repositories are numbered by creation
//! (`Organization::created`), pull requests and work items take the next number above every
//! one that exists or sits in the recycle bin.

use chrono::Utc;

use super::AdoSim;
use super::seed::{
    PullRequest, Repository, WORK_ITEM_STATES, WORK_ITEM_TYPES, WorkItem, stable_id,
};
use crate::traffic::lock;

/// Object kind of repositories created after seeding (see `seed::stable_id`).
const KIND_ADDED_REPOSITORY: u16 = 0x0013;

/// The id after the highest of `live` and `deleted` objects (a deleted object keeps its id:
/// it can be restored).
fn next_id<T>(live: &[T], deleted: &[T], id: impl Fn(&T) -> u64) -> u64 {
    live.iter().chain(deleted).map(id).max().unwrap_or(0) + 1
}

impl AdoSim {
    /// Creates an empty repository (no default branch, size 0) in a project; its id, or `None`
    /// when the organization has no project with that id.
    pub fn add_repository(&self, project_id: &str, name: &str) -> Option<String> {
        let id = {
            let mut org = lock(&self.state.organization);
            org.project_by_id(project_id)?;
            let id = stable_id(KIND_ADDED_REPOSITORY, org.next_created(), 0);
            org.repositories.push(Repository {
                id: id.clone(),
                project_id: project_id.to_string(),
                name: name.to_string(),
                default_branch: None,
                size: 0,
                is_disabled: false,
                readme: None,
                codeowners: None,
            });
            id
        };
        self.state.traffic.touch();
        Some(id)
    }

    /// Opens an active pull request from `refs/heads/feature/soak-{id}` into `main` of a
    /// repository; its id, or `None` when the organization has no repository with that id.
    pub fn add_pull_request(&self, repository_id: &str, title: &str) -> Option<u64> {
        let id = {
            let mut org = lock(&self.state.organization);
            org.repositories.iter().find(|r| r.id == repository_id)?;
            let id = next_id(&org.pull_requests, &org.recycle_bin.pull_requests, |pr| {
                pr.id
            });
            let users = org.users.len().max(1);
            let merge_commit = format!("{:040x}", u128::from(id) << 8 | 0xc0);
            org.pull_requests.push(PullRequest {
                id,
                repository_id: repository_id.to_string(),
                title: title.to_string(),
                description: format!("Pull request {id}, opened after start-up."),
                status: "active",
                created_by: id as usize % users,
                reviewers: vec![(id as usize + 1) % users],
                creation_date: Utc::now(),
                closed_date: None,
                source_ref_name: format!("refs/heads/feature/soak-{id}"),
                target_ref_name: "refs/heads/main".to_string(),
                is_draft: false,
                merge_commit,
                source_commit: None,
                closed_by: None,
                completion_options: None,
                threads: Vec::new(),
            });
            id
        };
        self.state.traffic.touch();
        Some(id)
    }

    /// Retitles a pull request; false if there is none with that id.
    pub fn set_pull_request_title(&self, pull_request_id: u64, title: &str) -> bool {
        self.change_pull_request(pull_request_id, |pr| pr.title = title.to_string())
    }

    /// Applies `change` to pull request `pull_request_id` (and counts it as traffic, so that
    /// waits for quiet see it); false if there is none with that id.
    pub(crate) fn change_pull_request(
        &self,
        pull_request_id: u64,
        change: impl FnOnce(&mut PullRequest),
    ) -> bool {
        let found = {
            let mut org = lock(&self.state.organization);
            match org
                .pull_requests
                .iter_mut()
                .find(|pr| pr.id == pull_request_id)
            {
                Some(pr) => {
                    change(pr);
                    true
                }
                None => false,
            }
        };
        self.state.traffic.touch();
        found
    }

    /// Creates a work item in a project (type and state cycle with its id, revision 1, created
    /// now); its id, or `None` when the organization has no project with that id.
    pub fn add_work_item(&self, project_id: &str, title: &str) -> Option<u64> {
        let id = {
            let mut org = lock(&self.state.organization);
            org.project_by_id(project_id)?;
            let id = next_id(&org.work_items, &org.recycle_bin.work_items, |w| w.id);
            let users = org.users.len().max(1);
            let now = Utc::now();
            org.work_items.push(WorkItem {
                id,
                project_id: project_id.to_string(),
                work_item_type: WORK_ITEM_TYPES[id as usize % WORK_ITEM_TYPES.len()],
                state: WORK_ITEM_STATES[id as usize % WORK_ITEM_STATES.len()],
                title: title.to_string(),
                rev: 1,
                created_by: id as usize % users,
                created_date: now,
                changed_date: now,
            });
            id
        };
        self.state.traffic.touch();
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use crate::ado::{AdoSim, AdoSimConfig};

    #[tokio::test]
    async fn created_objects_are_served_and_ids_are_never_given_twice() {
        let ado = AdoSim::start(AdoSimConfig::default()).await.expect("sim");
        let project = ado.projects()[0]["id"].as_str().expect("id").to_string();
        let repository = ado.add_repository(&project, "fresh").expect("created");
        let listed = ado.repositories();
        let fresh = listed
            .iter()
            .find(|r| r["id"] == repository.as_str())
            .expect("listed");
        assert_eq!(fresh["name"], "fresh");
        assert!(
            fresh.get("defaultBranch").is_none(),
            "a new repository is empty"
        );
        assert!(ado.add_repository("no-such-project", "x").is_none());

        let seeded = ado.pull_requests()[0]["repository"]["id"]
            .as_str()
            .expect("id")
            .to_string();
        let pr = ado.add_pull_request(&seeded, "new work").expect("opened");
        assert!(ado.set_pull_request_title(pr, "renamed"));
        let opened = ado
            .pull_requests()
            .into_iter()
            .find(|p| p["pullRequestId"] == pr)
            .expect("listed");
        assert_eq!(opened["title"], "renamed");
        assert_eq!(opened["status"], "active");

        let item = ado.add_work_item(&project, "a task").expect("created");
        assert!(ado.remove_work_item(item));
        let next = ado.add_work_item(&project, "another").expect("created");
        assert!(next > item, "an id in the recycle bin is not given again");

        // A repository deleted and a new one created: the new one gets a new id.
        assert!(ado.remove_repository(&repository));
        let again = ado.add_repository(&project, "fresh").expect("created");
        assert_ne!(again, repository);
        let added = ado.add_project("late");
        assert!(ado.remove_project(&added));
        assert_ne!(ado.add_project("later"), added);
        ado.shutdown().await;
    }
}
