//! `adoport demo`: the whole pipeline against simulated Azure DevOps and Port, in one command.
//!
//! Starts the simulators, runs a resync through ingest → transform → publish, sends a few
//! webhooks (a rename, a malformed body, one without credentials) and prints what Port holds.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{BusChoice, DemoArgs};
use crate::pipeline::{Pipeline, Roles};
use crate::sim::{PATIENCE, SimulatedWorld, WEBHOOK_SECRET, default_mapping};
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::port_app_config::PortAppConfig;

/// A `git.repo.renamed` service-hook envelope, shaped as Azure DevOps sends it.
pub fn repo_renamed_event(repository: &Value) -> Value {
    json!({
        "subscriptionId": "00000000-0000-0000-0000-00000000d001",
        "notificationId": 1,
        "id": uuid_like(repository),
        "eventType": "git.repo.renamed",
        "publisherId": "tfs",
        "message": {"text": "A repository was renamed"},
        "resource": {"repository": repository},
        "resourceVersion": "1.0",
        "resourceContainers": {"project": {"id": repository.pointer("/project/id").cloned().unwrap_or(Value::Null)}},
        "createdDate": chrono::Utc::now().to_rfc3339(),
    })
}

fn uuid_like(repository: &Value) -> String {
    format!(
        "rename-{}-{}",
        repository.get("id").and_then(Value::as_str).unwrap_or("?"),
        chrono::Utc::now().timestamp_millis()
    )
}

/// The `Authorization` header Azure DevOps sends for a subscription with basic auth.
pub fn basic_auth(secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("port:{secret}"))
    )
}

/// Every role in this process on `bus`, with the webhook receiver on a free local port;
/// the pipeline and the receiver's webhook URL.
pub(crate) async fn start_all_roles(
    settings: &Settings,
    bus: &Bus,
    mapping: PortAppConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Pipeline, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let pipeline = Pipeline::start(
        settings,
        Roles::ALL,
        bus.clone(),
        Some(mapping),
        Some(listener),
        shutdown.clone(),
    )
    .await?;
    let webhook = format!(
        "http://{}{}",
        pipeline.webhook_address.context("ingest listens")?,
        adoport_ingest::webhook::WEBHOOK_PATH
    );
    Ok((pipeline, webhook))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mapping_json = default_mapping(Some(&["project", "repository"]))?;
    let mapping = PortAppConfig::from_json_value(mapping_json.clone())?;
    let world = SimulatedWorld::start(args.projects, args.repositories, mapping_json).await?;
    let prefix = format!("demo-{}.", std::process::id());
    let broker = match args.bus {
        BusChoice::Rabbit => Some((args.amqp_url.as_str(), prefix.as_str())),
        BusChoice::Memory => None,
    };
    let settings = world.settings(broker)?;
    let shutdown = CancellationToken::new();
    let bus = Bus::for_settings(&settings, shutdown.clone()).await?;
    println!(
        "adoport demo: {} projects × {} repositories, {} bus",
        args.projects,
        args.repositories,
        match args.bus {
            BusChoice::Memory => "in-process",
            BusChoice::Rabbit => "RabbitMQ",
        }
    );
    println!(
        "  Azure DevOps (simulated): {}",
        world.ado.organization_url()
    );
    println!("  Port (simulated):         {}", world.port.base_url());

    let started = Instant::now();
    let (mut pipeline, webhook) = start_all_roles(&settings, &bus, mapping, &shutdown).await?;

    let done = tokio::time::timeout(PATIENCE, pipeline.next_resync())
        .await
        .context("the resync did not finish in time")?
        .context("the pipeline stopped")?;
    let report = done.report.map_err(anyhow::Error::msg)?;
    let events = report.kinds.values().map(|k| k.events).sum();
    tokio::time::timeout(PATIENCE, pipeline.drained(events))
        .await
        .context("the pipeline did not drain in time")?;
    println!(
        "\n1. Resync: {} items crawled, {} entities in Port after {:.2}s",
        report.items(),
        world.port.entity_count(),
        started.elapsed().as_secs_f64()
    );
    for (blueprint, label) in [
        ("azureDevopsProject", "projects"),
        ("azureDevopsRepository", "repositories"),
    ] {
        let entities = world.port.entities(blueprint);
        println!("   {blueprint}: {} {label}", entities.len());
        for entity in entities.iter().take(3) {
            println!(
                "     - {} \"{}\"",
                entity["identifier"].as_str().unwrap_or("?"),
                entity["title"].as_str().unwrap_or("")
            );
        }
    }

    // 2. A rename in Azure DevOps reaches Port through a webhook.
    let repository = world
        .ado
        .repositories()
        .into_iter()
        .next()
        .context("the simulator has repositories")?;
    let id = repository["id"].as_str().unwrap_or_default().to_string();
    world.ado.rename_repository(&id, "renamed-by-webhook");
    let http = reqwest::Client::new();
    let answer = http
        .post(&webhook)
        .header("Authorization", basic_auth(WEBHOOK_SECRET))
        .json(&repo_renamed_event(&repository))
        .send()
        .await?;
    println!(
        "\n2. Webhook git.repo.renamed → HTTP {}",
        answer.status().as_u16()
    );
    let renamed = world
        .port
        .wait_for(
            |port| {
                port.entity("azureDevopsRepository", &id)
                    .is_some_and(|e| e["title"] == "renamed-by-webhook")
            },
            PATIENCE,
        )
        .await;
    println!("   Port entity {id}: title is now \"renamed-by-webhook\": {renamed}");

    // 3. Bad input gets a clear answer and nothing is queued.
    let malformed = http
        .post(&webhook)
        .header("Authorization", basic_auth(WEBHOOK_SECRET))
        .header("content-type", "application/json")
        .body("{\"eventType\": ")
        .send()
        .await?;
    let unauthenticated = http
        .post(&webhook)
        .json(&repo_renamed_event(&repository))
        .send()
        .await?;
    println!(
        "\n3. Malformed webhook → HTTP {}; webhook without credentials → HTTP {}",
        malformed.status().as_u16(),
        unauthenticated.status().as_u16()
    );

    println!(
        "\nRequests: Azure DevOps {}, Port {}",
        world.ado.total_requests(),
        world.port.total_requests()
    );
    pipeline.stop().await?;
    if args.bus == BusChoice::Rabbit {
        bus.delete_topology().await?;
    }
    bus.close().await;
    world.shutdown().await;
    if !renamed {
        bail!("the webhook's change did not reach Port");
    }
    Ok(ExitCode::SUCCESS)
}
