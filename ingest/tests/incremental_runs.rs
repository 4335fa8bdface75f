//! Incremental `pipeline-run` against the Azure DevOps simulator, as the Python integration
//! reads it: the runs Analytics OData says completed since the cursor (the exact query, no
//! `api-version`, `@odata.nextLink` followed across pages, the Analytics host on Azure DevOps
//! Services), each read on its own and built exactly as a full read builds it; a project whose
//! Analytics answers 403 is skipped, not failed.

use std::collections::BTreeMap;

use adoport_ingest::KindPlan;
use adoport_ingest::ado::AdoClient;
use adoport_ingest::cursors::iso;
use adoport_shared::config::{AzureDevopsAccess, NetworkSettings, ProxySetting, Secret};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;

use support::crawl::{CrawlHarness, crawl_harness, pages, plan};

const ODATA: &str = "GET /{org}/{project}/_odata/v4.0-preview/PipelineRuns";
const GET_RUN: &str = "GET /{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}";
const GET_PIPELINE: &str = "GET /{org}/{project}/_apis/pipelines/{pipelineId}";

/// A simulator whose Analytics pages hold one row, so that every answer of two rows or more
/// crosses a next link.
async fn harness() -> CrawlHarness {
    crawl_harness(
        AdoSimConfig {
            analytics_page_size: 1,
            ..AdoSimConfig::default()
        },
        "sim-pat",
        "incremental-runs.",
        |crawler| crawler.with_limits(pages(2)),
    )
    .await
}

fn incremental(since: chrono::DateTime<chrono::Utc>) -> KindPlan {
    let mut plan = plan("pipeline-run", json!({}));
    plan.since = Some(since);
    plan
}

/// The items of `kind`, by id.
fn by_id(items: &BTreeMap<String, Vec<Value>>, kind: &str) -> BTreeMap<u64, Value> {
    items
        .get(kind)
        .into_iter()
        .flatten()
        .map(|item| (item["id"].as_u64().expect("id"), item.clone()))
        .collect()
}

#[tokio::test]
async fn completed_runs_are_found_through_analytics_and_built_as_a_full_read_builds_them() {
    let h = harness().await;
    let projects = h.sim.projects();
    let project = projects[0]["id"].as_str().expect("id").to_string();
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    // Three runs start in the first project; two complete, one is still running.
    let first = h.sim.start_pipeline_run(&project, 1).expect("run");
    let second = h.sim.start_pipeline_run(&project, 2).expect("run");
    let running = h.sim.start_pipeline_run(&project, 1).expect("run");
    h.sim
        .complete_pipeline_run(first, "succeeded")
        .expect("completed");
    h.sim
        .complete_pipeline_run(second, "failed")
        .expect("completed");

    let items = h.crawl_ok(&[incremental(since)]).await;
    let changed = by_id(&items, "pipeline-run");
    assert_eq!(
        changed.keys().copied().collect::<Vec<_>>(),
        [first, second],
        "only the runs completed since the cursor (not the one running, not the seeded ones)"
    );

    // What Analytics was asked, in every project: the Python integration's query, no
    // api-version; the first project's two rows took two pages (a next link followed).
    let queries = h.sim.queries(ODATA);
    let first_pages = queries
        .iter()
        .filter(|q| !q.contains_key("$skiptoken"))
        .count();
    assert_eq!(first_pages, projects.len(), "{queries:?}");
    // The next link keeps the query as asked.
    for query in &queries {
        assert_eq!(query["$select"], "PipelineRunId,CompletedDate");
        assert_eq!(
            query["$expand"],
            "Pipeline($select=PipelineId,PipelineName)"
        );
        assert_eq!(query["$filter"], format!("CompletedDate ge {}", iso(since)));
        assert_eq!(query["$orderby"], "CompletedDate desc");
        assert!(!query.contains_key("api-version"), "{query:?}");
        assert!(!query.contains_key("$top"), "{query:?}");
    }
    assert_eq!(h.requests(ODATA), projects.len() as u64 + 1, "{queries:?}");
    assert!(queries.iter().any(|q| q.contains_key("$skiptoken")));
    // One read per run, one per pipeline.
    h.assert_requests(GET_RUN, 2);
    h.assert_requests(GET_PIPELINE, 2);

    // A full read yields the same items for these runs.
    let full = by_id(
        &h.crawl_ok(&[plan("pipeline-run", json!({}))]).await,
        "pipeline-run",
    );
    assert!(full.contains_key(&running));
    for (id, item) in &changed {
        assert_eq!(Some(item), full.get(id), "run {id}");
    }
    assert_eq!(changed[&first]["__pipeline"]["id"], 1);
    assert_eq!(changed[&first]["__project"]["id"], project.as_str());
}

#[tokio::test]
async fn a_project_whose_analytics_refuses_is_skipped_not_failed() {
    let h = harness().await;
    let forbidden = h.forbid_project(1);
    let open = h.sim.projects()[0]["id"].as_str().expect("id").to_string();
    let run = h.sim.start_pipeline_run(&open, 2).expect("run");
    h.sim
        .complete_pipeline_run(run, "succeeded")
        .expect("completed");
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);

    let items = h.crawl_ok(&[incremental(since)]).await;
    assert_eq!(
        by_id(&items, "pipeline-run")
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [run]
    );
    assert!(!forbidden.is_empty());
}

#[tokio::test]
async fn analytics_is_asked_on_its_own_host_on_azure_devops_services() {
    // Every request reaches the simulator through a proxy, so that it sees the host names.
    let sim = AdoSim::start(AdoSimConfig {
        analytics_page_size: 1,
        ..AdoSimConfig::default()
    })
    .await
    .expect("simulator starts");
    let access = AzureDevopsAccess {
        organization_url: "http://dev.azure.com/acme".to_string(),
        personal_access_token: Secret::new("sim-pat"),
        timeout_secs: 10,
        network: NetworkSettings {
            http_proxy: Some(ProxySetting {
                variable: "HTTP_PROXY".into(),
                url: sim.base_url(),
            }),
            ..Default::default()
        },
    };
    let client = AdoClient::new(&access, 8, CancellationToken::new()).expect("client");
    let project = sim.projects()[0]["id"].as_str().expect("id").to_string();
    for pipeline in [1, 2] {
        let run = sim.start_pipeline_run(&project, pipeline).expect("run");
        sim.complete_pipeline_run(run, "succeeded")
            .expect("completed");
    }
    let since = iso(chrono::Utc::now() - chrono::Duration::minutes(5));
    let id = adoport_ingest::ado::ProjectId::new(project.clone());
    let mut rows = Vec::new();
    let mut link: Option<String> = None;
    loop {
        let page = client
            .completed_pipeline_runs_page(&id, &since, link.as_deref())
            .await
            .expect("analytics page");
        rows.extend(page.items);
        match page.continuation_token {
            Some(next) => {
                assert!(
                    next.starts_with("http://analytics.dev.azure.com/acme/"),
                    "{next}"
                );
                link = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0]["Pipeline"]["PipelineId"].is_u64(), "{rows:?}");
    // The organization host does not serve OData: a client that asked it would fail.
    let wrong = client
        .get_json(
            &format!("http://dev.azure.com/acme/{project}/_odata/v4.0-preview/PipelineRuns"),
            &[],
        )
        .await;
    assert!(wrong.is_err());
    sim.shutdown().await;
}
