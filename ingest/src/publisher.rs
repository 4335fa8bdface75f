//! The raw events of live events (webhooks and pushes): what one of them publishes
//! ([`Publication`]: a kind, upsert or delete, items), made into raw events stamped with the
//! organization they were read from, and published confirmed by the broker. Below everything
//! that turns an event into publications; the resync crawl's pages go through
//! [`crate::crawl_context`] (stamped with the crawl and checked against its fence).

use serde_json::Value;

use crate::ado::organization::OrganizationStamp;
use crate::ado::{AdoClient, Gone};
use crate::kind::Kind;
use adoport_shared::bus::{Bus, BusError, Destination, Outgoing};
use adoport_shared::messages::{Origin, RawAction, RawEvent, encode};
use adoport_shared::telemetry::live_timing::{self, Stage};

/// One raw event to publish. A delete can only be made from a [`Gone`] (Azure DevOps said the
/// object does not exist) or for an object Azure DevOps holds that the selector no longer
/// selects ([`Publication::deselected`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    kind: Kind,
    action: RawAction,
    items: Vec<Value>,
    /// The mapping resources that map it (`None`: every resource of the kind).
    resources: Option<Vec<u32>>,
}

impl Publication {
    /// The current state of objects of `kind`, as Azure DevOps returned them (enriched).
    pub fn upsert(kind: Kind, items: Vec<Value>) -> Publication {
        Publication {
            kind,
            action: RawAction::Upsert,
            items,
            resources: None,
        }
    }

    /// The delete of an object Azure DevOps no longer has; `item` carries the fields the kind's
    /// identifier is built from.
    pub fn delete(kind: Kind, gone: &Gone, item: Value) -> Publication {
        Self::delete_all(kind, vec![(gone, item)])
    }

    /// [`Publication::delete`] of several objects of one kind.
    pub fn delete_all(kind: Kind, deleted: Vec<(&Gone, Value)>) -> Publication {
        let items = deleted
            .into_iter()
            .map(|(gone, item)| {
                tracing::debug!(
                    kind = kind.name(),
                    evidence = gone.evidence(),
                    "live delete: Azure DevOps no longer has it"
                );
                item
            })
            .collect();
        Publication {
            kind,
            action: RawAction::Delete,
            items,
            resources: None,
        }
    }

    /// The delete of objects Azure DevOps still has but the mapping's selector no longer
    /// selects (an alert dismissed while `criteria.states` asks for active ones, a file that
    /// became empty or too large).
    pub fn deselected(kind: Kind, items: Vec<Value>) -> Publication {
        Publication {
            kind,
            action: RawAction::Delete,
            items,
            resources: None,
        }
    }

    /// The same, mapped only by the crawl unit `plan`'s resources (when the kind has several
    /// units: the unit whose selector took these items).
    pub fn for_unit(mut self, plan: &crate::plan::KindPlan) -> Publication {
        self.resources = plan.event_resources();
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The mapping resources that map it (`None`: every resource of the kind).
    pub fn resources(&self) -> Option<&[u32]> {
        self.resources.as_deref()
    }

    pub fn action(&self) -> RawAction {
        self.action
    }

    pub fn items(&self) -> &[Value] {
        &self.items
    }

    /// `(kind, action, items)`.
    pub fn into_parts(self) -> (Kind, RawAction, Vec<Value>) {
        (self.kind, self.action, self.items)
    }
}

/// The raw events of `publications` (empty ones left out), each item stamped with the
/// organization it was read from.
pub fn raw_events(
    client: &AdoClient,
    origin: Origin,
    publications: Vec<Publication>,
) -> Vec<RawEvent> {
    let stamp = OrganizationStamp::new(client.organization_url());
    publications
        .into_iter()
        .filter(|p| !p.items().is_empty())
        .map(|publication| {
            let resources = publication.resources.clone();
            let (kind, action, mut items) = publication.into_parts();
            items.iter_mut().for_each(|item| stamp.apply(item));
            let mut event = RawEvent::new(
                kind.name(),
                origin.clone(),
                client.organization_url(),
                action,
                items,
            );
            event.resources = resources;
            event
        })
        .collect()
}

/// Publishes raw events and returns their ids once the broker confirmed them all.
pub async fn publish(bus: &Bus, events: Vec<RawEvent>) -> Result<Vec<String>, BusError> {
    let ids = events.iter().map(|e| e.id.to_string()).collect();
    let messages = events
        .iter()
        .map(|event| Outgoing::new(Destination::Raw, encode(event)))
        .collect();
    events
        .iter()
        .for_each(|e| live_timing::record(e.id, Stage::RawPublishing));
    bus.publish_all(messages).await?;
    events
        .iter()
        .for_each(|e| live_timing::record(e.id, Stage::RawConfirmed));
    Ok(ids)
}
