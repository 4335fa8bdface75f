//! The message contracts between the roles: what travels on the bus, as versioned JSON.
//!
//! Every message carries `"v": SCHEMA_VERSION`. A consumer reads the version first
//! ([`decode`]) and dead-letters a message of a version it does not know, with that reason,
//! instead of guessing at its shape. Adding an optional field keeps the version; changing the
//! meaning or removing a field bumps it.
//!
//! Nothing secret is ever put in a message: raw items come from Azure DevOps responses and
//! webhook bodies, never from our credentials.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a message could not be decoded; the consumer dead-letters it with this text.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not JSON with a numeric \"v\" field: {0}")]
    NoVersion(String),
    #[error(
        "message has schema version {found}; this build reads version {SCHEMA_VERSION} only (upgrade adoport, or replay it with a matching version)"
    )]
    UnknownVersion { found: u64 },
    #[error(
        "message of schema version {SCHEMA_VERSION} does not match the {contract} contract: {error}"
    )]
    Shape {
        contract: &'static str,
        error: String,
    },
}

/// A message contract: a type that travels on the bus under a name.
pub trait Contract: Serialize + DeserializeOwned {
    /// The contract's name, used in errors and dead-letter reasons.
    const NAME: &'static str;
}

/// Serialises a message (infallible for our types: they hold only JSON-safe data), in a
/// buffer of exactly its length: `to_vec` grows its buffer by doubling, and a body kept as
/// `Bytes` keeps that spare capacity, so queues bounded by their bodies' lengths (the
/// in-process bus's `RAW_QUEUE_BYTES`) held up to twice their limit.
pub fn encode<T: Contract>(message: &T) -> Vec<u8> {
    let mut body = serde_json::to_vec(message).unwrap_or_else(|e| {
        // Only a non-string map key could fail, and our contracts have none.
        unreachable!("message contract {} failed to serialise: {e}", T::NAME)
    });
    body.shrink_to_fit();
    body
}

/// Reads a message: first its schema version, then its shape.
pub fn decode<T: Contract>(body: &[u8]) -> Result<T, DecodeError> {
    #[derive(Deserialize)]
    struct Versioned {
        v: u64,
    }
    let versioned: Versioned =
        serde_json::from_slice(body).map_err(|e| DecodeError::NoVersion(e.to_string()))?;
    if versioned.v != u64::from(SCHEMA_VERSION) {
        return Err(DecodeError::UnknownVersion { found: versioned.v });
    }
    serde_json::from_slice(body).map_err(|e| DecodeError::Shape {
        contract: T::NAME,
        error: e.to_string(),
    })
}

/// A random id that travels as its bare UUID: the type, its `new`, `Default` and `Display`.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Identifies one resync run, from request to reconciliation.
    ResyncId
);

uuid_id!(
    /// Identifies one crawl of a resync. A resync whose crawl is restarted (ingest killed
    /// mid-crawl, the request delivered again) is crawled again under a new attempt; the
    /// coordinator counts only the events of the attempt that finished.
    AttemptId
);

/// Identifies a mapping (port-app-config) version by its content, so that every process that
/// read the same mapping names it the same way (see [`crate::mapping_versions`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MappingVersionId(pub String);

impl std::fmt::Display for MappingVersionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a raw event came from. Port records this on every write (`ocean_info_event_type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Origin {
    /// A page of items found by the resync crawler.
    Resync { resync_id: ResyncId },
    /// A service-hook delivery from Azure DevOps.
    Webhook {
        /// The service hook's event type, e.g. `git.pullrequest.updated`.
        event_type: String,
        /// The notification's `id`: the same for redeliveries of one event.
        delivery_id: String,
    },
}

impl Origin {
    /// The value the Python integration sends as `ocean_info_event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Origin::Resync { .. } => "resync",
            Origin::Webhook { .. } => "http_request",
        }
    }

    pub fn resync_id(&self) -> Option<ResyncId> {
        match self {
            Origin::Resync { resync_id } => Some(*resync_id),
            Origin::Webhook { .. } => None,
        }
    }
}

/// What a raw event says happened to its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawAction {
    /// The items exist in this state.
    Upsert,
    /// The items were deleted in Azure DevOps.
    Delete,
}

/// The reserved kind of GitOps entities: a [`RawEvent`] of this kind carries Port entities
/// read from `port.yml` specs (each with its `blueprint`), which transform passes through
/// without the mapping; an [`EntityChange`] of this kind is written with the GitOps
/// User-Agent, and its deletes touch only GitOps-owned entities.
pub const GITOPS_KIND: &str = "gitops";

/// A GitOps spec that does not parse, as ingest found it on a push: transform dead-letters the
/// raw event that reports it, with [`GitopsSpecError`]'s text as the reason.
///
/// On the bus it is the one item of an upsert of [`GITOPS_KIND`], under the key
/// `__gitopsSpecError` (`{repositoryId, repository, path, commit, error}`): the shape raw
/// events archived by earlier versions carry, so that they replay the same. Only
/// [`GitopsSpecError::into_event_item`] and [`GitopsSpecError::of`] know that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsSpecError {
    pub repository_id: String,
    /// The repository's name, when the push named it.
    pub repository: Option<String>,
    /// The spec's path in the repository, e.g. `port.yml`.
    pub path: String,
    /// The commit the spec was read at.
    pub commit: String,
    /// What the parser said.
    pub error: String,
}

/// The key a [`GitopsSpecError`] travels under in a raw event's item.
const GITOPS_SPEC_ERROR_KEY: &str = "__gitopsSpecError";

impl GitopsSpecError {
    /// The raw event item that reports this error.
    pub fn into_event_item(self) -> Value {
        serde_json::json!({
            GITOPS_SPEC_ERROR_KEY: {
                "repositoryId": self.repository_id,
                "repository": self.repository,
                "path": self.path,
                "commit": self.commit,
                "error": self.error,
            }
        })
    }

    /// The spec error a raw event reports, if it is a [`GITOPS_KIND`] event that reports one.
    /// A field the item lacks reads `?`.
    pub fn of(event: &RawEvent) -> Option<GitopsSpecError> {
        if event.kind != GITOPS_KIND {
            return None;
        }
        let error = event
            .items
            .iter()
            .find_map(|item| item.get(GITOPS_SPEC_ERROR_KEY))?;
        let field = |key: &str| {
            error
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        Some(GitopsSpecError {
            repository_id: field("repositoryId"),
            repository: Some(field("repository")),
            path: field("path"),
            commit: field("commit"),
            error: field("error"),
        })
    }
}

/// The dead-letter reason: repository, file, commit, the parser's error and what to do.
impl std::fmt::Display for GitopsSpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GitOps spec {} of repository {} ({}) at commit {} does not parse: {}; fix the file and push again",
            self.path,
            self.repository.as_deref().unwrap_or("?"),
            self.repository_id,
            self.commit,
            self.error
        )
    }
}

/// Items of one kind as Azure DevOps returned them, published by ingest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    pub v: u32,
    /// Unique per published event; replays keep it.
    pub id: Uuid,
    /// The mapping kind these items belong to, e.g. `repository`.
    pub kind: String,
    pub origin: Origin,
    /// The organization the items were read from.
    pub organization_url: String,
    /// When this state was read from Azure DevOps. Publish never lets an older observation
    /// overwrite a newer one.
    pub observed_at: DateTime<Utc>,
    pub action: RawAction,
    /// The items, in the shape the mapping's jq expressions see.
    pub items: Vec<Value>,
    /// The crawl attempt that published this event (resync events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<AttemptId>,
    /// The mapping version the crawl ran with (resync events only): transform maps the event
    /// with this version, so that a resync is crawled, mapped and reconciled with one mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_version: Option<MappingVersionId>,
    /// The mapping resources (indices into the mapping's `resources`) whose selector read
    /// these items: transform maps them with these resources only. Absent: every resource of
    /// the kind (a kind crawled once for all its resources, and events of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<u32>>,
}

impl RawEvent {
    /// The crawl unit these items came from, as resync bookkeeping names it
    /// ([`crawl_unit_key`]).
    pub fn unit_key(&self) -> String {
        crawl_unit_key(&self.kind, self.resources.as_deref())
    }
}

/// The name of a crawl unit (a kind read with one selector for the mapping resources that
/// share it) in resync bookkeeping: the kind alone when the unit is every resource of the kind
/// (`resources` absent, as before units existed), else `kind#i,j` with the resources' indices.
pub fn crawl_unit_key(kind: &str, resources: Option<&[u32]>) -> String {
    match resources {
        None => kind.to_string(),
        Some(indices) => {
            let indices: Vec<String> = indices.iter().map(u32::to_string).collect();
            format!("{kind}#{}", indices.join(","))
        }
    }
}

/// The kind of a crawl unit's key ([`crawl_unit_key`]).
pub fn crawl_unit_kind(key: &str) -> &str {
    key.split_once('#').map_or(key, |(kind, _)| kind)
}

/// A crawl unit's key as a person reads it: `kind work-item (mapping resources 0, 2)`.
pub fn describe_crawl_unit(key: &str) -> String {
    match key.split_once('#') {
        None => format!("kind {key}"),
        Some((kind, indices)) => {
            let indices = indices.replace(',', ", ");
            let noun = if indices.contains(',') {
                "resources"
            } else {
                "resource"
            };
            format!("kind {kind} (mapping {noun} {indices})")
        }
    }
}

impl Contract for RawEvent {
    const NAME: &'static str = "RawEvent";
}

impl RawEvent {
    pub fn new(
        kind: impl Into<String>,
        origin: Origin,
        organization_url: impl Into<String>,
        action: RawAction,
        items: Vec<Value>,
    ) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: Uuid::new_v4(),
            kind: kind.into(),
            origin,
            organization_url: organization_url.into(),
            observed_at: Utc::now(),
            action,
            items,
            attempt: None,
            mapping_version: None,
            resources: None,
        }
    }
}

/// How Port should apply writes; taken from the port-app-config's root flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOptions {
    /// `merge=true`: only the fields sent change (`enableMergeEntity`).
    pub merge: bool,
    /// `create_missing_related_entities` (`createMissingRelatedEntities`).
    pub create_missing_related_entities: bool,
    /// `delete_dependents` on deletes (`deleteDependentEntities`).
    pub delete_dependents: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            merge: true,
            create_missing_related_entities: true,
            delete_dependents: true,
        }
    }
}

/// What to do with one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChangeOp {
    /// Create or update; `entity` is the body Port receives (`identifier`, `title`,
    /// `properties`, `relations`, …).
    Upsert { entity: Value },
    /// Remove the entity.
    Delete,
}

/// One entity write, produced by transform and applied by publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityChange {
    pub v: u32,
    pub blueprint: String,
    pub identifier: String,
    /// The mapping kind that produced it (for metrics and errors).
    pub kind: String,
    /// The mapping resource that produced it (its index in `resources`). Two resources may
    /// write different properties of one entity; ordering compares changes of the same
    /// resource only, since changes of different resources are parts, not versions.
    #[serde(default)]
    pub resource_index: u32,
    pub origin: Origin,
    /// Copied from the raw event: when the source state was read.
    pub observed_at: DateTime<Utc>,
    /// The raw event this change came from, to trace a change back to what was received.
    pub raw_event_id: Uuid,
    pub write: WriteOptions,
    #[serde(flatten)]
    pub op: ChangeOp,
}

impl Contract for EntityChange {
    const NAME: &'static str = "EntityChange";
}

/// A marker the reconciliation coordinator puts into every change partition once transform
/// produced every change of a resync's crawl attempt: in each partition queue it sits behind
/// every change of that resync. Publish reports [`ResyncControl::BarrierPassed`] when every
/// change it received before the barrier is settled, and only then acks the barrier.
///
/// Tagged `"type": "resync_barrier"` so that it is told apart from an [`EntityChange`] (which
/// has no top-level `type`) by [`PartitionMessage::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "resync_barrier")]
pub struct ResyncBarrier {
    pub v: u32,
    pub resync_id: ResyncId,
    /// The crawl attempt the coordinator found complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<AttemptId>,
    /// Unique per barrier the coordinator sends (a resync waits on one set of barriers).
    pub barrier_id: Uuid,
}

impl Contract for ResyncBarrier {
    const NAME: &'static str = "ResyncBarrier";
}

/// What a change partition carries: entity changes, and now and then a resync's barrier.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionMessage {
    Change(Box<EntityChange>),
    Barrier(ResyncBarrier),
}

impl PartitionMessage {
    /// Reads a partition message: the version first, then the `type` tag (`resync_barrier`) or,
    /// without one, an entity change.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Tagged {
            #[serde(default, rename = "type")]
            tag: Option<String>,
        }
        let change = |body| decode::<EntityChange>(body).map(|c| Self::Change(Box::new(c)));
        // A body that is not even an object fails in `decode` with the right reason.
        match serde_json::from_slice::<Tagged>(body) {
            Ok(Tagged { tag: Some(tag) }) if tag == "resync_barrier" => {
                decode::<ResyncBarrier>(body).map(Self::Barrier)
            }
            _ => change(body),
        }
    }
}

/// What asked for a resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncTrigger {
    Startup,
    Schedule,
    PortRequest,
    Manual,
}

/// A request to crawl everything, consumed by the one active resync crawler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncRequest {
    pub v: u32,
    pub resync_id: ResyncId,
    pub trigger: ResyncTrigger,
    pub requested_at: DateTime<Utc>,
    /// An incremental sync rather than a full resync: only the kinds that support it, each
    /// read since its cursor, upserted and never reconciled. Absent (schema v1 unchanged) is a
    /// full resync.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incremental: bool,
}

impl Contract for ResyncRequest {
    const NAME: &'static str = "ResyncRequest";
}

impl ResyncRequest {
    pub fn new(trigger: ResyncTrigger) -> Self {
        Self {
            v: SCHEMA_VERSION,
            resync_id: ResyncId::new(),
            trigger,
            requested_at: Utc::now(),
            incremental: false,
        }
    }
}

/// A publish replica's word to the others on the membership exchange: "I am here" (every
/// heartbeat interval) or "I am leaving" (on a graceful stop). The replicas' views of who is
/// there decide which of them consumes which change partition (`publish::membership`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberBeat {
    pub v: u32,
    /// The replica: a uuid per process start, so a restarted process is a new member.
    pub member: String,
    /// The replica is stopping: take it out of the view now, not after the timeout.
    #[serde(default)]
    pub leaving: bool,
}

impl Contract for MemberBeat {
    const NAME: &'static str = "MemberBeat";
}

impl MemberBeat {
    pub fn new(member: impl Into<String>, leaving: bool) -> Self {
        Self {
            v: SCHEMA_VERSION,
            member: member.into(),
            leaving,
        }
    }
}

/// What one crawl unit published in a resync (reported by ingest in
/// [`ResyncControl::CrawlFinished`], keyed by [`crawl_unit_key`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCrawl {
    /// Raw events published for this kind; reconciliation waits until transform reported
    /// every one of them.
    pub events: u64,
    /// Raw items in those events.
    pub items: u64,
    /// Why the kind's crawl is incomplete, when it is (then nothing of it is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What one mapping resource made of one raw event of a resync (in
/// [`ResyncControl::Progress`]): Ocean counts its sync metrics per resource (`{kind}-{index}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceProgress {
    /// The resource's index in the mapping's `resources`.
    pub resource: u32,
    /// Items of the event it was given (the raw items its selector read).
    pub items: u64,
    /// Entities it produced (upserts).
    pub produced: u64,
    /// Items it could not map.
    pub failed_items: u64,
}

/// Resync bookkeeping for the reconciliation coordinator (publish), on the resync progress
/// queue (single active consumer).
///
/// Ingest reports the start and the end of a crawl; transform reports, per raw event of a
/// resync, which entities it produced and how many items it could not map. When every raw
/// event of every kind is accounted for, the coordinator deletes what the resync no longer
/// produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResyncControl {
    /// The crawler started a resync (before publishing any of its raw events).
    Started {
        v: u32,
        resync_id: ResyncId,
        started_at: DateTime<Utc>,
        /// This crawl of the resync (a restarted crawl starts again under a new attempt).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<AttemptId>,
        /// The mapping version the crawl runs with; the coordinator reconciles with its policy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mapping_version: Option<MappingVersionId>,
    },
    /// The crawl ended: every raw event of the resync is published.
    CrawlFinished {
        v: u32,
        resync_id: ResyncId,
        started_at: DateTime<Utc>,
        /// The crawl that finished: only its raw events count towards completion.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<AttemptId>,
        /// Per crawl unit ([`crawl_unit_key`]: the kind, or the kind and the mapping resources
        /// that share a selector), what the crawl published; empty with `failure` set when it
        /// stopped early.
        kinds: std::collections::BTreeMap<String, KindCrawl>,
        /// Set when the crawl as a whole failed (then nothing is deleted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
    /// Transform finished one raw event of a resync (its changes are confirmed on the bus).
    Progress {
        v: u32,
        resync_id: ResyncId,
        kind: String,
        /// The raw event: redeliveries report it again, the coordinator counts it once.
        raw_event_id: Uuid,
        /// `(blueprint, identifier)` of every entity upserted from this event.
        produced: Vec<(String, String)>,
        /// Identifiers named in those entities' relations (kept when Port creates missing
        /// related entities).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        related: Vec<String>,
        /// Items (or entities) of this event the mapping could not produce.
        failed_items: u64,
        /// The raw event's crawl attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<AttemptId>,
        /// The mapping version transform mapped the event with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mapping_version: Option<MappingVersionId>,
        /// The raw event's `resources` (its crawl unit, with `kind`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<Vec<u32>>,
        /// The same figures per mapping resource that mapped the event (every resource of the
        /// unit, in mapping order), for the per-resource summary and Port's sync metrics.
        /// Empty from a transform that predates it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        per_resource: Vec<ResourceProgress>,
    },
    /// A publish replica took a resync's [`ResyncBarrier`] out of one change partition after
    /// settling every change it received before it on that partition (written, skipped or
    /// dead-lettered). The coordinator completes the resync once every partition reported.
    /// A redelivered barrier reports again; the coordinator counts `(barrier_id, partition)`
    /// once.
    BarrierPassed {
        v: u32,
        resync_id: ResyncId,
        barrier_id: Uuid,
        partition: u16,
        /// Changes of the resync this replica dead-lettered on the partition (its own share:
        /// a partition handed over mid-resync reports what its last owner saw).
        dead_lettered: u64,
    },
    /// The first raw items of a kind in a resync, secrets masked by ingest, for Port's
    /// "raw data examples" (`sendRawDataExamples`); publish sends them to Port.
    Examples {
        v: u32,
        resync_id: ResyncId,
        kind: String,
        items: Vec<serde_json::Value>,
    },
}

impl Contract for ResyncControl {
    const NAME: &'static str = "ResyncControl";
}

impl ResyncControl {
    pub fn resync_id(&self) -> ResyncId {
        match self {
            ResyncControl::Started { resync_id, .. }
            | ResyncControl::CrawlFinished { resync_id, .. }
            | ResyncControl::Progress { resync_id, .. }
            | ResyncControl::BarrierPassed { resync_id, .. }
            | ResyncControl::Examples { resync_id, .. } => *resync_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `message` decodes back to itself, and returns the JSON it travels as.
    fn round_trip<T: Contract + PartialEq + std::fmt::Debug>(message: &T) -> Value {
        let back: T = decode(&encode(message)).expect("decodes");
        assert_eq!(&back, message);
        serde_json::from_slice(&encode(message)).expect("json")
    }

    /// A page's body is as large as its JSON, not as `to_vec`'s doubled buffer: the in-process
    /// queues count bodies by length.
    #[test]
    fn an_encoded_message_holds_no_spare_capacity() {
        let items = (0..500)
            .map(|i| serde_json::json!({"id": format!("repository-{i}"), "size": i * 1000}))
            .collect();
        let origin = Origin::Webhook {
            event_type: "git.push".into(),
            delivery_id: "d".into(),
        };
        let event = RawEvent::new("repository", origin, "o", RawAction::Upsert, items);
        let body = encode(&event);
        assert!(body.len() > 10_000, "a page of {} bytes", body.len());
        assert_eq!(body.capacity(), body.len());
    }

    #[test]
    fn a_gitops_spec_error_travels_as_the_item_earlier_versions_wrote() {
        let error = GitopsSpecError {
            repository_id: "r1".into(),
            repository: None,
            path: "port.yml".into(),
            commit: "abc".into(),
            error: "bad indent".into(),
        };
        let item = error.clone().into_event_item();
        assert_eq!(
            item,
            serde_json::json!({"__gitopsSpecError": {"repositoryId": "r1", "repository": null,
                "path": "port.yml", "commit": "abc", "error": "bad indent"}})
        );
        let origin = Origin::Webhook {
            event_type: "git.push".into(),
            delivery_id: "d".into(),
        };
        let event = RawEvent::new(
            GITOPS_KIND,
            origin.clone(),
            "o",
            RawAction::Upsert,
            vec![item.clone()],
        );
        let read = GitopsSpecError::of(&event).expect("reported");
        assert_eq!(
            read.to_string(),
            "GitOps spec port.yml of repository ? (r1) at commit abc does not parse: bad indent; fix the file and push again"
        );
        let other_kind = RawEvent::new(
            "repository",
            origin.clone(),
            "o",
            RawAction::Upsert,
            vec![item],
        );
        assert_eq!(GitopsSpecError::of(&other_kind), None);
        let entities = RawEvent::new(
            GITOPS_KIND,
            origin,
            "o",
            RawAction::Upsert,
            vec![serde_json::json!({"identifier": "x"})],
        );
        assert_eq!(GitopsSpecError::of(&entities), None);
    }
    use serde_json::json;

    #[test]
    fn member_beats_round_trip_and_default_to_present() {
        let beat = MemberBeat::new("m1", true);
        assert_eq!(decode::<MemberBeat>(&encode(&beat)).expect("decodes"), beat);
        let old: MemberBeat = decode(br#"{"v": 1, "member": "m2"}"#).expect("decodes");
        assert!(!old.leaving);
    }

    #[test]
    fn raw_event_round_trips() {
        let event = RawEvent::new(
            "repository",
            Origin::Resync {
                resync_id: ResyncId::new(),
            },
            "https://dev.azure.com/acme",
            RawAction::Upsert,
            vec![json!({"id": "r1"})],
        );
        let json = round_trip(&event);
        assert!(
            json.get("resources").is_none(),
            "absent when every resource: {json}"
        );
        assert_eq!(event.unit_key(), "repository");
        let mut unit = event.clone();
        unit.resources = Some(vec![1, 3]);
        assert_eq!(round_trip(&unit)["resources"], json!([1, 3]));
        assert_eq!(unit.unit_key(), "repository#1,3");
        assert_eq!(crawl_unit_kind(&unit.unit_key()), "repository");
        assert_eq!(
            describe_crawl_unit(&unit.unit_key()),
            "kind repository (mapping resources 1, 3)"
        );
        assert_eq!(
            describe_crawl_unit("file#2"),
            "kind file (mapping resource 2)"
        );
    }

    #[test]
    fn entity_change_is_flat_json_with_op_tag() {
        let change = EntityChange {
            v: SCHEMA_VERSION,
            blueprint: "azureDevopsRepository".into(),
            identifier: "r1".into(),
            kind: "repository".into(),
            resource_index: 0,
            origin: Origin::Webhook {
                event_type: "git.push".into(),
                delivery_id: "d1".into(),
            },
            observed_at: Utc::now(),
            raw_event_id: Uuid::new_v4(),
            write: WriteOptions::default(),
            op: ChangeOp::Delete,
        };
        let json = round_trip(&change);
        assert_eq!(json["op"], "delete");
        assert_eq!(json["v"], 1);
    }

    #[test]
    fn resync_control_round_trips_with_version() {
        let message = ResyncControl::Progress {
            v: SCHEMA_VERSION,
            resync_id: ResyncId::new(),
            kind: "repository".into(),
            raw_event_id: Uuid::new_v4(),
            produced: vec![("azureDevopsRepository".into(), "r1".into())],
            related: vec!["p1".into()],
            failed_items: 0,
            attempt: Some(AttemptId::new()),
            mapping_version: Some(MappingVersionId("0123456789abcdef".into())),
            resources: Some(vec![2]),
            per_resource: vec![ResourceProgress {
                resource: 2,
                items: 1,
                produced: 1,
                failed_items: 0,
            }],
        };
        let json = round_trip(&message);
        assert_eq!(json["per_resource"][0]["resource"], 2);
        assert_eq!(json["type"], "progress");
        assert_eq!(json["resources"], serde_json::json!([2]));
        assert_eq!(json["v"], 1);
    }

    #[test]
    fn attempts_and_mapping_versions_are_optional_in_schema_one() {
        // As an ingest or transform without them writes it: still read.
        let resync_id = ResyncId::new();
        let started: ResyncControl = decode(
            format!(
                r#"{{"type": "started", "v": 1, "resync_id": "{resync_id}", "started_at": "2025-01-01T00:00:00Z"}}"#
            )
            .as_bytes(),
        )
        .expect("decodes");
        assert!(matches!(
            started,
            ResyncControl::Started {
                attempt: None,
                mapping_version: None,
                ..
            }
        ));
        // And a webhook's raw event does not carry them at all.
        let event = RawEvent::new(
            "repository",
            Origin::Webhook {
                event_type: "git.push".into(),
                delivery_id: "d".into(),
            },
            "https://dev.azure.com/acme",
            RawAction::Upsert,
            vec![],
        );
        let json: Value = serde_json::from_slice(&encode(&event)).expect("json");
        assert!(json.get("attempt").is_none() && json.get("mapping_version").is_none());
    }

    #[test]
    fn a_barrier_is_told_apart_from_a_change_on_a_partition() {
        let barrier = ResyncBarrier {
            v: SCHEMA_VERSION,
            resync_id: ResyncId::new(),
            attempt: Some(AttemptId::new()),
            barrier_id: Uuid::new_v4(),
        };
        let body = encode(&barrier);
        let json: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["type"], "resync_barrier");
        assert_eq!(
            PartitionMessage::decode(&body).expect("barrier"),
            PartitionMessage::Barrier(barrier)
        );
        let change = EntityChange {
            v: SCHEMA_VERSION,
            blueprint: "b".into(),
            identifier: "i".into(),
            kind: "k".into(),
            resource_index: 0,
            origin: Origin::Resync {
                resync_id: ResyncId::new(),
            },
            observed_at: Utc::now(),
            raw_event_id: Uuid::new_v4(),
            write: WriteOptions::default(),
            op: ChangeOp::Delete,
        };
        assert_eq!(
            PartitionMessage::decode(&encode(&change)).expect("change"),
            PartitionMessage::Change(Box::new(change))
        );
        assert!(matches!(
            PartitionMessage::decode(br#"{"v":2,"type":"resync_barrier"}"#),
            Err(DecodeError::UnknownVersion { found: 2 })
        ));
        assert!(PartitionMessage::decode(b"garbage").is_err());
    }

    #[test]
    fn unknown_version_is_refused_with_reason() {
        let body = br#"{"v": 7, "kind": "repository"}"#;
        let err = decode::<RawEvent>(body).expect_err("version 7 is unknown");
        assert!(matches!(err, DecodeError::UnknownVersion { found: 7 }));
        assert!(err.to_string().contains("schema version 7"));
    }

    #[test]
    fn garbage_is_refused_with_reason() {
        let err = decode::<RawEvent>(b"not json").expect_err("garbage");
        assert!(matches!(err, DecodeError::NoVersion(_)));
        let err = decode::<RawEvent>(br#"{"v": 1, "kind": 3}"#).expect_err("bad shape");
        assert!(err.to_string().contains("RawEvent"), "{err}");
    }
}
