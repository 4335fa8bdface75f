//! The publish replicas share the change partitions by themselves: this task keeps this
//! replica's [`View`] of the others from their heartbeats and tells the worker which
//! partitions are its share ([`share_of`]).
//!
//! - Every `heartbeat` it announces itself (a [`MemberBeat`]) on the members exchange, and at
//!   once when it hears a replica it did not know (so a newcomer learns who is there within a
//!   round trip, not a heartbeat).
//! - A replica not heard for `timeout` is out of the view; one that says it is leaving is out
//!   at once. A killed replica's partitions are therefore taken within the timeout.
//! - The first share is published one heartbeat after start, once the others had a chance to
//!   answer: a newcomer that took every partition for a moment would only hand them back.
//! - On stop (shutdown, or a fatal error of the worker) it announces that it is leaving, so the
//!   others subscribe to its partitions while it drains; under single active consumer they
//!   become active when its consumers close.
//!
//! What a change of share means for the partitions' consumers (subscribe at once, hand over
//! only after settling) is the worker's (`crate::worker`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use adoport_shared::bus::Bus;
use adoport_shared::messages::{MemberBeat, decode, encode};
use adoport_shared::metrics::PartitionShare;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::membership::{View, share_of};

/// How often a replica says it is there, and how long the others wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipTiming {
    pub heartbeat: Duration,
    pub timeout: Duration,
}

/// The membership task of one replica.
pub(crate) struct Sharing {
    pub(crate) bus: Bus,
    pub(crate) heard: mpsc::Receiver<Bytes>,
    pub(crate) me: String,
    pub(crate) partitions: u16,
    pub(crate) timing: MembershipTiming,
    /// This replica's share, for the worker.
    pub(crate) share: watch::Sender<Vec<u16>>,
    pub(crate) gauges: PartitionShare,
    pub(crate) stop: CancellationToken,
}

impl Sharing {
    /// Runs until `stop`, then announces that this replica leaves.
    pub(crate) async fn run(mut self) {
        let beat_now = Arc::new(Notify::new());
        let beats = tokio::spawn(announce(
            self.bus.clone(),
            self.me.clone(),
            self.timing.heartbeat,
            beat_now.clone(),
            self.stop.clone(),
        ));
        let mut view = View::new(self.me.clone(), self.timing.timeout);
        // The first share waits one heartbeat for the others' answers.
        let mut settled_at = Some(Instant::now() + self.timing.heartbeat);
        let mut current: Option<Vec<u16>> = None;
        loop {
            let wake = [settled_at, view.next_expiry()].into_iter().flatten().min();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                heard = self.heard.recv() => {
                    let Some(body) = heard else { break };
                    match decode::<MemberBeat>(&body) {
                        Ok(beat) if beat.leaving => {
                            view.left(&beat.member);
                        }
                        Ok(beat) => {
                            if view.heard(&beat.member, Instant::now()) {
                                // A newcomer: let it hear this replica now.
                                beat_now.notify_one();
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring an unreadable publish heartbeat (a replica of another adoport version?)"),
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    if settled_at.is_some_and(|at| at <= Instant::now()) {
                        settled_at = None;
                    }
                }
            }
            view.expire(Instant::now());
            if settled_at.is_none() {
                self.publish_share(&view, &mut current);
            }
        }
        self.stop.cancel();
        let _ = beats.await;
        let leaving = encode(&MemberBeat::new(self.me.clone(), true));
        match self.bus.announce_member(leaving).await {
            Ok(()) => {
                tracing::info!(member = %self.me, "told the other publish replicas this one leaves")
            }
            Err(e) => {
                tracing::warn!(member = %self.me, error = %e, "could not tell the other publish replicas this one leaves; they take its partitions after ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS")
            }
        }
    }

    /// Tells the worker this replica's share when it changed, with one INFO line.
    fn publish_share(&self, view: &View, current: &mut Option<Vec<u16>>) {
        let members = view.members();
        self.gauges.set_members(members.len());
        let share = share_of(&members, &self.me, self.partitions);
        if current.as_ref() == Some(&share) {
            return;
        }
        let before: BTreeSet<u16> = current.iter().flatten().copied().collect();
        let after: BTreeSet<u16> = share.iter().copied().collect();
        let gained: Vec<u16> = after.difference(&before).copied().collect();
        let lost: Vec<u16> = before.difference(&after).copied().collect();
        tracing::info!(
            member = %self.me,
            members = members.len(),
            member_ids = ?members.iter().map(|m| short(m)).collect::<Vec<_>>(),
            partitions = ?share,
            gained = ?gained,
            lost = ?lost,
            "publish partitions assigned"
        );
        self.gauges.changed();
        *current = Some(share.clone());
        // The worker ends only after this task (it waits for it): a send cannot fail.
        let _ = self.share.send(share);
    }
}

/// A member id, short enough for a log line (uuids differ in their first characters).
fn short(member: &str) -> &str {
    member.get(..8).unwrap_or(member)
}

/// Announces this replica every `heartbeat`, and when asked to, until `stop`.
async fn announce(
    bus: Bus,
    me: String,
    heartbeat: Duration,
    now: Arc<Notify>,
    stop: CancellationToken,
) {
    let body = Bytes::from(encode(&MemberBeat::new(me, false)));
    let mut ticks = tokio::time::interval(heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
            _ = now.notified() => {}
        }
        match bus.announce_member(body.clone()).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                // The broker being away is logged by the bus; say it here once per outage.
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot send this publish replica's heartbeat; the others take its partitions if it stays silent for ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS");
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::topology::Topology;

    fn beat(member: &str, leaving: bool) -> Bytes {
        Bytes::from(encode(&MemberBeat::new(member, leaving)))
    }

    /// The share the worker is told, once it changes.
    async fn next_share(share: &mut watch::Receiver<Vec<u16>>) -> (Vec<u16>, Instant) {
        share.changed().await.expect("sharing runs");
        (share.borrow_and_update().clone(), Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn the_share_follows_the_members_heard_joining_timing_out_and_leaving() {
        let stop = CancellationToken::new();
        let bus = Bus::memory(Topology::new("sharing.", 12), stop.clone());
        let (beats, heard) = mpsc::channel(16);
        let (share, mut told) = watch::channel(Vec::new());
        let gauges = PartitionShare::default();
        let start = Instant::now();
        let task = tokio::spawn(
            Sharing {
                bus,
                heard,
                me: "m-b".into(),
                partitions: 12,
                timing: MembershipTiming {
                    heartbeat: Duration::from_secs(1),
                    timeout: Duration::from_secs(5),
                },
                share,
                gauges: gauges.clone(),
                stop: stop.clone(),
            }
            .run(),
        );
        // Two others answer at once; the first share waits one heartbeat for them.
        beats.send(beat("m-a", false)).await.expect("send");
        beats.send(beat("m-c", false)).await.expect("send");
        let (first, at) = next_share(&mut told).await;
        assert_eq!(first, share_of(&["m-a", "m-b", "m-c"], "m-b", 12));
        assert_eq!(at - start, Duration::from_secs(1));
        assert_eq!(gauges.snapshot().members, 3);
        // m-a keeps beating, m-c falls silent: it is out 5 s after it was last heard.
        let keep_beating = {
            let beats = beats.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if beats.send(beat("m-a", false)).await.is_err() {
                        return;
                    }
                }
            })
        };
        let (second, at) = next_share(&mut told).await;
        assert_eq!(second, share_of(&["m-a", "m-b"], "m-b", 12));
        assert_eq!(at - start, Duration::from_secs(5));
        assert_eq!(gauges.snapshot().members, 2);
        // m-a leaves: out at once, and a beat of it still on its way does not bring it back.
        keep_beating.abort();
        beats.send(beat("m-a", true)).await.expect("send");
        beats.send(beat("m-a", false)).await.expect("send");
        let (third, at) = next_share(&mut told).await;
        assert_eq!(third, (0..12).collect::<Vec<_>>());
        assert!(at - start < Duration::from_secs(6));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(*told.borrow(), third, "nothing changed since");
        assert_eq!(gauges.snapshot().changes, 3);
        stop.cancel();
        task.await.expect("sharing ends on stop");
    }
}
