//! Azure DevOps keeps changing while the stack runs: the soak creates, changes, deletes and
//! restores projects (and with them their pipelines), repositories, pull requests and work
//! items in the simulator, and hands each change's service-hook envelope to the deliveries —
//! built before a deletion, as Azure DevOps sends it, so it arrives after its object is gone.
//! Some events are forged: a delete for an object that still exists (adoport must re-read and
//! keep it). Projects have no service hook: only a resync brings their changes.

use std::sync::atomic::{AtomicU64, Ordering};

use adoport_sim::ado::AdoSim;
use serde_json::Value;

use super::hooks::Hooks;
use super::rng::Rng;

/// What the churn did.
#[derive(Debug, Default)]
pub struct ChurnFigures {
    pub changes: AtomicU64,
    pub created: AtomicU64,
    pub deleted: AtomicU64,
    pub restored: AtomicU64,
    pub forged: AtomicU64,
}

/// The churn's memory: what it deleted (to restore some) and created.
pub struct Churn {
    rng: Rng,
    deleted_repositories: Vec<String>,
    deleted_work_items: Vec<u64>,
    deleted_projects: Vec<String>,
    added_projects: Vec<String>,
    counter: u64,
    pub figures: ChurnFigures,
}

fn text(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_string)
}

impl Churn {
    pub fn new(seed: u64) -> Churn {
        Churn {
            rng: Rng::stream(seed, "churn"),
            deleted_repositories: Vec::new(),
            deleted_work_items: Vec::new(),
            deleted_projects: Vec::new(),
            added_projects: Vec::new(),
            counter: 0,
            figures: ChurnFigures::default(),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes one change (chosen at random, weighted) and hands its event, if any, to `hooks`.
    pub fn step(&mut self, ado: &AdoSim, hooks: &Hooks) {
        self.counter += 1;
        let n = self.counter;
        let roll = self.rng.below(100);
        let repositories = ado.repositories();
        let repository_ids: Vec<String> =
            repositories.iter().filter_map(|r| text(r, "id")).collect();
        let projects: Vec<String> = ado
            .projects()
            .iter()
            .filter_map(|p| text(p, "id"))
            .collect();
        let work_items: Vec<u64> = ado
            .work_items()
            .iter()
            .filter_map(|w| w.get("id").and_then(Value::as_u64))
            .collect();
        let pull_requests: Vec<u64> = ado
            .pull_requests()
            .iter()
            .filter_map(|p| p.get("pullRequestId").and_then(Value::as_u64))
            .collect();
        Self::count(&self.figures.changes);
        match roll {
            // Repositories: rename, create, delete, restore.
            0..=19 => {
                if let Some(id) = self.rng.pick(&repository_ids).cloned() {
                    ado.rename_repository(&id, &format!("renamed-{n}"));
                    if let Some(event) = ado.repository_event("git.repo.renamed", &id) {
                        hooks.deliver(event);
                    }
                }
            }
            20..=26 => {
                if let Some(project) = self.rng.pick(&projects).cloned()
                    && let Some(id) = ado.add_repository(&project, &format!("new-repo-{n}"))
                {
                    Self::count(&self.figures.created);
                    if let Some(event) = ado.repository_event("git.repo.created", &id) {
                        hooks.deliver(event);
                    }
                }
            }
            27..=31 => {
                if let Some(id) = self.rng.pick(&repository_ids).cloned() {
                    let event = ado.repository_event("git.repo.deleted", &id);
                    if ado.remove_repository(&id) {
                        Self::count(&self.figures.deleted);
                        self.deleted_repositories.push(id);
                    }
                    if let Some(event) = event {
                        hooks.deliver(event);
                    }
                }
            }
            32..=34 => {
                if !self.deleted_repositories.is_empty() {
                    let at = self.rng.below(self.deleted_repositories.len());
                    let id = self.deleted_repositories.swap_remove(at);
                    // A restore has no service hook Azure DevOps sends; the resync finds it.
                    if ado.restore_repository(&id) {
                        Self::count(&self.figures.restored);
                    }
                }
            }
            // Pull requests: open, change status or title.
            35..=44 => {
                if let Some(repository) = self.rng.pick(&repository_ids).cloned()
                    && let Some(id) = ado.add_pull_request(&repository, &format!("Change {n}"))
                {
                    Self::count(&self.figures.created);
                    if let Some(event) = ado.pull_request_event("git.pullrequest.created", id) {
                        hooks.deliver(event);
                    }
                }
            }
            45..=56 => {
                if let Some(&id) = self.rng.pick(&pull_requests) {
                    if self.rng.chance(0.5) {
                        let status = *self
                            .rng
                            .pick(&["active", "completed", "abandoned"])
                            .unwrap_or(&"active");
                        ado.set_pull_request_status(id, status);
                    } else {
                        ado.set_pull_request_title(id, &format!("Retitled {n}"));
                    }
                    if let Some(event) = ado.pull_request_event("git.pullrequest.updated", id) {
                        hooks.deliver(event);
                    }
                }
            }
            // Work items: create, retitle, delete, restore.
            57..=66 => {
                if let Some(project) = self.rng.pick(&projects).cloned()
                    && let Some(id) = ado.add_work_item(&project, &format!("Task {n}"))
                {
                    Self::count(&self.figures.created);
                    if let Some(event) = ado.work_item_event("workitem.created", id) {
                        hooks.deliver(event);
                    }
                }
            }
            67..=81 => {
                if let Some(&id) = self.rng.pick(&work_items) {
                    ado.set_work_item_title(id, &format!("Retitled work {n}"));
                    if let Some(event) = ado.work_item_event("workitem.updated", id) {
                        hooks.deliver(event);
                    }
                }
            }
            82..=86 => {
                if let Some(&id) = self.rng.pick(&work_items) {
                    let event = ado.work_item_event("workitem.deleted", id);
                    if ado.remove_work_item(id) {
                        Self::count(&self.figures.deleted);
                        self.deleted_work_items.push(id);
                    }
                    if let Some(event) = event {
                        hooks.deliver(event);
                    }
                }
            }
            87..=89 => {
                if !self.deleted_work_items.is_empty() {
                    let at = self.rng.below(self.deleted_work_items.len());
                    let id = self.deleted_work_items.swap_remove(at);
                    if ado.restore_work_item(id) {
                        Self::count(&self.figures.restored);
                        if let Some(event) = ado.work_item_event("workitem.restored", id) {
                            hooks.deliver(event);
                        }
                    }
                }
            }
            // Forged deletes: the object still exists, so adoport must keep it.
            90..=93 => {
                Self::count(&self.figures.forged);
                let event = if self.rng.chance(0.5) {
                    self.rng
                        .pick(&repository_ids)
                        .and_then(|id| ado.repository_event("git.repo.deleted", id))
                } else {
                    self.rng
                        .pick(&work_items)
                        .and_then(|&id| ado.work_item_event("workitem.deleted", id))
                };
                if let Some(event) = event {
                    hooks.deliver(event);
                }
            }
            // Projects (no service hooks): add, delete (with everything in it), restore.
            94..=95 => {
                let id = ado.add_project(&format!("new-project-{n}"));
                Self::count(&self.figures.created);
                self.added_projects.push(id);
            }
            96..=97 => {
                // Only projects the soak added: deleting a seeded one would take most of the
                // small organization with it.
                if !self.added_projects.is_empty() {
                    let at = self.rng.below(self.added_projects.len());
                    let id = self.added_projects.swap_remove(at);
                    if ado.remove_project(&id) {
                        Self::count(&self.figures.deleted);
                        self.deleted_projects.push(id);
                    }
                }
            }
            _ => {
                if !self.deleted_projects.is_empty() {
                    let at = self.rng.below(self.deleted_projects.len());
                    let id = self.deleted_projects.swap_remove(at);
                    if ado.restore_project(&id) {
                        Self::count(&self.figures.restored);
                        self.added_projects.push(id);
                    }
                }
            }
        }
    }
}
