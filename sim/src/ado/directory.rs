//! The simulated organization's people and structure beyond projects and code, derived
//! deterministically from the seeded [`Organization`]: graph users and groups, group
//! memberships, user entitlements, team members, team field values (area paths), team
//! iterations, area classification trees and project tags.
//!
//! Seeding, for every project `p` (index) and user `u` (index of [`Organization::users`]):
//! - groups `[{project}]\Contributors` (users with `(u + p)` even) and `[{project}]\Readers`
//!   (the other users), plus the organization's `[{org}]\Project Collection Administrators`
//!   (user 0 and, nested, project 0's Contributors group);
//! - the project's default team has the Contributors as members (the first one is team admin);
//! - every team has three iterations, `Sprint 1` (past), `Sprint 2` (current), `Sprint 3`
//!   (future), around the simulator's fixed "now";
//! - the area tree is `{project}` → `Frontend`, `Backend` → `Backend\API`;
//! - every project is tagged `sim`; project 0 is also tagged `legacy`.

use chrono::Duration;
use serde_json::{Value, json};

use super::seed::{Organization, Project, Urls, ado_time, epoch, stable_id};

const KIND_GROUP: u16 = 0x0020;
const KIND_ITERATION: u16 = 0x0021;
const KIND_AREA: u16 = 0x0022;
const KIND_TENANT: u16 = 0x0023;

/// The property name prefix Azure DevOps stores project tags under.
pub(crate) const TAG_PREFIX: &str = "Microsoft.TeamFoundation.Project.Tag.";

/// Project groups seeded per project, in order.
const PROJECT_GROUPS: [&str; 2] = ["Contributors", "Readers"];

/// The `_links` of a graph subject with descriptor `d` in `collection` (`Users`, `Groups`).
fn subject_links(graph: &str, collection: &str, d: &str) -> Value {
    json!({
        "self": {"href": format!("{graph}/{collection}/{d}")},
        "memberships": {"href": format!("{graph}/Memberships/{d}")},
        "membershipState": {"href": format!("{graph}/MembershipStates/{d}")},
        "storageKey": {"href": format!("{graph}/StorageKeys/{d}")},
    })
}

/// A security group of the organization or of one project.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub descriptor: String,
    pub origin_id: String,
    pub display_name: String,
    pub principal_name: String,
    pub description: String,
    pub domain: String,
    /// Direct members: user indexes and group descriptors.
    pub users: Vec<usize>,
    pub groups: Vec<String>,
}

/// One node of an area tree.
#[derive(Clone, Debug)]
pub(crate) struct AreaNode {
    pub id: u64,
    pub identifier: String,
    pub name: String,
    /// Path below the root (`""` for the root, `Backend\API` for a leaf).
    pub relative: String,
    pub children: Vec<AreaNode>,
}

fn index(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The graph descriptor of a user (the one team member identities carry too).
pub(crate) fn user_descriptor(user_id: &str) -> String {
    format!("aad.{}", user_id.replace('-', ""))
}

impl Organization {
    fn project_position(&self, project: &Project) -> usize {
        self.projects
            .iter()
            .position(|p| p.id == project.id)
            .unwrap_or(0)
    }

    /// Every group, organization-level first, then per project.
    pub(crate) fn groups(&self, urls: &Urls) -> Vec<Group> {
        let users = self.users.len();
        let mut groups = Vec::new();
        let contributors_of_first = self
            .projects
            .first()
            .map(|_| format!("vssgp.{}", stable_id(KIND_GROUP, 0, 1).replace('-', "")));
        groups.push(Group {
            descriptor: format!("vssgp.{}", stable_id(KIND_GROUP, 0, 0).replace('-', "")),
            origin_id: stable_id(KIND_GROUP, 0, 0),
            display_name: "Project Collection Administrators".into(),
            principal_name: format!("[{}]\\Project Collection Administrators", urls.organization),
            description: "Members of this application group can perform all privileged operations on the Team Project Collection.".into(),
            domain: format!("vstfs:///Framework/IdentityDomain/{}", self.collection_id),
            users: if users > 0 { vec![0] } else { Vec::new() },
            groups: contributors_of_first.into_iter().collect(),
        });
        for (p, project) in self.projects.iter().enumerate() {
            for (g, name) in PROJECT_GROUPS.iter().enumerate() {
                let id = stable_id(KIND_GROUP, index(p), index(g + 1));
                let parity = usize::from(g == 1);
                groups.push(Group {
                    descriptor: format!("vssgp.{}", id.replace('-', "")),
                    origin_id: id,
                    display_name: (*name).to_string(),
                    principal_name: format!("[{}]\\{name}", project.name),
                    description: format!(
                        "Members of this group have {} access to the project.",
                        if g == 0 { "contribute" } else { "read" }
                    ),
                    domain: format!("vstfs:///Classification/TeamProject/{}", project.id),
                    users: (0..users).filter(|u| (u + p) % 2 == parity).collect(),
                    groups: Vec::new(),
                });
            }
        }
        groups
    }

    /// A group as `GET _apis/graph/groups` lists it.
    pub(crate) fn group_json(&self, urls: &Urls, group: &Group) -> Value {
        let graph = format!("{}/_apis/Graph", urls.organization_url);
        let d = &group.descriptor;
        json!({
            "subjectKind": "group",
            "description": group.description,
            "domain": group.domain,
            "principalName": group.principal_name,
            "mailAddress": null,
            "origin": "vsts",
            "originId": group.origin_id,
            "displayName": group.display_name,
            "_links": subject_links(&graph, "Groups", d),
            "url": format!("{graph}/Groups/{d}"),
            "descriptor": d,
        })
    }

    /// A user as `GET _apis/graph/users` lists it.
    pub(crate) fn graph_user_json(&self, urls: &Urls, u: usize) -> Value {
        let Some(user) = self.users.get(u) else {
            return Value::Null;
        };
        let graph = format!("{}/_apis/Graph", urls.organization_url);
        let d = user_descriptor(&user.id);
        let alias = user
            .unique_name
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut links = subject_links(&graph, "Users", &d);
        links["avatar"] = json!({"href": format!("{}/_apis/GraphProfile/MemberAvatars/{d}", urls.organization_url)});
        json!({
            "subjectKind": "user",
            "metaType": "member",
            "directoryAlias": alias,
            "domain": stable_id(KIND_TENANT, 0, 0),
            "principalName": user.unique_name,
            "mailAddress": user.unique_name,
            "origin": "aad",
            "originId": stable_id(KIND_TENANT, 1, index(u)),
            "displayName": user.display_name,
            "_links": links,
            "url": format!("{graph}/Users/{d}"),
            "descriptor": d,
        })
    }

    /// The user or group a descriptor names, as `subjectlookup` resolves it.
    pub(crate) fn subject_json(
        &self,
        urls: &Urls,
        groups: &[Group],
        descriptor: &str,
    ) -> Option<Value> {
        if let Some(u) = self
            .users
            .iter()
            .position(|user| user_descriptor(&user.id) == descriptor)
        {
            return Some(self.graph_user_json(urls, u));
        }
        groups
            .iter()
            .find(|g| g.descriptor == descriptor)
            .map(|g| self.group_json(urls, g))
    }

    /// The user entitlement of user `u`; `select` is the lower-cased `select` list.
    pub(crate) fn entitlement_json(&self, urls: &Urls, u: usize, select: &[String]) -> Value {
        let Some(user) = self.users.get(u) else {
            return Value::Null;
        };
        let wants = |name: &str| select.iter().any(|s| s == name);
        let (license, display) = if u % 3 == 2 {
            ("stakeholder", "Stakeholder")
        } else {
            ("express", "Basic")
        };
        let project_entitlements: Vec<Value> = if wants("projects") {
            self.projects
                .iter()
                .enumerate()
                .filter(|(p, _)| (u + p).is_multiple_of(2))
                .map(|(_, project)| {
                    json!({
                        "group": {"groupType": "projectContributor", "displayName": "Contributors"},
                        "projectRef": {"id": project.id, "name": project.name},
                        "projectPermissionInherited": "notSet",
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        json!({
            "user": self.graph_user_json(urls, u),
            "extensions": if wants("extensions") { json!([{"id": "ms.feed", "name": "Azure Artifacts", "source": "included"}]) } else { json!([]) },
            "id": user.id,
            "accessLevel": {
                "licensingSource": "account",
                "accountLicenseType": license,
                "msdnLicenseType": "none",
                "gitHubLicenseType": "none",
                "licenseDisplayName": display,
                "status": "active",
                "statusMessage": "",
                "assignmentSource": "unknown",
            },
            "lastAccessedDate": ado_time(epoch() - Duration::hours(u as i64 * 7)),
            "dateCreated": ado_time(epoch() - Duration::days(90 + u as i64)),
            "projectEntitlements": project_entitlements,
            "groupAssignments": if wants("grouprules") { json!([{"group": {"displayName": "Readers", "origin": "vsts"}}]) } else { json!([]) },
        })
    }

    /// The members of a project's default team (`{identity, isTeamAdmin}`).
    pub(crate) fn team_members_json(&self, urls: &Urls, project: &Project) -> Vec<Value> {
        let p = self.project_position(project);
        (0..self.users.len())
            .filter(|u| (u + p).is_multiple_of(2))
            .enumerate()
            .map(|(n, u)| {
                let mut member = json!({"identity": self.identity(urls, u)});
                if n == 0
                    && let Value::Object(map) = &mut member
                {
                    map.insert("isTeamAdmin".into(), Value::Bool(true));
                }
                member
            })
            .collect()
    }

    /// `GET …/work/teamsettings/teamfieldvalues` of a project's default team.
    pub(crate) fn team_field_values_json(&self, urls: &Urls, project: &Project) -> Value {
        let org = &urls.organization_url;
        let url = format!(
            "{org}/{}/{}/_apis/work/teamsettings/teamfieldvalues",
            project.id, project.default_team_id
        );
        json!({
            "field": {"referenceName": "System.AreaPath", "url": format!("{org}/_apis/wit/fields/System.AreaPath")},
            "defaultValue": project.name,
            "values": [
                {"value": project.name, "includeChildren": true},
                {"value": format!("{}\\Backend", project.name), "includeChildren": false},
            ],
            "url": url,
            "_links": {
                "self": {"href": url},
                "project": {"href": format!("{org}/_apis/projects/{}", project.id)},
                "team": {"href": format!("{org}/_apis/projects/{}/teams/{}", project.id, project.default_team_id)},
                "teamSettings": {"href": format!("{org}/{}/{}/_apis/work/teamsettings", project.id, project.default_team_id)},
            },
        })
    }

    /// The iterations of a project's default team, oldest first.
    pub(crate) fn iterations_json(&self, urls: &Urls, project: &Project) -> Vec<Value> {
        let p = index(self.project_position(project));
        let org = &urls.organization_url;
        let frames = ["past", "current", "future"];
        frames
            .iter()
            .zip(0i64..)
            .map(|(frame, i)| {
                let id = stable_id(KIND_ITERATION, p, u32::try_from(i).unwrap_or(0));
                let start = epoch() + Duration::days(14 * (i - 1) - 7);
                let finish = start + Duration::days(13);
                let name = format!("Sprint {}", i + 1);
                json!({
                    "id": id,
                    "name": name,
                    "path": format!("{}\\{name}", project.name),
                    "attributes": {
                        "startDate": start.format("%Y-%m-%dT00:00:00Z").to_string(),
                        "finishDate": finish.format("%Y-%m-%dT00:00:00Z").to_string(),
                        "timeFrame": frame,
                    },
                    "url": format!("{org}/{}/{}/_apis/work/teamsettings/iterations/{id}", project.id, project.default_team_id),
                })
            })
            .collect()
    }

    /// The area tree of a project.
    pub(crate) fn area_tree(&self, project: &Project) -> AreaNode {
        let p = self.project_position(project);
        let base = (p as u64 + 1) * 100;
        let node = |n: u64, name: &str, relative: &str, children: Vec<AreaNode>| AreaNode {
            id: base + n,
            identifier: stable_id(KIND_AREA, index(p), u32::try_from(n).unwrap_or(0)),
            name: name.to_string(),
            relative: relative.to_string(),
            children,
        };
        node(
            0,
            &project.name,
            "",
            vec![
                node(1, "Frontend", "Frontend", Vec::new()),
                node(
                    2,
                    "Backend",
                    "Backend",
                    vec![node(3, "API", "Backend\\API", Vec::new())],
                ),
            ],
        )
    }

    /// A classification node as the API renders it, children down to `depth` levels.
    pub(crate) fn area_json(
        &self,
        urls: &Urls,
        project: &Project,
        node: &AreaNode,
        depth: usize,
    ) -> Value {
        let org = &urls.organization_url;
        let (path, url) = if node.relative.is_empty() {
            (
                format!("\\{}\\Area", project.name),
                format!("{org}/{}/_apis/wit/classificationNodes/Areas", project.id),
            )
        } else {
            (
                format!("\\{}\\Area\\{}", project.name, node.relative),
                format!(
                    "{org}/{}/_apis/wit/classificationNodes/Areas/{}",
                    project.id,
                    node.relative.replace('\\', "/")
                ),
            )
        };
        let mut value = json!({
            "id": node.id,
            "identifier": node.identifier,
            "name": node.name,
            "structureType": "area",
            "hasChildren": !node.children.is_empty(),
            "path": path,
            "_links": {"self": {"href": url}},
            "url": url,
        });
        if depth > 0
            && !node.children.is_empty()
            && let Value::Object(map) = &mut value
        {
            let children = node
                .children
                .iter()
                .map(|child| self.area_json(urls, project, child, depth - 1))
                .collect();
            map.insert("children".into(), Value::Array(children));
        }
        value
    }

    /// The project's properties (tags and a process template), as `{name, value}` pairs.
    pub(crate) fn project_properties(&self, project: &Project) -> Vec<Value> {
        let p = self.project_position(project);
        let mut properties = vec![
            json!({"name": "System.CurrentProcessTemplateId", "value": "adcc42ab-9882-485e-a3ed-7678f01f66bc"}),
            json!({"name": "System.Process Template", "value": "Agile"}),
        ];
        let mut tags = vec!["sim"];
        if p == 0 {
            tags.push("legacy");
        }
        for tag in tags {
            properties.push(json!({"name": format!("{TAG_PREFIX}{tag}"), "value": "True"}));
        }
        properties
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ado::AdoSimConfig;

    #[test]
    fn groups_memberships_and_areas_are_deterministic() {
        let org = Organization::seed(&AdoSimConfig::default());
        let urls = Urls::new("127.0.0.1:1", "acme");
        let groups = org.groups(&urls);
        assert_eq!(groups.len(), 1 + 2 * org.projects.len());
        assert_eq!(groups[0].groups, vec![groups[1].descriptor.clone()]);
        let contributors = &groups[1];
        let readers = &groups[2];
        assert_eq!(
            contributors.users.len() + readers.users.len(),
            org.users.len()
        );
        let project = &org.projects[0];
        let tree = org.area_json(&urls, project, &org.area_tree(project), 5);
        assert_eq!(
            tree["children"][1]["children"][0]["path"],
            "\\project-0\\Area\\Backend\\API"
        );
        let shallow = org.area_json(&urls, project, &org.area_tree(project), 0);
        assert!(shallow.get("children").is_none());
        assert_eq!(shallow["hasChildren"], true);
    }
}
