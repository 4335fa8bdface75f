//! The pull-request actions' names and inputs, validated before anything is sent to Azure
//! DevOps, and the request bodies they become (Git API 7.1: Pull Requests - Create and Update,
//! Pull Request Reviewers, Pull Request Threads).
//!
//! Every action takes `project` (name or id), `repository` (name or id) and, with several
//! organizations, `organization`; all but `create_pull_request` take `pullRequestId`. An error
//! starts with the action's name and names the input to fix.

use serde_json::{Value, json};

use super::inputs::{self, InputError};
use crate::ado::ProjectId;

pub const CREATE: &str = "create_pull_request";
pub const UPDATE: &str = "update_pull_request";
pub const COMPLETE: &str = "complete_pull_request";
pub const ABANDON: &str = "abandon_pull_request";
pub const COMMENT: &str = "add_pull_request_comment";
/// Every pull-request action, in the order the README lists them.
pub const ACTION_TYPES: [&str; 5] = [CREATE, UPDATE, COMPLETE, ABANDON, COMMENT];

/// The merge strategies `completionOptions.mergeStrategy` takes.
const MERGE_STRATEGIES: [&str; 4] = ["noFastForward", "squash", "rebase", "rebaseMerge"];
/// The statuses a comment thread may be opened with.
const THREAD_STATUSES: [&str; 6] = [
    "active", "fixed", "wontFix", "closed", "byDesign", "pending",
];

/// Where the pull request lives.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub project: ProjectId,
    /// A repository name or id.
    pub repository: String,
    pub organization: Option<String>,
}

/// What one run asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Create {
        source_branch: String,
        /// The repository's default branch when absent.
        target_branch: Option<String>,
        title: String,
        description: Option<String>,
        is_draft: bool,
        reviewers: Vec<String>,
    },
    Update {
        pull_request_id: u64,
        title: Option<String>,
        description: Option<String>,
        is_draft: Option<bool>,
        /// Identity ids added as reviewers.
        reviewers: Vec<String>,
    },
    Complete {
        pull_request_id: u64,
        merge_strategy: &'static str,
        delete_source_branch: bool,
        merge_commit_message: Option<String>,
        transition_work_items: bool,
    },
    Abandon {
        pull_request_id: u64,
    },
    Comment {
        pull_request_id: u64,
        comment: String,
        status: &'static str,
    },
}

/// One pull-request action run, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PullRequestRun {
    pub action: &'static str,
    pub target: Target,
    pub request: Request,
}

/// `refs/heads/x` for `x`; a full ref name as it is.
pub fn ref_name(branch: &str) -> String {
    if branch.starts_with("refs/") {
        branch.to_string()
    } else {
        format!("refs/heads/{branch}")
    }
}

fn one_of(
    properties: &Value,
    name: &str,
    allowed: &[&'static str],
    default: &'static str,
) -> Result<&'static str, InputError> {
    match inputs::text(properties, name) {
        None => Ok(default),
        Some(given) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&given))
            .copied()
            .ok_or_else(|| {
                InputError(format!(
                    "the \"{name}\" input must be one of {}, not {given:?}",
                    allowed.join(", ")
                ))
            }),
    }
}

/// Identity ids (GUIDs), as the Git API takes reviewers.
fn reviewers(properties: &Value) -> Result<Vec<String>, InputError> {
    let ids = inputs::text_list(properties, "reviewers")?.unwrap_or_default();
    for id in &ids {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(InputError(format!(
                "the \"reviewers\" input takes Azure DevOps identity ids (GUIDs such as 6f1a3c2e-…, the id of a user entity), not {id:?}"
            )));
        }
    }
    Ok(ids)
}

fn pull_request_id(properties: &Value) -> Result<u64, InputError> {
    inputs::required_number(
        properties,
        "pullRequestId",
        "the pull request's number, as in …/pullrequest/12",
    )
}

impl PullRequestRun {
    /// The action this run names, if it is a pull-request action.
    pub fn action_of(action_type: &str) -> Option<&'static str> {
        ACTION_TYPES.iter().find(|a| **a == action_type).copied()
    }

    /// Reads and checks a run's execution properties; the error starts with the action name.
    pub fn parse(action: &'static str, properties: &Value) -> Result<Self, InputError> {
        Self::parse_inner(action, properties).map_err(|e| InputError(format!("{action}: {}", e.0)))
    }

    fn parse_inner(action: &'static str, p: &Value) -> Result<Self, InputError> {
        let target = Target {
            project: ProjectId::new(inputs::required_text(p, "project", "a project name or id")?),
            repository: inputs::required_text(p, "repository", "a repository name or id")?,
            organization: inputs::text(p, "organization"),
        };
        let request = match action {
            CREATE => Request::Create {
                source_branch: inputs::required_text(
                    p,
                    "sourceBranch",
                    "the branch with the changes, e.g. feature/login",
                )?,
                target_branch: inputs::text(p, "targetBranch"),
                title: inputs::required_text(p, "title", "the pull request's title")?,
                description: inputs::text(p, "description"),
                is_draft: inputs::boolean(p, "isDraft")?.unwrap_or(false),
                reviewers: reviewers(p)?,
            },
            UPDATE => {
                let request = Request::Update {
                    pull_request_id: pull_request_id(p)?,
                    title: inputs::text(p, "title"),
                    description: inputs::text(p, "description"),
                    is_draft: inputs::boolean(p, "isDraft")?,
                    reviewers: reviewers(p)?,
                };
                if let Request::Update {
                    title: None,
                    description: None,
                    is_draft: None,
                    reviewers,
                    ..
                } = &request
                    && reviewers.is_empty()
                {
                    return Err(InputError(
                        "nothing to change: give at least one of the \"title\", \"description\", \"isDraft\" or \"reviewers\" inputs".into(),
                    ));
                }
                request
            }
            COMPLETE => Request::Complete {
                pull_request_id: pull_request_id(p)?,
                merge_strategy: one_of(p, "mergeStrategy", &MERGE_STRATEGIES, "noFastForward")?,
                delete_source_branch: inputs::boolean(p, "deleteSourceBranch")?.unwrap_or(false),
                merge_commit_message: inputs::text(p, "mergeCommitMessage"),
                transition_work_items: inputs::boolean(p, "transitionWorkItems")?.unwrap_or(false),
            },
            ABANDON => Request::Abandon {
                pull_request_id: pull_request_id(p)?,
            },
            _ => Request::Comment {
                pull_request_id: pull_request_id(p)?,
                comment: inputs::required_text(p, "comment", "the comment's text (Markdown)")?,
                status: one_of(p, "status", &THREAD_STATUSES, "active")?,
            },
        };
        Ok(Self {
            action,
            target,
            request,
        })
    }
}

/// The body of `POST …/pullrequests`.
pub fn create_body(request: &Request, target_branch: &str) -> Value {
    let Request::Create {
        source_branch,
        title,
        description,
        is_draft,
        reviewers,
        ..
    } = request
    else {
        return Value::Null;
    };
    let mut body = json!({
        "sourceRefName": ref_name(source_branch),
        "targetRefName": ref_name(target_branch),
        "title": title,
        "isDraft": is_draft,
    });
    if let Some(description) = description {
        body["description"] = json!(description);
    }
    if !reviewers.is_empty() {
        body["reviewers"] = reviewer_refs(reviewers);
    }
    body
}

/// `[{id}]`, the identity references the reviewer endpoints take.
pub fn reviewer_refs(reviewers: &[String]) -> Value {
    Value::Array(reviewers.iter().map(|id| json!({"id": id})).collect())
}

/// The `PATCH` body of an update; `None` when it changes only reviewers.
pub fn update_body(request: &Request) -> Option<Value> {
    let Request::Update {
        title,
        description,
        is_draft,
        ..
    } = request
    else {
        return None;
    };
    let mut body = serde_json::Map::new();
    if let Some(title) = title {
        body.insert("title".into(), json!(title));
    }
    if let Some(description) = description {
        body.insert("description".into(), json!(description));
    }
    if let Some(is_draft) = is_draft {
        body.insert("isDraft".into(), json!(is_draft));
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

/// The `PATCH` body that completes a pull request whose source is at `last_merge_source`.
pub fn complete_body(request: &Request, last_merge_source: &str) -> Value {
    let Request::Complete {
        merge_strategy,
        delete_source_branch,
        merge_commit_message,
        transition_work_items,
        ..
    } = request
    else {
        return Value::Null;
    };
    let mut options = json!({
        "mergeStrategy": merge_strategy,
        "deleteSourceBranch": delete_source_branch,
        "transitionWorkItems": transition_work_items,
    });
    if let Some(message) = merge_commit_message {
        options["mergeCommitMessage"] = json!(message);
    }
    json!({
        "status": "completed",
        "lastMergeSourceCommit": {"commitId": last_merge_source},
        "completionOptions": options,
    })
}

/// The body of `POST …/threads`: one comment opening the thread.
pub fn thread_body(comment: &str, status: &str) -> Value {
    json!({
        "comments": [{"parentCommentId": 0, "content": comment, "commentType": 1}],
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"project": "Shop", "repository": "web"}"#;

    fn with(extra: Value) -> Value {
        let mut p: Value = serde_json::from_str(BASE).expect("json");
        if let (Value::Object(p), Value::Object(extra)) = (&mut p, extra) {
            p.extend(extra);
        }
        p
    }

    #[test]
    fn create_reads_branches_and_reviewers() {
        let id = "6f1a3c2e-0000-4000-8000-000000000001";
        let run = PullRequestRun::parse(
            CREATE,
            &with(
                json!({"sourceBranch": "feature/x", "title": "T", "reviewers": [id],
                         "isDraft": "true"}),
            ),
        )
        .expect("valid");
        assert_eq!(
            create_body(&run.request, "main"),
            json!({"sourceRefName": "refs/heads/feature/x", "targetRefName": "refs/heads/main",
                   "title": "T", "isDraft": true, "reviewers": [{"id": id}]})
        );
        let e = PullRequestRun::parse(CREATE, &with(json!({"title": "T"}))).expect_err("no source");
        assert!(
            e.0.starts_with("create_pull_request: the \"sourceBranch\" input is required"),
            "{e}"
        );
        let e = PullRequestRun::parse(
            CREATE,
            &with(json!({"sourceBranch": "x", "title": "T", "reviewers": "bob@acme"})),
        )
        .expect_err("not an id");
        assert!(
            e.0.contains("\"reviewers\"") && e.0.contains("bob@acme"),
            "{e}"
        );
        let e = PullRequestRun::parse(CREATE, &json!({"project": "Shop"})).expect_err("no repo");
        assert!(e.0.contains("\"repository\""), "{e}");
    }

    #[test]
    fn update_needs_a_change_and_complete_a_known_strategy() {
        let e = PullRequestRun::parse(UPDATE, &with(json!({"pullRequestId": 3})))
            .expect_err("no change");
        assert!(e.0.contains("nothing to change"), "{e}");
        let run = PullRequestRun::parse(
            UPDATE,
            &with(json!({"pullRequestId": "3", "isDraft": false})),
        )
        .expect("valid");
        assert_eq!(update_body(&run.request), Some(json!({"isDraft": false})));
        let e = PullRequestRun::parse(UPDATE, &with(json!({"pullRequestId": "#3", "title": "x"})))
            .expect_err("bad id");
        assert!(
            e.0.contains("\"pullRequestId\"") && e.0.contains("#3"),
            "{e}"
        );
        let run = PullRequestRun::parse(
            COMPLETE,
            &with(
                json!({"pullRequestId": 3, "mergeStrategy": "SQUASH", "deleteSourceBranch": true}),
            ),
        )
        .expect("valid");
        assert_eq!(
            complete_body(&run.request, "abc"),
            json!({"status": "completed", "lastMergeSourceCommit": {"commitId": "abc"},
                   "completionOptions": {"mergeStrategy": "squash", "deleteSourceBranch": true,
                                         "transitionWorkItems": false}})
        );
        let e = PullRequestRun::parse(
            COMPLETE,
            &with(json!({"pullRequestId": 3, "mergeStrategy": "octopus"})),
        )
        .expect_err("unknown strategy");
        assert!(
            e.0.contains("noFastForward, squash, rebase, rebaseMerge"),
            "{e}"
        );
        let e = PullRequestRun::parse(COMMENT, &with(json!({"pullRequestId": 3})))
            .expect_err("no comment");
        assert!(
            e.0.starts_with("add_pull_request_comment: the \"comment\" input"),
            "{e}"
        );
    }
}
