//! `adoport replay`: read raw events back from the archive stream and either show what the
//! current mapping makes of them (dry run, the default) or put them back into the pipeline.
//!
//! The archive is read by age (`--since 10m`), time (`--since 2025-01-31T12:00:00Z`) or offset
//! (`--offset 1234`), and filtered by kind, event type and object id. A dry run prints each
//! entity the mapping produces and how it differs from what Port holds now
//! (`GET /v1/blueprints/{bp}/entities/{id}`). `--apply` publishes the matching events straight
//! into the raw work queue (not through the raw exchange, so they are not archived twice); they
//! keep their id and observation time, so publish's ordering guard treats them as the old
//! observations they are. Both end with how many events were read, matched and replayed.

use crate::port_reader::PortReader;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use adoport_shared::bus::{ArchiveStart, Bus};
use adoport_shared::messages::{ChangeOp, RawEvent, decode, encode};
use adoport_shared::topology::WorkQueue;
use adoport_transform::mapping::CompiledMapping;

/// Events per confirmed publish batch when applying.
const APPLY_BATCH: usize = 100;
/// A progress line at most this often on long runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Which archived events a replay takes.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Mapping kinds (any of them); empty: every kind.
    pub kinds: Vec<String>,
    /// A webhook event type (`git.push`), or `resync` for crawled pages.
    pub event_type: Option<String>,
    /// Only items whose `id` is this; the events keep just those items.
    pub id: Option<String>,
    /// Events observed after this time are left out.
    pub until: Option<DateTime<Utc>>,
    /// Events observed before this time are left out (the stream starts at chunk granularity).
    pub since: Option<DateTime<Utc>>,
}

fn item_id(item: &Value) -> Option<String> {
    match item.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ReplayFilter {
    /// The event as the replay takes it (items narrowed to `id`), or `None` when it does not match.
    pub fn select(&self, mut event: RawEvent) -> Option<RawEvent> {
        if !self.kinds.is_empty() && !self.kinds.contains(&event.kind) {
            return None;
        }
        if let Some(wanted) = &self.event_type {
            let matches = match &event.origin {
                adoport_shared::messages::Origin::Webhook { event_type, .. } => {
                    event_type == wanted
                }
                adoport_shared::messages::Origin::Resync { .. } => wanted == "resync",
            };
            if !matches {
                return None;
            }
        }
        if self.until.is_some_and(|until| event.observed_at > until)
            || self.since.is_some_and(|since| event.observed_at < since)
        {
            return None;
        }
        if let Some(id) = &self.id {
            event
                .items
                .retain(|item| item_id(item).as_deref() == Some(id.as_str()));
            if event.items.is_empty() {
                return None;
            }
        }
        Some(event)
    }
}

/// What a replay does with the matching events.
pub enum ReplayMode {
    /// Show the entities the mapping makes, compared with Port when `port` is given.
    DryRun {
        mapping: Box<CompiledMapping>,
        port: Option<PortReader>,
        /// Entities printed in full; the rest are only counted.
        show: usize,
    },
    /// Publish the matching events into the raw work queue.
    Apply,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Archived messages read.
    pub read: u64,
    /// Messages that are not readable raw events (skipped).
    pub unreadable: u64,
    /// Events that passed the filter.
    pub matched: u64,
    /// Events published back into the pipeline (`--apply`).
    pub replayed: u64,
    /// Entity changes the mapping produced (dry run).
    pub entities: u64,
    /// Of those, entities Port holds with the same fields.
    pub same_in_port: u64,
    /// Entities Port holds with different fields.
    pub differ_from_port: u64,
    /// Entities Port does not hold.
    pub missing_in_port: u64,
    /// Stream offset of the last message read.
    pub last_offset: Option<u64>,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {} archived message(s) ({} unreadable), {} matched the filter",
            self.read, self.unreadable, self.matched
        )?;
        if self.replayed > 0 {
            write!(f, ", {} replayed into the raw work queue", self.replayed)?;
        }
        if self.entities > 0 {
            write!(
                f,
                "; the mapping makes {} entity change(s): {} same as in Port, {} different, {} not in Port",
                self.entities, self.same_in_port, self.differ_from_port, self.missing_in_port
            )?;
        }
        if let Some(offset) = self.last_offset {
            write!(f, " (last offset {offset})")?;
        }
        Ok(())
    }
}

/// The fields of `mapped` (title, properties, relations) whose value Port holds differently,
/// as `field: port → mapping` lines.
pub fn differences(mapped: &Value, stored: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let null = Value::Null;
    if let Some(title) = mapped.get("title")
        && stored.get("title").unwrap_or(&null) != title
    {
        out.push(format!(
            "title: {} → {}",
            stored.get("title").unwrap_or(&null),
            title
        ));
    }
    for section in ["properties", "relations"] {
        let empty = Map::new();
        let mapped_fields = mapped
            .get(section)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let stored_fields = stored
            .get(section)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (name, value) in mapped_fields {
            let held = stored_fields.get(name).unwrap_or(&null);
            if held != value {
                out.push(format!("{section}.{name}: {held} → {value}"));
            }
        }
    }
    out
}

/// Parses `--since`: an age in RabbitMQ's syntax (`10m`, `2h`, `7D`) or an RFC 3339 time.
pub fn parse_since(text: &str) -> anyhow::Result<(ArchiveStart, Option<DateTime<Utc>>)> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        let time = time.with_timezone(&Utc);
        return Ok((ArchiveStart::Since(time), Some(time)));
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("--since {text:?}: expected an age such as 10m, 2h, 7D, or a time such as 2025-01-31T12:00:00Z")
    })?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "D" | "d" => n * 86_400,
        _ => bail!("--since {text:?}: the unit must be s, m, h or D (e.g. 10m)"),
    };
    // The broker starts at the age; the event time filter trims the chunk's older neighbours.
    let since = Utc::now() - chrono::Duration::seconds(seconds);
    Ok((ArchiveStart::Since(since), Some(since)))
}

/// Reads the archive from `start` until it is idle for `idle` (or `limit` messages were read)
/// and does `mode` with the events `filter` selects. Writes the dry run's entities to `out`
/// and progress lines to stderr.
pub async fn replay(
    bus: &Bus,
    start: &ArchiveStart,
    filter: &ReplayFilter,
    mode: &ReplayMode,
    idle: Duration,
    limit: Option<u64>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ReplaySummary> {
    let mut reader = bus
        .read_archive(start, idle)
        .await
        .context("cannot read the raw archive stream")?;
    let mut summary = ReplaySummary::default();
    let mut batch = Vec::new();
    let mut last_progress = Instant::now();
    let mut shown = 0usize;
    while limit.is_none_or(|limit| summary.read < limit) {
        let Some(message) = reader.next().await? else {
            break;
        };
        summary.read += 1;
        summary.last_offset = Some(message.offset);
        if last_progress.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "replay: {} read, {} matched, {} replayed (offset {})",
                summary.read, summary.matched, summary.replayed, message.offset
            );
            last_progress = Instant::now();
        }
        let event: RawEvent = match decode(&message.body) {
            Ok(event) => event,
            Err(e) => {
                summary.unreadable += 1;
                tracing::warn!(offset = message.offset, error = %e, "archived message is not a readable raw event; skipped");
                continue;
            }
        };
        let Some(event) = filter.select(event) else {
            continue;
        };
        summary.matched += 1;
        match mode {
            ReplayMode::Apply => {
                batch.push(bytes::Bytes::from(encode(&event)));
                if batch.len() >= APPLY_BATCH {
                    summary.replayed += flush(bus, &mut batch).await?;
                }
            }
            ReplayMode::DryRun {
                mapping,
                port,
                show,
            } => {
                dry_run(
                    &event,
                    mapping,
                    port.as_ref(),
                    *show,
                    &mut shown,
                    &mut summary,
                    message.offset,
                    out,
                )
                .await?;
            }
        }
    }
    summary.replayed += flush(bus, &mut batch).await?;
    reader.close().await;
    Ok(summary)
}

async fn flush(bus: &Bus, batch: &mut Vec<bytes::Bytes>) -> anyhow::Result<u64> {
    let n = batch.len() as u64;
    bus.publish_to_queue(WorkQueue::Raw, std::mem::take(batch))
        .await
        .context("cannot put the replayed events into the raw work queue")?;
    Ok(n)
}

#[allow(clippy::too_many_arguments)]
async fn dry_run(
    event: &RawEvent,
    mapping: &CompiledMapping,
    port: Option<&PortReader>,
    show: usize,
    shown: &mut usize,
    summary: &mut ReplaySummary,
    offset: u64,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    // Map every item first: jq runs synchronously, nothing of it crosses an await.
    let mut changes = Vec::new();
    let mut problems = Vec::new();
    for item in &event.items {
        let outcome = mapping.apply(&event.kind, event.action, item);
        changes.extend(outcome.changes);
        problems.extend(outcome.problems.iter().map(|p| p.to_string()));
    }
    for problem in problems {
        writeln!(
            out,
            "offset {offset} {}: mapping problem: {problem}",
            event.kind
        )?;
    }
    for change in changes {
        summary.entities += 1;
        let (verdict, detail) = match (&change.op, port) {
            (_, None) => ("", Vec::new()),
            (ChangeOp::Upsert { entity }, Some(port)) => {
                match port.entity(&change.blueprint, &change.identifier).await? {
                    None => {
                        summary.missing_in_port += 1;
                        ("not in Port", Vec::new())
                    }
                    Some(stored) => {
                        let diff = differences(entity, &stored);
                        if diff.is_empty() {
                            summary.same_in_port += 1;
                            ("same as in Port", diff)
                        } else {
                            summary.differ_from_port += 1;
                            ("differs from Port", diff)
                        }
                    }
                }
            }
            (ChangeOp::Delete, Some(port)) => {
                match port.entity(&change.blueprint, &change.identifier).await? {
                    None => {
                        summary.same_in_port += 1;
                        ("delete: already gone from Port", Vec::new())
                    }
                    Some(_) => {
                        summary.differ_from_port += 1;
                        ("delete: Port still holds it", Vec::new())
                    }
                }
            }
        };
        if *shown >= show {
            continue;
        }
        *shown += 1;
        let op = match &change.op {
            ChangeOp::Upsert { .. } => "upsert",
            ChangeOp::Delete => "delete",
        };
        writeln!(
            out,
            "offset {offset} {} {op} {}/{} {verdict}",
            event.kind, change.blueprint, change.identifier
        )?;
        if let ChangeOp::Upsert { entity } = &change.op {
            writeln!(out, "  {entity}")?;
        }
        for line in detail {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::messages::{Origin, RawAction, ResyncId};
    use serde_json::json;

    fn event(kind: &str, origin: Origin, ids: &[&str]) -> RawEvent {
        RawEvent::new(
            kind,
            origin,
            "https://dev.azure.com/acme",
            RawAction::Upsert,
            ids.iter().map(|id| json!({"id": id})).collect(),
        )
    }

    #[test]
    fn filter_by_kind_event_type_and_id() {
        let push = Origin::Webhook {
            event_type: "git.push".into(),
            delivery_id: "d".into(),
        };
        let resync = Origin::Resync {
            resync_id: ResyncId::new(),
        };
        let all = ReplayFilter::default();
        assert!(
            all.select(event("project", resync.clone(), &["p"]))
                .is_some()
        );

        let kinds = ReplayFilter {
            kinds: vec!["repository".into()],
            ..ReplayFilter::default()
        };
        assert!(
            kinds
                .select(event("project", resync.clone(), &["p"]))
                .is_none()
        );
        assert!(
            kinds
                .select(event("repository", resync.clone(), &["r"]))
                .is_some()
        );

        let pushes = ReplayFilter {
            event_type: Some("git.push".into()),
            ..ReplayFilter::default()
        };
        assert!(
            pushes
                .select(event("repository", push.clone(), &["r"]))
                .is_some()
        );
        assert!(
            pushes
                .select(event("repository", resync.clone(), &["r"]))
                .is_none()
        );
        let crawls = ReplayFilter {
            event_type: Some("resync".into()),
            ..ReplayFilter::default()
        };
        assert!(
            crawls
                .select(event("repository", resync.clone(), &["r"]))
                .is_some()
        );

        let one = ReplayFilter {
            id: Some("r2".into()),
            ..ReplayFilter::default()
        };
        let narrowed = one
            .select(event("repository", resync.clone(), &["r1", "r2", "r3"]))
            .expect("r2 is there");
        assert_eq!(narrowed.items, vec![json!({"id": "r2"})]);
        assert!(one.select(event("repository", resync, &["r1"])).is_none());
    }

    #[test]
    fn since_accepts_ages_and_times_and_names_bad_input() {
        assert!(matches!(
            parse_since("10m"),
            Ok((ArchiveStart::Since(_), Some(_)))
        ));
        assert!(matches!(
            parse_since("2025-01-31T12:00:00Z"),
            Ok((ArchiveStart::Since(_), Some(_)))
        ));
        let err = parse_since("ten minutes").expect_err("not an age");
        assert!(err.to_string().contains("--since"), "{err}");
        let err = parse_since("10y").expect_err("bad unit");
        assert!(err.to_string().contains("unit"), "{err}");
    }

    #[test]
    fn differences_name_the_fields() {
        let mapped = json!({"identifier": "r", "title": "new", "properties": {"url": "u", "x": 1}, "relations": {"project": "p"}});
        let stored = json!({"identifier": "r", "title": "old", "properties": {"url": "u", "x": 2}, "relations": {"project": "p"}});
        let diff = differences(&mapped, &stored);
        assert_eq!(
            diff,
            vec!["title: \"old\" → \"new\"", "properties.x: 2 → 1"]
        );
        assert!(differences(&mapped, &mapped).is_empty());
    }
}
