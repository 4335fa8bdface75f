//! One leader among the ingest replicas, for the work that must run once however many replicas
//! run: the resync schedule, the start-up resync, the service-hook subscription manager (one per
//! organization), and — started by the caller on each [`Term`] — the poller of Port's resync
//! requests. Every replica, leader or not, takes webhooks, live re-reads and crawls (a crawl
//! comes through the resync request queue, whose single active consumer is independent of
//! this).
//!
//! It owns:
//! - **the election** ([`run`]): a replica leads while it holds the broker lock
//!   `{prefix}adoport.ingest.leader` (an exclusive queue, see `adoport_shared::bus::lock`).
//!   The others try again every `ADOPORT__INGEST__LEADER_RETRY_SECS`. The leader steps down —
//!   cancels its term's tasks — the moment its link reports the connection lost, or when the
//!   broker does not confirm the lock within half the heartbeat (asked every quarter
//!   heartbeat, or more often), and competes again once reconnected;
//! - **the record** ([`LeaderRecord`]), kept in the broker register
//!   `{prefix}adoport.ingest.leader.record` by the leader: when a leader was last alive, when
//!   the last scheduled (or start-up) resync was requested, and the last Port resync request
//!   acted on. A new leader continues from it ([`plan_term`]): the start-up resync belongs to
//!   the installation's start, not to an election, and the schedule keeps its times across
//!   failovers;
//! - **what a term runs**, each task cancelled with the term (a child of the process's
//!   shutdown token).
//!
//! In process (`adoport all` without a broker) the lock is always free: the process leads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ado::AdoClient;
use crate::resync;
use crate::subscriptions::{self, SubscriptionPlan};
use adoport_shared::bus::{Bus, BusError, BusLock, LockAttempt};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{ResyncTrigger, SCHEMA_VERSION};

/// A gap without any leader longer than this is the installation (re)starting, not a failover:
/// the new leader asks for the start-up resync. About how long Azure DevOps retries a webhook
/// that got 503 (8 times over ~3 minutes): past it, events may have been lost meanwhile.
pub const INSTALLATION_GAP: Duration = Duration::from_secs(180);

/// How often the leader rewrites the record, so that the next leader can tell a failover
/// (a fresh record) from a start (an old one or none).
pub const RECORD_REFRESH: Duration = Duration::from_secs(30);

/// How long stepping down waits for the term's tasks before it abandons them.
const STEP_DOWN_PATIENCE: Duration = Duration::from_secs(5);

/// What the leaders keep on the broker across failovers (schema `v` 1; unknown fields are
/// ignored, so an older replica reads a newer record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub v: u32,
    /// When a leader last wrote it (it rewrites it every [`RECORD_REFRESH`]).
    pub written_at: DateTime<Utc>,
    /// Who wrote it (process id and term), for operators.
    #[serde(default)]
    pub leader: String,
    /// When the last scheduled or start-up resync was requested.
    #[serde(default)]
    pub last_scheduled_at: Option<DateTime<Utc>>,
    /// The `updatedAt` of the last Port resync request turned into a resync (POLLING).
    #[serde(default)]
    pub port_request_seen: Option<String>,
}

impl LeaderRecord {
    fn new(now: DateTime<Utc>, leader: &str) -> Self {
        Self {
            v: SCHEMA_VERSION,
            written_at: now,
            leader: leader.to_string(),
            last_scheduled_at: None,
            port_request_seen: None,
        }
    }

    /// The newest readable record among the register's values (normally one); unreadable ones
    /// are logged and skipped (a new leader then starts as if the installation started).
    pub fn newest(values: &[bytes::Bytes]) -> Option<LeaderRecord> {
        values
            .iter()
            .filter_map(|body| match serde_json::from_slice::<LeaderRecord>(body) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable ingest leader record ignored");
                    None
                }
            })
            .max_by_key(|record| record.written_at)
    }
}

/// How a new term starts, decided from the record the last leader left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermStart {
    /// Ask for the start-up resync now.
    pub startup: bool,
    /// When the schedule fires first (`None`: no schedule).
    pub first_scheduled: Option<DateTime<Utc>>,
    /// The record this term starts with (written before anything is requested).
    pub record: LeaderRecord,
}

/// The rule a new leader follows (see the module doc and docs/design.md):
/// - the start-up resync (when the mode asks for one) only if no leader wrote the record in
///   the last [`INSTALLATION_GAP`] (none, or an old one): the installation starts, rather than
///   a leader being replaced;
/// - the schedule continues from the last scheduled (or start-up) request: the next one is
///   due an interval after it (at once if that is past), so a failover neither adds a resync
///   nor restarts the interval; with nothing recorded, an interval from now.
pub fn plan_term(
    previous: Option<&LeaderRecord>,
    now: DateTime<Utc>,
    leader: &str,
    resync_at_start: bool,
    schedule: Option<Duration>,
) -> TermStart {
    let gap = chrono::Duration::from_std(INSTALLATION_GAP).unwrap_or(chrono::Duration::MAX);
    let installation_starts = previous.is_none_or(|r| now - r.written_at > gap);
    let startup = resync_at_start && installation_starts;
    let mut record = previous
        .cloned()
        .unwrap_or_else(|| LeaderRecord::new(now, leader));
    record.v = SCHEMA_VERSION;
    record.written_at = now;
    record.leader = leader.to_string();
    if startup {
        record.last_scheduled_at = Some(now);
    }
    let first_scheduled = schedule.map(|every| {
        let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
        match record.last_scheduled_at {
            Some(last) => (last + every).max(now),
            None => now + every,
        }
    });
    TermStart {
        startup,
        first_scheduled,
        record,
    }
}

/// Where a replica stands.
#[derive(Debug, Clone)]
pub enum Status {
    /// Not yet competing (ingest starting, or ONCE mode).
    Starting,
    Leading(Term),
    /// Another replica holds the lock.
    Following,
    /// Could not compete (the broker is away, or refused the lock): why.
    Waiting(String),
}

/// Whether this replica leads, for `/metrics`, `/readyz` and the tasks started per term
/// outside ingest. Cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    status: Arc<watch::Sender<Status>>,
}

impl Default for Leadership {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Leadership {
    pub fn new() -> Self {
        Self {
            status: Arc::new(watch::channel(Status::Starting).0),
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(&*self.status.borrow(), Status::Leading(_))
    }

    /// One line for `/readyz`.
    pub fn describe(&self) -> String {
        match &*self.status.borrow() {
            Status::Starting => "not competing yet (starting)".into(),
            Status::Leading(term) => format!(
                "leads since {} (runs the resync schedule, Port's resync requests and the service-hook subscriptions)",
                term.started_at()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Status::Following => "follows (another replica leads)".into(),
            Status::Waiting(why) => format!("does not lead: {why}"),
        }
    }

    fn set(&self, status: Status) {
        self.status.send_replace(status);
    }

    /// Runs `work` for every term this replica leads, until `shutdown`; each run gets the term
    /// and should end when [`Term::ended`] completes (it is dropped then otherwise).
    pub async fn each_term<F, Fut>(&self, shutdown: CancellationToken, mut work: F)
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut status = self.status.subscribe();
        loop {
            let term = match &*status.borrow_and_update() {
                Status::Leading(term) => Some(term.clone()),
                _ => None,
            };
            if let Some(term) = term {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = term.ended() => {}
                    _ = work(term.clone()) => term.ended().await,
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// One term of leadership: its tasks run until it ends. Cheap to clone.
#[derive(Clone)]
pub struct Term {
    inner: Arc<TermInner>,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term")
            .field("started_at", &self.inner.started_at)
            .finish()
    }
}

struct TermInner {
    token: CancellationToken,
    started_at: DateTime<Utc>,
    name: String,
    bus: Bus,
    register: String,
    /// The record as last written; writes are serialized by this lock.
    record: Mutex<LeaderRecord>,
}

impl Term {
    /// Completes when the term ends (stepping down, or shutdown).
    pub async fn ended(&self) {
        self.inner.token.cancelled().await
    }

    pub fn is_current(&self) -> bool {
        !self.inner.token.is_cancelled()
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }

    /// The record as this term last wrote it.
    pub async fn record(&self) -> LeaderRecord {
        self.inner.record.lock().await.clone()
    }

    /// Changes the record and writes it to the broker (confirmed). `None` when the term ended
    /// first (nothing more must be done for it); the write's error otherwise.
    pub async fn update(
        &self,
        change: impl FnOnce(&mut LeaderRecord),
    ) -> Option<Result<(), BusError>> {
        let inner = &self.inner;
        let mut current = inner.record.lock().await;
        let mut next = current.clone();
        change(&mut next);
        next.written_at = Utc::now();
        next.leader = inner.name.clone();
        let body = match serde_json::to_vec(&next) {
            Ok(body) => body,
            Err(e) => {
                return Some(Err(BusError::Operation {
                    operation: "encode the ingest leader record".into(),
                    detail: e.to_string(),
                }));
            }
        };
        let written = self
            .during(inner.bus.write_register(&inner.register, body.into()))
            .await?;
        if written.is_ok() {
            *current = next;
        }
        Some(written)
    }

    /// Runs `work` unless the term ends first (`None` then: the work is dropped).
    pub async fn during<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            _ = self.inner.token.cancelled() => None,
            done = work => Some(done),
        }
    }
}

/// The service-hook subscriptions a leader keeps: one manager per organization.
#[derive(Clone)]
pub struct SubscriptionWork {
    pub clients: Vec<AdoClient>,
    pub plan: SubscriptionPlan,
    pub mapping: MappingVersions,
    /// Between checks (`None`: at the start of each term and on mapping changes only).
    pub every: Option<Duration>,
}

/// What the leader runs, and how it competes.
#[derive(Clone)]
pub struct LeaderWork {
    /// Between attempts to lead (a dead leader is replaced within about this long).
    pub retry: Duration,
    /// When ingest started in this process: the start-up resync of its first term is dated
    /// to it, so that a crawl which started since (a resync asked for meanwhile) covers it.
    pub started_at: DateTime<Utc>,
    /// Whether the mode asks for a start-up resync (POLLING with `resync_on_start`).
    pub resync_at_start: bool,
    pub schedule: Option<Duration>,
    pub subscriptions: Option<SubscriptionWork>,
}

/// Competes for leadership until `shutdown`, and while leading runs the term's work.
pub async fn run(bus: Bus, leadership: Leadership, work: LeaderWork, shutdown: CancellationToken) {
    let queues = bus.topology().leader_lock();
    let mut last_problem: Option<String> = None;
    let mut following = false;
    let mut first_term = true;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            attempt = bus.try_lock(&queues) => attempt,
        };
        match attempt {
            Ok(LockAttempt::Held(lock)) => {
                last_problem = None;
                following = false;
                lead(&bus, &leadership, &work, lock, first_term, &shutdown).await;
                first_term = false;
                if shutdown.is_cancelled() {
                    return;
                }
            }
            Ok(LockAttempt::Taken) => {
                if !following {
                    tracing::info!(
                        retry_secs = work.retry.as_secs(),
                        "another ingest replica leads; this one takes webhooks, live re-reads and crawls, and takes over if the leader goes"
                    );
                }
                following = true;
                last_problem = None;
                leadership.set(Status::Following);
            }
            Err(BusError::ShuttingDown) => return,
            Err(e) => {
                let problem = e.to_string();
                if last_problem.as_ref() != Some(&problem) {
                    tracing::warn!(error = %problem, retry_secs = work.retry.as_secs(), "cannot compete for the ingest leadership; trying again");
                }
                following = false;
                leadership.set(Status::Waiting(problem.clone()));
                last_problem = Some(problem);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(work.retry) => {}
        }
    }
}

/// One term: read the record, decide, start the tasks, watch the lock, step down.
async fn lead(
    bus: &Bus,
    leadership: &Leadership,
    work: &LeaderWork,
    lock: BusLock,
    first_term: bool,
    shutdown: &CancellationToken,
) {
    let token = shutdown.child_token();
    let name = format!(
        "pid {} term {}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let register = bus.topology().leader_record();
    // The record the last leader left, read while the lock is ours.
    let previous = loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return lock.release().await,
            why = lock.lost() => {
                tracing::warn!(reason = %why, "lost the ingest leadership before it started");
                return lock.release().await;
            }
            read = bus.read_register(&register) => read,
        };
        match read {
            Ok(values) => break LeaderRecord::newest(&values),
            Err(BusError::ShuttingDown) => return lock.release().await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the ingest leader record yet; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return lock.release().await,
                    _ = tokio::time::sleep(work.retry) => {}
                }
            }
        }
    };
    let now = Utc::now();
    let start = plan_term(
        previous.as_ref(),
        now,
        &name,
        work.resync_at_start,
        work.schedule,
    );
    let term = Term {
        inner: Arc::new(TermInner {
            token: token.clone(),
            started_at: now,
            name: name.clone(),
            bus: bus.clone(),
            register,
            record: Mutex::new(start.record.clone()),
        }),
    };
    tracing::info!(
        leader = %name,
        startup_resync = start.startup,
        next_scheduled_resync = ?start.first_scheduled,
        previous_leader = previous.as_ref().map(|r| r.leader.as_str()),
        previous_alive_at = ?previous.as_ref().map(|r| r.written_at),
        "this ingest replica leads now: it runs the resync schedule, Port's resync requests and the service-hook subscriptions"
    );
    leadership.set(Status::Leading(term.clone()));

    let mut tasks = JoinSet::new();
    // A process's first term asks for its start-up resync as of when ingest started.
    let startup_as_of = if first_term { work.started_at } else { now };
    tasks.spawn(begin(
        term.clone(),
        bus.clone(),
        start.clone(),
        startup_as_of,
    ));
    if let (Some(every), Some(first)) = (work.schedule, start.first_scheduled) {
        tasks.spawn(schedule(term.clone(), bus.clone(), every, first));
    }
    tasks.spawn(refresh(term.clone()));
    if let Some(subscriptions) = &work.subscriptions {
        for client in &subscriptions.clients {
            tasks.spawn(subscriptions::run(
                client.clone(),
                subscriptions.plan.clone(),
                subscriptions.mapping.clone(),
                subscriptions.every,
                token.clone(),
            ));
        }
    }

    // Hold the lock until the connection goes, a confirmation fails, or shutdown.
    let confirm_every = lock.confirm_every().min(work.retry);
    let why = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            why = lock.lost() => break Some(format!("the connection to the broker was lost: {why}")),
            _ = tokio::time::sleep(confirm_every) => {
                if let Err(why) = lock.confirm().await {
                    break Some(why);
                }
            }
        }
    };
    token.cancel();
    match &why {
        Some(why) => {
            leadership.set(Status::Waiting(why.clone()));
            tracing::info!(
                leader = %name,
                reason = %why,
                "this ingest replica no longer leads: its scheduled resyncs, Port polling and subscription checks stop; it competes again once it can"
            );
        }
        None => {
            leadership.set(Status::Starting);
            tracing::info!(leader = %name, "this ingest replica stops leading (shutting down); another takes over");
        }
    }
    // The tasks end on the token; those that do not in time are abandoned.
    let ended = tokio::time::timeout(STEP_DOWN_PATIENCE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if ended.is_err() {
        tasks.abort_all();
    }
    // Hand the lock over now: on shutdown rather than when the connection closes; after a
    // failed confirmation, because the connection may still be up and hold it (with the
    // presence consumer, which would make every replica, this one too, believe someone leads).
    // On a lost connection there is nothing left to release, and this fails at once.
    lock.release().await;
}

/// The start of a term: the record first (so that a leader killed right after cannot be
/// followed by a second start-up resync), then the start-up resync if the plan asks.
async fn begin(term: Term, bus: Bus, start: TermStart, as_of: DateTime<Utc>) {
    match term.update(|_| {}).await {
        None => return,
        Some(Ok(())) => {}
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot write the ingest leader record");
            if start.startup {
                // Without the record the next leader could not know this one asked: ask anyway,
                // a repeated start-up resync is harmless (every effect is idempotent).
                tracing::info!("the start-up resync is requested without the record");
            }
        }
    }
    if !start.startup {
        return;
    }
    match term
        .during(resync::request_as_of(&bus, ResyncTrigger::Startup, as_of))
        .await
    {
        None | Some(Err(BusError::ShuttingDown)) => {}
        Some(Ok(id)) => tracing::info!(resync_id = %id, "start-up resync requested"),
        Some(Err(e)) => tracing::error!(error = %e, "could not request the start-up resync"),
    }
}

/// The resync schedule of a term: a request every `every`, from `next`. Each tick writes the
/// record before it publishes the request: a leader killed between the two loses that tick
/// (the next one follows an interval later) rather than having its successor repeat it.
async fn schedule(term: Term, bus: Bus, every: Duration, mut next: DateTime<Utc>) {
    let interval = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    loop {
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        if term.during(tokio::time::sleep(wait)).await.is_none() {
            return;
        }
        let at = Utc::now();
        match term.update(|r| r.last_scheduled_at = Some(at)).await {
            None => return,
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not record the scheduled resync; trying at the next tick");
                next = at + interval;
                continue;
            }
        }
        next = at + interval;
        match term
            .during(resync::request(&bus, ResyncTrigger::Schedule))
            .await
        {
            None | Some(Err(BusError::ShuttingDown)) => return,
            Some(Ok(id)) => tracing::info!(
                resync_id = %id,
                next_at = %next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "scheduled resync requested"
            ),
            Some(Err(e)) => tracing::warn!(
                error = %e,
                "could not request the scheduled resync; trying at the next tick"
            ),
        }
    }
}

/// Rewrites the record every [`RECORD_REFRESH`]: a leader is alive.
async fn refresh(term: Term) {
    loop {
        if term
            .during(tokio::time::sleep(RECORD_REFRESH))
            .await
            .is_none()
        {
            return;
        }
        match term.update(|_| {}).await {
            None => return,
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not refresh the ingest leader record")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::topology::Topology;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    fn record(written: i64, scheduled: Option<i64>) -> LeaderRecord {
        LeaderRecord {
            v: 1,
            written_at: at(written),
            leader: "old".into(),
            last_scheduled_at: scheduled.map(at),
            port_request_seen: Some("2026-01-01T00:00:00Z".into()),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_first_leader_of_an_installation_asks_for_the_start_up_resync() {
        let start = plan_term(None, at(0), "new", true, Some(HOUR));
        assert!(start.startup);
        assert_eq!(start.record.last_scheduled_at, Some(at(0)));
        assert_eq!(start.first_scheduled, Some(at(3600)));
        assert_eq!(start.record.leader, "new");
        // WEBHOOKS_ONLY (or RESYNC_ON_START=false): no start-up resync, the schedule from now.
        let start = plan_term(None, at(0), "new", false, Some(HOUR));
        assert!(!start.startup);
        assert_eq!(start.first_scheduled, Some(at(3600)));
        assert_eq!(start.record.last_scheduled_at, None);
    }

    #[test]
    fn a_failover_neither_resyncs_nor_restarts_the_schedule() {
        // The last leader was alive 10 s ago and scheduled a resync 20 minutes ago.
        let previous = record(-10, Some(-1200));
        let start = plan_term(Some(&previous), at(0), "new", true, Some(HOUR));
        assert!(!start.startup, "an election is not a start");
        assert_eq!(
            start.first_scheduled,
            Some(at(2400)),
            "an interval after the last"
        );
        assert_eq!(start.record.last_scheduled_at, Some(at(-1200)));
        assert_eq!(
            start.record.port_request_seen, previous.port_request_seen,
            "Port's last request is carried over"
        );
        // The last leader died just before its tick: the tick is due at once, not doubled.
        let previous = record(-5, Some(-3605));
        let start = plan_term(Some(&previous), at(0), "new", true, Some(HOUR));
        assert!(!start.startup);
        assert_eq!(start.first_scheduled, Some(at(0)));
        // No schedule: nothing scheduled.
        let start = plan_term(Some(&previous), at(0), "new", true, None);
        assert_eq!(start.first_scheduled, None);
    }

    #[test]
    fn a_restart_after_a_gap_longer_than_webhook_retries_resyncs() {
        let gap = INSTALLATION_GAP.as_secs() as i64;
        let previous = record(-gap - 1, Some(-gap - 600));
        let start = plan_term(Some(&previous), at(0), "new", true, Some(HOUR));
        assert!(start.startup);
        assert_eq!(start.first_scheduled, Some(at(3600)));
        // Within the gap it is a failover.
        let previous = record(-gap + 1, Some(-gap - 600));
        assert!(!plan_term(Some(&previous), at(0), "new", true, Some(HOUR)).startup);
        // Without a start-up resync the schedule still continues from the last one.
        let previous = record(-gap - 1, Some(-7200));
        let start = plan_term(Some(&previous), at(0), "new", false, Some(HOUR));
        assert!(!start.startup);
        assert_eq!(start.first_scheduled, Some(at(0)), "overdue: at once");
    }

    #[test]
    fn the_newest_readable_record_wins() {
        let old = serde_json::to_vec(&record(-100, None)).expect("encode");
        let new = serde_json::to_vec(&record(-1, Some(-50))).expect("encode");
        let newest = LeaderRecord::newest(&[
            new.clone().into(),
            bytes::Bytes::from_static(b"not json"),
            old.into(),
        ])
        .expect("a record");
        assert_eq!(newest.written_at, at(-1));
        // A newer replica's record with fields this one does not know is still read.
        let mut future: serde_json::Value = serde_json::from_slice(&new).expect("json");
        future["someday"] = serde_json::json!(true);
        let read = LeaderRecord::newest(&[serde_json::to_vec(&future).expect("encode").into()]);
        assert_eq!(read.map(|r| r.written_at), Some(at(-1)));
        assert_eq!(LeaderRecord::newest(&[]), None);
    }

    #[tokio::test]
    async fn in_process_the_only_replica_leads_and_asks_for_the_start_up_resync_once() {
        let shutdown = CancellationToken::new();
        let bus = Bus::memory(Topology::new("leader.", 1), shutdown.clone());
        let mut requests = bus
            .subscribe(adoport_shared::topology::WorkQueue::ResyncRequests, 1)
            .await
            .expect("subscribe");
        let leadership = Leadership::new();
        let work = LeaderWork {
            retry: Duration::from_millis(50),
            started_at: Utc::now(),
            resync_at_start: true,
            schedule: None,
            subscriptions: None,
        };
        let running = tokio::spawn(run(bus.clone(), leadership.clone(), work, shutdown.clone()));
        let request = tokio::time::timeout(Duration::from_secs(5), requests.next())
            .await
            .expect("a request")
            .expect("delivery");
        let request: adoport_shared::messages::ResyncRequest =
            adoport_shared::messages::decode(&request.body).expect("request");
        assert_eq!(request.trigger, ResyncTrigger::Startup);
        assert!(leadership.is_leader(), "{}", leadership.describe());
        assert!(leadership.describe().starts_with("leads since"));
        let record = LeaderRecord::newest(
            &bus.read_register(&bus.topology().leader_record())
                .await
                .expect("read"),
        )
        .expect("the record is written");
        assert!(record.last_scheduled_at.is_some());
        shutdown.cancel();
        running.await.expect("the election ends on shutdown");
        assert!(!leadership.is_leader());
    }
}
