//! The operator tools as processes: `adoport replay` and `adoport dlq` read the same settings
//! as the roles (the broker URL and prefix, the mapping, Port's credentials), connect, do one
//! job and exit.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use adoport_shared::bus::{ArchiveStart, Bus};
use adoport_shared::config::Settings;
use adoport_transform::mapping::CompiledMapping;

use crate::cli::{DlqArgs, ReplayArgs};
use crate::mapping_source;
use crate::port_reader::PortReader;
use crate::replay::{ReplayFilter, ReplayMode, parse_since};

async fn broker(settings: &Settings, tool: &str) -> anyhow::Result<Bus> {
    let Some(url) = &settings.pipeline.broker.url else {
        bail!(
            "ADOPORT__BROKER__URL is required for `adoport {tool}` (the archive and the dead letters live in RabbitMQ), e.g. amqp://guest:guest@rabbitmq:5672/%2f"
        );
    };
    Bus::rabbit(
        url,
        settings.topology(),
        settings.pipeline.broker.timeouts(),
        CancellationToken::new(),
    )
    .await
    .context("cannot reach the broker")
}

/// `adoport replay`.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env().context("bad setting")?;
    // The mapping sees what the running transform sees (`env`), so the dry run compares alike.
    adoport_transform::expose_environment(settings.jq_environment.variables());
    let bus = broker(&settings, "replay").await?;
    let (start, since) = match (&args.since, args.offset) {
        (Some(text), _) => parse_since(text)?,
        (None, Some(offset)) => (ArchiveStart::Offset(offset), None),
        (None, None) => (ArchiveStart::First, None),
    };
    let until = args
        .until
        .as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| {
                    format!("--until {t:?}: expected a time such as 2025-01-31T12:00:00Z")
                })
        })
        .transpose()?;
    let filter = ReplayFilter {
        kinds: args.kinds.clone(),
        event_type: args.event_type.clone(),
        id: args.id.clone(),
        until,
        since,
    };
    let mode = if args.apply {
        ReplayMode::Apply
    } else {
        let config = mapping_source::load(&settings).await?;
        let mapping = CompiledMapping::compile(&config).context("the mapping does not compile")?;
        let port = if args.no_port {
            None
        } else {
            Some(PortReader::new(
                &settings,
                "the dry run compares with Port (or pass --no-port)",
            )?)
        };
        ReplayMode::DryRun {
            mapping: Box::new(mapping),
            port,
            show: args.show,
        }
    };
    let mut out = std::io::stdout();
    let summary = crate::replay::replay(
        &bus,
        &start,
        &filter,
        &mode,
        Duration::from_millis(args.idle_ms.max(1)),
        args.limit,
        &mut out,
    )
    .await;
    bus.close().await;
    let summary = summary?;
    println!(
        "replay {}: {summary}",
        if args.apply { "applied" } else { "dry run" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `adoport dlq`.
pub async fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env().context("bad setting")?;
    let bus = broker(&settings, "dlq").await?;
    let mut out = std::io::stdout();
    let result = crate::dlq::run(&bus, &args, &mut out).await;
    bus.close().await;
    result.map(|()| ExitCode::SUCCESS)
}
