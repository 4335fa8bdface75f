//! Boards and work kinds: `board` (the organization's teams → each team's boards → board
//! detail, `__project`), `column` (one item per board column and work item type: `__board`,
//! `__stateType`, `__stateName`; the boards are read once for both kinds, kept up to
//! `BOARD_LIST_BYTES`) and `work-item` (WIQL by id range, then `workitemsbatch` 200 at a time;
//! `__projectId`, `__project`; selectors `wiql`, `expand`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, stream};
use serde_json::Value;

use super::KindCrawl;
use super::teams::TEAM_GONE;
use super::{Pages, enrich, text};
use crate::ado::{AdoError, BoardId, ProjectId, TeamId, WORK_ITEMS_BATCH};
use crate::crawl_context::{
    BoundedTexts, CompactList, CrawlError, Crawler, OrganizationList, ResyncCache, compact,
};
use crate::kind::Kind;
use crate::selector::WorkItemSelector;

/// `workitemsbatch` calls of one project in flight at once.
const CONCURRENT_BATCHES: usize = 4;

/// The WIQL for the ids of one project after `after`, in id order (so that a result over the
/// API's 20,000 limit is read in id ranges). The user's clause is wrapped in parentheses and
/// the project name is escaped. An `ORDER BY` the clause ends with (any case) is left out:
/// inside the parentheses it would make the query invalid, and the order items are read in
/// changes nothing in the catalog, while ordering by id lets every item be read (the Python
/// integration keeps the user's order instead and then reads at most 20,000 per project).
/// `changed_since` (an incremental run) adds `[System.ChangedDate] >= '…'`.
pub(crate) fn wiql_query(
    project_name: &str,
    clause: Option<&str>,
    changed_since: Option<&str>,
    after: u64,
) -> String {
    let project = project_name.replace('\'', "''");
    let mut query =
        format!("SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = '{project}'");
    let filter = clause.map(|c| without_order_by(c).trim());
    if let Some(clause) = filter.filter(|c| !c.is_empty()) {
        query.push_str(&format!(" AND ({clause})"));
    }
    // Incremental: the full UTC time, which needs `timePrecision=true` on the request.
    if let Some(since) = changed_since {
        query.push_str(&format!(" AND [System.ChangedDate] >= '{since}'"));
    }
    query.push_str(&format!(
        " AND [System.Id] > {after} ORDER BY [System.Id] ASC"
    ));
    query
}

/// `clause` up to its `ORDER BY` (the keywords in any case, separated by any white space,
/// outside quoted literals and bracketed field names), or all of it.
fn without_order_by(clause: &str) -> &str {
    let bytes = clause.as_bytes();
    let word_at = |at: usize, word: &str| {
        let end = at + word.len();
        clause
            .get(at..end)
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
            && (at == 0 || !is_word(bytes[at - 1]))
            && bytes.get(end).is_none_or(|b| !is_word(*b))
    };
    let mut quote = None;
    for (at, byte) in bytes.iter().enumerate() {
        match (quote, byte) {
            (Some(q), b) if *b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(*byte),
            (None, b'[') => quote = Some(b']'),
            (None, _) if word_at(at, "order") => {
                let rest = &clause[at + "order".len()..];
                let by = rest.len() - rest.trim_start().len();
                if by > 0 && word_at(at + "order".len() + by, "by") {
                    return &clause[..at];
                }
            }
            _ => {}
        }
    }
    clause
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The column items of one board (already carrying `__project`).
pub(crate) fn columns_of(board: &Value) -> Vec<Value> {
    let Some(columns) = board.get("columns").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut items = Vec::new();
    for column in columns {
        let Some(mappings) = column.get("stateMappings").and_then(Value::as_object) else {
            continue;
        };
        for (work_item_type, state) in mappings {
            let item = enrich(column.clone(), "__board", board);
            let item = enrich(item, "__stateType", &Value::String(work_item_type.clone()));
            items.push(enrich(item, "__stateName", state));
        }
    }
    items
}

impl Crawler {
    /// Every team of the organization, from `GET _apis/teams` (the crawl's page size, by
    /// default 100 a page: one request for up to that many teams instead of one teams list
    /// per project), read once per resync for every kind and crawl unit that needs it.
    pub(crate) async fn team_list(
        &self,
        cache: &ResyncCache,
    ) -> Result<Arc<CompactList>, CrawlError> {
        cache
            .teams
            .get_or_read(|| async {
                let top = self.limits.page.max(1);
                let mut teams = Vec::new();
                let mut skip = 0;
                loop {
                    let page = self.client.teams_page(top, skip).await?;
                    let got = page.len();
                    teams.extend(page);
                    if got < top {
                        return Ok(CompactList::from_values(teams));
                    }
                    skip += got;
                }
            })
            .await
    }

    /// Every team of the organization by project id ([`Crawler::team_list`]).
    pub(crate) async fn teams_by_project(
        &self,
        cache: &ResyncCache,
    ) -> Result<HashMap<String, Vec<Value>>, CrawlError> {
        let mut teams: HashMap<String, Vec<Value>> = HashMap::new();
        for team in self.team_list(cache).await?.iter() {
            if let Some(project_id) = text(&team, "projectId") {
                teams.entry(project_id.to_string()).or_default().push(team);
            }
        }
        Ok(teams)
    }

    /// The boards of one project's `teams`, each the list item merged with its detail, plus
    /// `__project`.
    async fn project_boards(
        &self,
        project: &Value,
        teams: &[Value],
    ) -> Result<Vec<Value>, AdoError> {
        let project_id = &ProjectId::new(text(project, "id").unwrap_or_default());
        let mut boards = Vec::new();
        for team in teams {
            let team_id = &TeamId::new(text(team, "id").unwrap_or_default());
            let references = match self.client.boards(project_id, team_id).await {
                Ok(references) => references,
                // The team went away between the list and the read (Azure DevOps says
                // so); any other 404 fails the kind.
                Err(e) if e.says_missing(TEAM_GONE) => continue,
                // Azure DevOps answers 500 for the boards of a team that is in no
                // iteration; the Python integration skips such a team, and so do we once
                // the team's iterations confirm it (any other 500 fails the kind).
                Err(e) if e.status() == Some(500) => {
                    let iterations = self.client.team_iterations(project_id, team_id).await?;
                    if !iterations.is_empty() {
                        return Err(e);
                    }
                    tracing::warn!(
                        project = %project_id,
                        team = %team_id,
                        "Azure DevOps answered 500 for the boards of a team in no iteration: \
                         the team has no boards (assign it an iteration to read them)"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            for reference in references {
                let board_id = &BoardId::new(text(&reference, "id").unwrap_or_default());
                let detail = match self.client.board(project_id, team_id, board_id).await {
                    Ok(detail) => detail,
                    Err(e) if e.says_missing(TEAM_GONE) => continue,
                    Err(e) => return Err(e),
                };
                let mut merged = reference.clone();
                if let (Value::Object(target), Value::Object(source)) = (&mut merged, detail) {
                    target.extend(source);
                }
                boards.push(enrich(merged, "__project", project));
            }
        }
        Ok(boards)
    }

    /// `board` and `column`: reads the boards of every project and publishes them as the
    /// plan's kind (`board` items, or the `column` items derived from them); keeps them for
    /// the other kind of this resync, up to the resync's byte limit
    /// ([`crate::crawl_context::BOARD_LIST_BYTES`]). Past it nothing is kept and the other kind
    /// reads the boards again itself, project by project, as this one did.
    pub(crate) async fn crawl_boards(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let columns = plan.kind == Kind::Column;
        let kind = if columns { Kind::Column } else { Kind::Board };
        // The other kind of the two waits for the boards this crawl reads.
        let cache = crawl.cache;
        let held = cache.boards.lock().await;
        let keeping = match (*held).clone() {
            Some(OrganizationList::Kept(boards)) => {
                drop(held);
                return self.publish_kept_boards(&mut crawl, kind, &boards).await;
            }
            // Too many to keep (the other kind found so): read them again, keeping none.
            Some(OrganizationList::PerProject) => {
                drop(held);
                None
            }
            None => Some((held, BoundedTexts::new(cache.board_list_bytes))),
        };
        let units = self.project_units(cache).await?;
        let teams = &self.teams_by_project(cache).await?;
        let keeping = Mutex::new(keeping);
        let keeping_ref = &keeping;
        self.fan_out(&mut crawl, units, |project, pages: Pages| async move {
            let project_teams = teams.get(text(&project, "id").unwrap_or_default());
            let boards =
                (self.project_boards(&project, project_teams.map_or(&[], Vec::as_slice))).await?;
            {
                let mut keeping = keeping_ref.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((_, kept)) = keeping.as_mut()
                    && !boards.iter().all(|board| kept.push(compact(board)))
                    && let Some((mut held, _)) = keeping.take()
                {
                    // Past the limit: the other kind, waiting for the boards, reads them
                    // itself, starting now.
                    *held = Some(OrganizationList::PerProject);
                }
            }
            let items = if columns {
                boards.iter().flat_map(columns_of).collect()
            } else {
                boards
            };
            pages.send(items).await
        })
        .await?;
        if crawl.report.failure.is_none()
            && let Some((mut held, kept)) = keeping.into_inner().unwrap_or_else(|p| p.into_inner())
        {
            *held = Some(kept.finish());
        }
        Ok(())
    }

    /// Publishes the boards the other of `board` and `column` kept as `kind`: a page at a time
    /// (every column of every board at once, each with its board and project, was about 170 KB
    /// per board held together).
    async fn publish_kept_boards(
        &self,
        crawl: &mut KindCrawl<'_>,
        kind: Kind,
        boards: &CompactList,
    ) -> Result<(), CrawlError> {
        let per_event = self.items_per_event.max(1);
        let mut page = Vec::with_capacity(per_event);
        for board in boards.iter() {
            let items = if kind == Kind::Column {
                columns_of(&board)
            } else {
                vec![board]
            };
            for item in items {
                page.push(item);
                if page.len() == per_event {
                    let full = std::mem::replace(&mut page, Vec::with_capacity(per_event));
                    self.publish(crawl.resync_id, kind, full, crawl.report)
                        .await?;
                }
            }
        }
        if !page.is_empty() {
            self.publish(crawl.resync_id, kind, page, crawl.report)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn crawl_work_items(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let selectors = plan.selectors::<WorkItemSelector>()?;
        let (clause, expand) = WorkItemSelector::query(&selectors);
        let (clause, expand) = (clause.map(String::from), expand.to_string());
        let wiql_page = self.limits.wiql_page;
        let since = plan.since.map(crate::cursors::iso);
        let since = &since;
        let units = self.project_units(crawl.cache).await?;
        let (clause, expand) = (&clause, &expand);
        self.fan_out(&mut crawl, units, |project, pages: Pages| async move {
            let project_id = ProjectId::new(text(&project, "id").unwrap_or_default());
            let project_name = text(&project, "name").unwrap_or_default().to_string();
            let project_id_value = Value::String(project_id.to_string());
            let mut after = 0;
            loop {
                let query = wiql_query(&project_name, clause.as_deref(), since.as_deref(), after);
                let ids = self
                    .client
                    .wiql_ids(&project_id, &query, wiql_page, since.is_some())
                    .await?;
                let mut batches = stream::iter(
                    ids.chunks(WORK_ITEMS_BATCH)
                        .map(<[u64]>::to_vec)
                        .collect::<Vec<_>>(),
                )
                .map(|chunk| {
                    let project_id = &project_id;
                    async move {
                        self.client
                            .work_items_batch(project_id, &chunk, expand)
                            .await
                    }
                })
                .buffered(CONCURRENT_BATCHES);
                while let Some(items) = batches.next().await {
                    let items = items?
                        .into_iter()
                        .map(|item| {
                            let item = enrich(item, "__projectId", &project_id_value);
                            enrich(item, "__project", &project)
                        })
                        .collect();
                    pages.send(items).await?;
                }
                match ids.last() {
                    Some(last) if ids.len() >= wiql_page => after = *last,
                    _ => return Ok(()),
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wiql_pages_by_id_and_escapes_the_project() {
        assert_eq!(
            wiql_query("O'Brien", Some("[System.State] = 'New'"), None, 40),
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'O''Brien' AND ([System.State] = 'New') AND [System.Id] > 40 ORDER BY [System.Id] ASC"
        );
        assert!(!wiql_query("p", None, None, 0).contains("AND ()"));
        assert_eq!(
            wiql_query("p", None, Some("2026-03-01T12:00:00+00:00"), 0),
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'p' AND [System.ChangedDate] >= '2026-03-01T12:00:00+00:00' AND [System.Id] > 0 ORDER BY [System.Id] ASC"
        );
    }

    #[test]
    fn a_clauses_order_by_is_left_out_so_the_query_still_pages_by_id() {
        let paged = |clause| wiql_query("p", Some(clause), None, 7);
        let expected = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'p' AND ([System.State] = 'New') AND [System.Id] > 7 ORDER BY [System.Id] ASC";
        for clause in [
            "[System.State] = 'New' ORDER BY [System.ChangedDate] DESC",
            "[System.State] = 'New' order by [System.Id]",
            "[System.State] = 'New'\n\tOrder\n By [System.Title] asc, [System.Id] desc",
            "[System.State] = 'New'",
        ] {
            assert_eq!(paged(clause), expected, "{clause}");
        }
        let only_order = wiql_query("p", Some("ORDER BY [System.Id] DESC"), None, 0);
        assert_eq!(
            only_order,
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'p' AND [System.Id] > 0 ORDER BY [System.Id] ASC"
        );
        // Inside a literal or a field name, the words are not the clause.
        for kept in [
            "[System.Title] CONTAINS 'order by date'",
            "[Custom.Order By] = 1",
            "[System.Title] = \"x ORDER BY y\"",
            "[Custom.Reorder] = 1 AND [Custom.BY] = 2",
        ] {
            assert!(paged(kept).contains(&format!("AND ({kept})")), "{kept}");
        }
    }

    #[test]
    fn columns_come_one_per_work_item_type() {
        let board = json!({"id": "b", "__project": {"id": "p"}, "columns": [
            {"name": "New", "stateMappings": {"Bug": "New", "User Story": "New"}},
            {"name": "Lane without mappings"}
        ]});
        let columns = columns_of(&board);
        assert_eq!(columns.len(), 2);
        assert_eq!(columns[0]["__stateType"], "Bug");
        assert_eq!(columns[0]["__stateName"], "New");
        assert_eq!(columns[0]["__board"]["__project"]["id"], "p");
    }
}
