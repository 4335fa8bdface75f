//! `adoport dlq`: list, show, requeue and purge dead-lettered messages.
//!
//! There is one DLQ per kind of work queue: `raw` (raw events transform could not read),
//! `changes` (entity changes Port refused or that ran out of attempts) and `resync` (resync
//! requests). Listing leaves the letters in place; requeue puts the selected ones back into the
//! work queue each came from; purge drops them all.

use std::io::Write;

use anyhow::{Context, bail};

use adoport_shared::bus::{Bus, DeadLetter};
use adoport_shared::topology::DeadLetterQueue;

use crate::cli::{DlqAction, DlqArgs, DlqName};

impl From<DlqName> for DeadLetterQueue {
    fn from(name: DlqName) -> Self {
        match name {
            DlqName::Raw => DeadLetterQueue::Raw,
            DlqName::Changes => DeadLetterQueue::Changes,
            DlqName::Resync => DeadLetterQueue::ResyncRequests,
        }
    }
}

/// Which letters a requeue takes: all, those at the given positions, and/or those whose reason
/// or body contains a text.
#[derive(Debug, Clone, Default)]
pub struct LetterFilter {
    pub positions: Vec<usize>,
    pub contains: Option<String>,
}

impl LetterFilter {
    pub fn selects(&self, position: usize, letter: &DeadLetter) -> bool {
        let by_position = self.positions.is_empty() || self.positions.contains(&position);
        let by_text = self.contains.as_deref().is_none_or(|text| {
            letter.reason.contains(text) || String::from_utf8_lossy(&letter.body).contains(text)
        });
        by_position && by_text
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// Runs one `adoport dlq` action on `bus`, writing what it found and did to `out`.
pub async fn run(bus: &Bus, args: &DlqArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let queue = DeadLetterQueue::from(args.queue);
    let name = bus.topology().dead_letter_queue(queue);
    match &args.action {
        DlqAction::List { limit } => {
            let total = bus.dead_letter_count(queue).await?;
            let letters = bus
                .list_dead_letters(queue, *limit)
                .await
                .with_context(|| format!("cannot list {name}"))?;
            writeln!(out, "{name}: {total} dead letter(s)")?;
            for (position, letter) in letters.iter().enumerate() {
                writeln!(
                    out,
                    "{position:>5}  from {}  {}  | {}",
                    if letter.origin_queue.is_empty() {
                        "?"
                    } else {
                        &letter.origin_queue
                    },
                    one_line(&letter.reason, 160),
                    one_line(&String::from_utf8_lossy(&letter.body), 80),
                )?;
            }
            if (letters.len() as u64) < total {
                writeln!(
                    out,
                    "… {} more (raise --limit)",
                    total - letters.len() as u64
                )?;
            }
        }
        DlqAction::Show { position } => {
            let letters = bus
                .list_dead_letters(queue, position.saturating_add(1))
                .await
                .with_context(|| format!("cannot read {name}"))?;
            let Some(letter) = letters.get(*position) else {
                bail!(
                    "{name} has {} dead letter(s); there is no position {position} (see `adoport dlq {} list`)",
                    letters.len(),
                    args.queue.as_str()
                );
            };
            writeln!(out, "position: {position}")?;
            writeln!(out, "from queue: {}", letter.origin_queue)?;
            writeln!(out, "reason: {}", letter.reason)?;
            let body = serde_json::from_slice::<serde_json::Value>(&letter.body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&letter.body).into_owned());
            writeln!(out, "body:\n{body}")?;
        }
        DlqAction::Requeue {
            positions,
            contains,
            all,
        } => {
            if !*all && positions.is_empty() && contains.is_none() {
                bail!(
                    "say which letters to requeue: --all, --position N (repeatable) or --contains TEXT"
                );
            }
            let filter = LetterFilter {
                positions: positions.clone(),
                contains: contains.clone(),
            };
            let outcome = bus
                .requeue_dead_letters(queue, &|position, letter| filter.selects(position, letter))
                .await
                .with_context(|| format!("cannot requeue from {name}"))?;
            writeln!(
                out,
                "{name}: {} requeued to their work queues, {} left (not selected), {} left (origin queue unknown)",
                outcome.requeued, outcome.kept, outcome.unknown_origin
            )?;
        }
        DlqAction::Purge => {
            let purged = bus
                .purge_dead_letters(queue)
                .await
                .with_context(|| format!("cannot purge {name}"))?;
            writeln!(out, "{name}: {purged} dead letter(s) purged")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn filter_selects_by_position_and_text() {
        let letter = DeadLetter {
            body: Bytes::from_static(b"{\"kind\":\"repository\"}"),
            reason: "Port answered 422: invalid property".into(),
            origin_queue: "port.changes.p0".into(),
        };
        assert!(LetterFilter::default().selects(3, &letter));
        let at = LetterFilter {
            positions: vec![1, 2],
            contains: None,
        };
        assert!(at.selects(1, &letter) && !at.selects(0, &letter));
        let text = |t: &str| LetterFilter {
            positions: vec![],
            contains: Some(t.into()),
        };
        assert!(text("422").selects(0, &letter));
        assert!(text("repository").selects(0, &letter));
        assert!(!text("429").selects(0, &letter));
    }
}
