//! Where a live event's time goes: the moments a webhook's raw event passes each stage of the
//! pipeline, kept only while a benchmark asks for them ([`enable`]), so that
//! `adoport bench --mode live-events` can say which stage a slow webhook waited in.
//!
//! Off (the default) a [`record`] is one relaxed atomic load. On, it keeps the first moment of
//! each stage per raw event id, for at most [`CAPACITY`] events (later ones are not kept): the
//! stages run in one process when the benchmark runs the whole pipeline in it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use uuid::Uuid;

/// Raw events whose stages are kept at most.
pub const CAPACITY: usize = 100_000;

/// A stage of a live event on its way to Port, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// ingest hands the webhook's raw event to the bus.
    RawPublishing,
    /// The broker confirmed the raw event (ingest answers the webhook now).
    RawConfirmed,
    /// transform took the raw event from its queue.
    TransformReceived,
    /// transform mapped it into changes (after waiting for a mapping thread).
    Mapped,
    /// The broker confirmed the changes.
    ChangesConfirmed,
    /// publish took one of its changes from a partition.
    PublishReceived,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::RawPublishing,
        Stage::RawConfirmed,
        Stage::TransformReceived,
        Stage::Mapped,
        Stage::ChangesConfirmed,
        Stage::PublishReceived,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The moments one raw event passed each stage (`None`: not seen).
pub type Moments = [Option<Instant>; Stage::ALL.len()];

static ENABLED: AtomicBool = AtomicBool::new(false);
static MOMENTS: OnceLock<Mutex<HashMap<Uuid, Moments>>> = OnceLock::new();

fn moments() -> &'static Mutex<HashMap<Uuid, Moments>> {
    MOMENTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Starts keeping the stages of live events (a benchmark; nothing else turns it on).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether stages are kept.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Notes that the live raw event `raw_event_id` passed `stage` now (the first time counts).
pub fn record(raw_event_id: Uuid, stage: Stage) {
    if !enabled() {
        return;
    }
    let now = Instant::now();
    let mut all = moments().lock().unwrap_or_else(|e| e.into_inner());
    let full = all.len() >= CAPACITY;
    match all.get_mut(&raw_event_id) {
        Some(known) => {
            known[stage.index()].get_or_insert(now);
        }
        None if !full => {
            let mut fresh: Moments = [None; Stage::ALL.len()];
            fresh[stage.index()] = Some(now);
            all.insert(raw_event_id, fresh);
        }
        None => {}
    }
}

/// The moments kept for `raw_event_id`, taken out.
pub fn take(raw_event_id: &Uuid) -> Option<Moments> {
    moments()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(raw_event_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_moment_of_each_stage_once_enabled() {
        let id = Uuid::new_v4();
        enable();
        record(id, Stage::Mapped);
        let first = take(&id).and_then(|m| m[Stage::Mapped.index()]);
        record(id, Stage::RawPublishing);
        record(id, Stage::RawPublishing);
        let moments = take(&id).expect("kept");
        assert!(first.is_some());
        assert!(moments[Stage::RawPublishing.index()].is_some());
        assert!(moments[Stage::Mapped.index()].is_none(), "taken before");
        assert!(take(&id).is_none(), "taken out");
    }
}
