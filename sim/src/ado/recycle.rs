//! What tests delete from and restore to the simulated organization, as Azure DevOps does:
//! deleted repositories (with their pull requests), work items and projects (with everything
//! in them) go to a recycle bin and can be restored from it, unchanged. While they are there,
//! every read of them answers Azure DevOps' 404 (`TF401019` repository, `TF401180` pull
//! request, `TF401232` work item, `TF200016` project). Pull requests are never deleted on their
//! own (Azure DevOps has no such operation); they go with their repository.
//!
//! Also the service-hook envelopes of repositories, pull requests and work items
//! (`git.repo.*`, `git.pullrequest.*`, `workitem.*`), built from the objects as they are when
//! asked for: build an event before deleting its object to deliver it afterwards (late, as
//! Azure DevOps may), or forge one for an object that still exists.
//!
//! Sources for the error texts and bodies: Azure DevOps REST 7.1 error answers as seen by
//! clients (e.g. `{"message":"TF401232: Work item 27142 does not exist, or you do not have
//! permissions to read it.","typeName":"Microsoft.TeamFoundation.WorkItemTracking.Server.
//! WorkItemUnauthorizedAccessException, …","typeKey":"WorkItemUnauthorizedAccessException",
//! "eventId":3200}`), the Azure DevOps recycle bins (Repos → deleted repositories, Boards →
//! Recycle Bin) and Microsoft's service-hook event samples.

use serde_json::{Value, json};

use super::AdoSim;
use super::seed::{Organization, Project, PullRequest, Repository, Urls, WorkItem};
use crate::traffic::lock;

/// Deleted objects, restorable.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecycleBin {
    projects: Vec<Project>,
    repositories: Vec<Repository>,
    pub(crate) pull_requests: Vec<PullRequest>,
    pub(crate) work_items: Vec<WorkItem>,
}

/// Moves the elements of `from` that `gone` selects to the end of `to`; how many moved.
fn move_where<T>(from: &mut Vec<T>, to: &mut Vec<T>, gone: impl Fn(&T) -> bool) -> usize {
    let (moved, kept): (Vec<T>, Vec<T>) = std::mem::take(from).into_iter().partition(gone);
    *from = kept;
    let count = moved.len();
    to.extend(moved);
    count
}

impl Organization {
    fn delete_repositories(&mut self, gone: impl Fn(&Repository) -> bool) -> usize {
        let bin = &mut self.recycle_bin;
        let moved = move_where(&mut self.repositories, &mut bin.repositories, gone);
        let deleted: Vec<String> = bin.repositories.iter().map(|r| r.id.clone()).collect();
        move_where(&mut self.pull_requests, &mut bin.pull_requests, |pr| {
            deleted.contains(&pr.repository_id)
        });
        moved
    }

    fn restore_repositories(&mut self, back: impl Fn(&Repository) -> bool) -> usize {
        let bin = &mut self.recycle_bin;
        let moved = move_where(&mut bin.repositories, &mut self.repositories, back);
        let live: Vec<String> = self.repositories.iter().map(|r| r.id.clone()).collect();
        move_where(&mut bin.pull_requests, &mut self.pull_requests, |pr| {
            live.contains(&pr.repository_id)
        });
        self.pull_requests.sort_by_key(|pr| pr.id);
        moved
    }
}

impl AdoSim {
    fn change<T>(&self, f: impl FnOnce(&mut Organization) -> T) -> T {
        let result = f(&mut lock(&self.state.organization));
        self.state.traffic.touch();
        result
    }

    fn event_urls(&self) -> Urls {
        Urls::new(&self.state.default_host, &self.state.config.organization)
    }

    /// Deletes a repository and its pull requests (to the recycle bin); false if there was none
    /// with that id.
    pub fn remove_repository(&self, repository_id: &str) -> bool {
        self.change(|org| org.delete_repositories(|r| r.id == repository_id) > 0)
    }

    /// Restores a deleted repository and its pull requests; false if the bin has none with that
    /// id.
    pub fn restore_repository(&self, repository_id: &str) -> bool {
        self.change(|org| org.restore_repositories(|r| r.id == repository_id) > 0)
    }

    /// Deletes a work item (to the recycle bin); false if there was none with that id.
    pub fn remove_work_item(&self, id: u64) -> bool {
        self.change(|org| {
            let bin = &mut org.recycle_bin;
            move_where(&mut org.work_items, &mut bin.work_items, |w| w.id == id) > 0
        })
    }

    /// Restores a deleted work item; false if the bin has none with that id.
    pub fn restore_work_item(&self, id: u64) -> bool {
        self.change(|org| {
            let bin = &mut org.recycle_bin;
            let moved = move_where(&mut bin.work_items, &mut org.work_items, |w| w.id == id);
            org.work_items.sort_by_key(|w| w.id);
            moved > 0
        })
    }

    /// Deletes a project with its repositories, pull requests and work items; false if there
    /// was none with that id.
    pub fn remove_project(&self, project_id: &str) -> bool {
        self.change(|org| {
            let bin = &mut org.recycle_bin;
            if move_where(&mut org.projects, &mut bin.projects, |p| p.id == project_id) == 0 {
                return false;
            }
            move_where(&mut org.work_items, &mut bin.work_items, |w| {
                w.project_id == project_id
            });
            org.delete_repositories(|r| r.project_id == project_id);
            true
        })
    }

    /// Restores a deleted project with everything deleted with it; false if the bin has none
    /// with that id.
    pub fn restore_project(&self, project_id: &str) -> bool {
        self.change(|org| {
            let bin = &mut org.recycle_bin;
            if move_where(&mut bin.projects, &mut org.projects, |p| p.id == project_id) == 0 {
                return false;
            }
            move_where(&mut bin.work_items, &mut org.work_items, |w| {
                w.project_id == project_id
            });
            org.work_items.sort_by_key(|w| w.id);
            org.restore_repositories(|r| r.project_id == project_id);
            true
        })
    }

    /// A `git.repo.*` event: `resource.repository` is the
    /// repository as it is now. `None` for a repository the organization does not have.
    pub fn repository_event(&self, event_type: &str, repository_id: &str) -> Option<Value> {
        let urls = self.event_urls();
        let org = lock(&self.state.organization);
        let repository = org.repositories.iter().find(|r| r.id == repository_id)?;
        let json = org.repository_json(&urls, repository);
        let text = format!("Repository {} changed.", repository.name);
        Some(super::live::envelope(
            event_type,
            "tfs",
            &repository.project_id,
            json!({"repository": json}),
            &text,
        ))
    }

    /// A `git.pullrequest.*` event: the resource is the pull request as it is now. `None` for a
    /// pull request the organization does not have.
    pub fn pull_request_event(&self, event_type: &str, pull_request_id: u64) -> Option<Value> {
        let urls = self.event_urls();
        let org = lock(&self.state.organization);
        let pr = org.pull_request(pull_request_id)?;
        let project_id = org
            .repositories
            .iter()
            .find(|r| r.id == pr.repository_id)?
            .project_id
            .clone();
        let text = format!("Pull request {pull_request_id} changed.");
        Some(super::live::envelope(
            event_type,
            "tfs",
            &project_id,
            org.pull_request_json(&urls, pr),
            &text,
        ))
    }

    /// A `workitem.*` event for a work item as it is now. `workitem.updated` carries an update
    /// (its own `id`, the work item as `workItemId` and `revision`), the others the work item.
    /// `None` for a work item the organization does not have.
    pub fn work_item_event(&self, event_type: &str, id: u64) -> Option<Value> {
        let urls = self.event_urls();
        let org = lock(&self.state.organization);
        let item = org.work_items.iter().find(|w| w.id == id)?;
        let json = org.work_item_json(&urls, item, "all");
        let resource = if event_type == "workitem.updated" {
            json!({"id": item.rev, "workItemId": id, "rev": item.rev, "revision": json})
        } else {
            json
        };
        let text = format!("Work item {id} changed.");
        Some(super::live::envelope(
            event_type,
            "tfs",
            &item.project_id,
            resource,
            &text,
        ))
    }
}
