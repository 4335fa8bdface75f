//! First start (`OCEAN__INITIALIZE_PORT_RESOURCES`, default true): the default blueprints and
//! the default mapping in Port, as the Python integration creates them.
//!
//! - The blueprints of `assets/default-blueprints.json` (the Python integration's, unchanged)
//!   are created only when none of them exists yet, in three stages so that relations find
//!   their targets: bare (no relations, mirror, calculation or aggregation properties), then
//!   the relations, then the full body; the requests of one stage go together (a start at
//!   real latency pays three round trips, not three per blueprint).
//! - With them, and only when this start created them (as Ocean's default setup does), the
//!   default scorecards of `assets/default-scorecards.json` (`POST
//!   /v1/blueprints/{bp}/scorecards`, one per scorecard, together) and then the pages of
//!   `assets/default-pages.json` (`POST /v1/pages`, together), the Python integration's
//!   `.port/resources/scorecards.json` and `pages.json` unchanged. A scorecard or page Port
//!   refuses is a WARN line and the start goes on, as in Ocean (its `service` scorecard needs a
//!   `service` blueprint the defaults do not define: Port answers 404 unless the user has one);
//!   one that exists already (409) is left as it is.
//! - The integration, with the default mapping as its config, is created only when Port has
//!   no integration of that identifier, at the same time as the resources above (neither needs
//!   the other; Ocean creates the integration with its mapping before the blueprints).
//! - On every start, the setting on or off, an existing integration record (one the Python
//!   integration created, say) is brought up to date as Ocean does
//!   ([`crate::integration_record`]).
//!
//! Nothing the user already has is overwritten. It owns no retry loop: a failure stops the
//! start with the blueprint or call that failed, and the next start tries again.
//!
//! Several publish replicas start together on a first deployment and race through the same
//! steps. A 409 from Port on a creation means another replica created it a moment ago: that is
//! taken as done and the replica carries on, so that every stage completes even if the other
//! replica dies halfway (the stages after creation are PATCHes of the same fields, harmless
//! twice).

use futures_util::future::{join_all, try_join_all};
use serde_json::{Map, Value, json};

use crate::client::{COMPATIBLE_INTEGRATION_VERSION, PortClient};
use crate::error::PublishError;
use crate::integration_record::IntegrationRecord;

/// The Python integration's default blueprints (a test keeps the copy equal to the reference).
pub const DEFAULT_BLUEPRINTS: &str = include_str!("../assets/default-blueprints.json");

/// The Python integration's default scorecards, per blueprint (`[{blueprint, data: [...]}]`).
pub const DEFAULT_SCORECARDS: &str = include_str!("../assets/default-scorecards.json");
/// The Python integration's default pages.
pub const DEFAULT_PAGES: &str = include_str!("../assets/default-pages.json");

/// Blueprint fields that may point at other blueprints: left out of the bare stage.
const LINKED_FIELDS: [&str; 4] = [
    "relations",
    "mirrorProperties",
    "calculationProperties",
    "aggregationProperties",
];

/// What [`initialize`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialized {
    /// Blueprints this call created (empty when any default blueprint already existed; a
    /// replica starting at the same time may have created some of them).
    pub blueprints_created: Vec<String>,
    /// Scorecards this call created, as `blueprint/identifier`.
    pub scorecards_created: Vec<String>,
    /// Pages this call created.
    pub pages_created: Vec<String>,
    /// Whether the integration (with the default mapping) was created.
    pub integration_created: bool,
    /// Whether the integration record was `PATCH`ed (some field differed from the settings').
    pub record_updated: bool,
}

/// The default blueprints, parsed.
pub fn default_blueprints() -> Result<Vec<Value>, PublishError> {
    serde_json::from_str(DEFAULT_BLUEPRINTS).map_err(|e| {
        PublishError::Setup(format!(
            "the built-in default blueprints (publish/assets/default-blueprints.json) do not parse: {e}"
        ))
    })
}

/// The default mapping as the JSON config of an integration.
fn default_mapping() -> Result<Value, PublishError> {
    serde_saphyr::from_str(adoport_shared::port_app_config::DEFAULT_PORT_APP_CONFIG).map_err(|e| {
        PublishError::Setup(format!("the built-in default mapping does not parse: {e}"))
    })
}

/// Start-up for these settings: with `OCEAN__INITIALIZE_PORT_RESOURCES` on (the default),
/// [`initialize`]; off, only [`update_record`] (nothing is created).
pub async fn initialize_for_settings(
    settings: &adoport_shared::config::Settings,
) -> Result<Initialized, PublishError> {
    let access = settings.port_access()?;
    let user_agent = crate::client::exporter_user_agent(
        COMPATIBLE_INTEGRATION_VERSION,
        &access.integration_identifier,
    );
    let client = PortClient::new(&access, user_agent)?;
    let record = IntegrationRecord::for_settings(settings);
    let integration = &access.integration_identifier;
    if settings.ocean.initialize_port_resources {
        initialize(&client, integration, &record).await
    } else {
        Ok(Initialized {
            blueprints_created: Vec::new(),
            scorecards_created: Vec::new(),
            pages_created: Vec::new(),
            integration_created: false,
            record_updated: update_record(&client, integration, &record).await?,
        })
    }
}

/// Creates what is missing (see the module doc), then brings the integration record up to
/// date. `integration` is the integration identifier.
pub async fn initialize(
    client: &PortClient,
    integration: &str,
    record: &IntegrationRecord,
) -> Result<Initialized, PublishError> {
    let blueprints = default_blueprints()?;
    let resources = async {
        Ok(match create_blueprints(client, &blueprints).await? {
            Some(created) => {
                let (scorecards, pages) = create_presentation(client).await?;
                (created, scorecards, pages)
            }
            None => Default::default(),
        }) as Result<_, PublishError>
    };
    // The integration does not wait for the resources, nor they for it (Ocean creates the
    // integration with its mapping before the blueprints it names): one chain of round trips
    // at start instead of both one after the other.
    let integration_created = async {
        if client.integration_exists(integration).await? {
            return Ok(false);
        }
        let body = record.creation_body(integration, default_mapping()?);
        let created = created_here(client.create_integration(&body).await)?;
        if created {
            tracing::info!(
                integration,
                "created the integration in Port with the default mapping"
            );
        }
        Ok::<_, PublishError>(created)
    };
    let ((blueprints_created, scorecards_created, pages_created), integration_created) =
        tokio::try_join!(resources, integration_created)?;
    // Last: with the default resources on, the record says they are initialized.
    let record_updated = update_record(client, integration, record).await?;
    Ok(Initialized {
        blueprints_created,
        scorecards_created,
        pages_created,
        integration_created,
        record_updated,
    })
}

/// `PATCH`es the integration record when a field differs from `record` (Ocean's check at
/// start); whether it did. An integration Port does not have is left to [`initialize`].
pub async fn update_record(
    client: &PortClient,
    integration: &str,
    record: &IntegrationRecord,
) -> Result<bool, PublishError> {
    let Some(current) = client.integration(integration).await? else {
        return Ok(false);
    };
    let Some(update) = record.update_for(&current) else {
        return Ok(false);
    };
    client.patch_integration(integration, &update).await?;
    tracing::info!(
        integration,
        version = COMPATIBLE_INTEGRATION_VERSION,
        "updated the integration record in Port"
    );
    Ok(true)
}

/// Creates the default blueprints when none exists: those this call created, or `None` when
/// one existed and nothing was done.
async fn create_blueprints(
    client: &PortClient,
    blueprints: &[Value],
) -> Result<Option<Vec<String>>, PublishError> {
    let identifiers: Vec<&str> = blueprints
        .iter()
        .filter_map(|b| b["identifier"].as_str())
        .collect();
    // Each stage's requests are independent of one another: they go together (one round trip
    // per stage instead of one per blueprint; Ocean gathers them too), the stages in order.
    let existing = try_join_all(
        identifiers
            .iter()
            .map(|identifier| client.blueprint(identifier)),
    )
    .await?;
    if let Some((identifier, _)) = (identifiers.iter().zip(&existing)).find(|(_, b)| b.is_some()) {
        tracing::info!(
            blueprint = identifier,
            "a default blueprint already exists in Port; creating none of them"
        );
        return Ok(None);
    }
    let bodies: Vec<Value> = blueprints.iter().map(bare).collect();
    let creations = join_all(bodies.iter().map(|body| client.create_blueprint(body))).await;
    let mut created = Vec::new();
    for (result, identifier) in creations.into_iter().zip(&identifiers) {
        if created_here(result)? {
            created.push(identifier.to_string());
        }
    }
    let relations: Vec<(&str, Value)> = (blueprints.iter().zip(&identifiers))
        .filter_map(|(blueprint, identifier)| {
            let relations = blueprint.get("relations")?;
            (relations.as_object().is_some_and(|r| !r.is_empty()))
                .then(|| (*identifier, json!({ "relations": relations })))
        })
        .collect();
    try_join_all(
        (relations.iter()).map(|(identifier, body)| client.patch_blueprint(identifier, body)),
    )
    .await?;
    try_join_all(
        (blueprints.iter().zip(&identifiers))
            .map(|(blueprint, identifier)| client.patch_blueprint(identifier, blueprint)),
    )
    .await?;
    tracing::info!(blueprints = ?identifiers, created_here = ?created, "the default blueprints are in Port");
    Ok(Some(created))
}

/// The default scorecards and pages.
#[derive(Debug, Clone)]
pub struct DefaultPresentation {
    /// `(blueprint, scorecard)`, in the file's order.
    pub scorecards: Vec<(String, Value)>,
    pub pages: Vec<Value>,
}

/// The default scorecards and pages, parsed.
pub fn default_presentation() -> Result<DefaultPresentation, PublishError> {
    let parse = |text: &str, file: &str| {
        serde_json::from_str::<Vec<Value>>(text).map_err(|e| {
            PublishError::Setup(format!(
                "the built-in {file} (publish/assets) does not parse: {e}"
            ))
        })
    };
    let mut scorecards = Vec::new();
    for group in parse(DEFAULT_SCORECARDS, "default-scorecards.json")? {
        let blueprint = group["blueprint"].as_str().unwrap_or_default().to_string();
        for scorecard in group["data"].as_array().into_iter().flatten() {
            scorecards.push((blueprint.clone(), scorecard.clone()));
        }
    }
    Ok(DefaultPresentation {
        scorecards,
        pages: parse(DEFAULT_PAGES, "default-pages.json")?,
    })
}

/// Creates the default scorecards, then the default pages, as Ocean does after creating the
/// blueprints: one that Port refuses is logged and skipped, one that exists is left.
/// What this call created: `blueprint/identifier` scorecards and page identifiers.
async fn create_presentation(
    client: &PortClient,
) -> Result<(Vec<String>, Vec<String>), PublishError> {
    let DefaultPresentation { scorecards, pages } = default_presentation()?;
    let mut scorecards_created = Vec::new();
    // Scorecards are independent of one another: created together, reported in file order.
    let results = join_all(
        (scorecards.iter())
            .map(|(blueprint, scorecard)| client.create_scorecard(blueprint, scorecard)),
    )
    .await;
    for ((blueprint, scorecard), result) in scorecards.iter().zip(results) {
        let identifier = scorecard["identifier"].as_str().unwrap_or("?");
        match created_here(result) {
            Ok(true) => scorecards_created.push(format!("{blueprint}/{identifier}")),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                blueprint,
                scorecard = identifier,
                error = %e,
                "could not create a default scorecard; carrying on (Ocean does too)"
            ),
        }
    }
    let mut pages_created = Vec::new();
    // The pages together, as Ocean gathers them.
    let results = join_all(pages.iter().map(|page| client.create_page(page))).await;
    for (page, result) in pages.iter().zip(results) {
        let identifier = page["identifier"].as_str().unwrap_or("?");
        match created_here(result) {
            Ok(true) => pages_created.push(identifier.to_string()),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                page = identifier,
                error = %e,
                "could not create a default page; carrying on (Ocean does too)"
            ),
        }
    }
    tracing::info!(scorecards = ?scorecards_created, pages = ?pages_created, "the default scorecards and pages are in Port");
    Ok((scorecards_created, pages_created))
}

/// Whether a creation was made by this call: a 409 (the identifier is taken) means another
/// replica starting at the same time created it, which is as good.
fn created_here(result: Result<(), PublishError>) -> Result<bool, PublishError> {
    match result {
        Ok(()) => Ok(true),
        Err(PublishError::Port(adoport_shared::port::PortError::Status {
            status: 409, ..
        })) => {
            tracing::info!("another process created it a moment ago; carrying on");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The blueprint without the fields that may point at other blueprints (emptied, not absent,
/// as the Python integration sends it).
fn bare(blueprint: &Value) -> Value {
    let mut body = blueprint.clone();
    if let Value::Object(map) = &mut body {
        for field in LINKED_FIELDS {
            map.insert(field.to_string(), Value::Object(Map::new()));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/ocean-azure-devops/blueprints.json"
    );

    #[test]
    fn the_default_blueprints_are_the_python_integrations() {
        let reference =
            std::fs::read_to_string(REFERENCE).expect("reference blueprints (tests/fixtures)");
        let theirs: Value = serde_json::from_str(&reference).expect("reference parses");
        let ours = Value::Array(default_blueprints().expect("ours parse"));
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_default_scorecards_and_pages_are_the_python_integrations() {
        let fixture = |name: &str| {
            let path = format!(
                "{}/../tests/fixtures/ocean-azure-devops/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            serde_json::from_str::<Value>(&std::fs::read_to_string(&path).expect("fixture"))
                .expect("fixture parses")
        };
        let ours = |text: &str| serde_json::from_str::<Value>(text).expect("ours parse");
        assert_eq!(ours(DEFAULT_SCORECARDS), fixture("scorecards.json"));
        assert_eq!(ours(DEFAULT_PAGES), fixture("pages.json"));
        let DefaultPresentation { scorecards, pages } = default_presentation().expect("parse");
        assert_eq!(scorecards.len(), 1);
        assert_eq!(scorecards[0].0, "service");
        assert_eq!(scorecards[0].1["identifier"], "ProductionReadiness");
        assert_eq!(pages.len(), 2);
    }

    #[test]
    fn the_bare_stage_has_no_links() {
        for blueprint in default_blueprints().expect("parse") {
            let body = bare(&blueprint);
            for field in LINKED_FIELDS {
                assert_eq!(
                    body[field],
                    json!({}),
                    "{field} of {}",
                    blueprint["identifier"]
                );
            }
            assert_eq!(body["schema"], blueprint["schema"]);
        }
    }

    #[test]
    fn the_default_mapping_becomes_the_integration_config() {
        let body = IntegrationRecord::default()
            .creation_body("my-ado", default_mapping().expect("mapping"));
        assert_eq!(body["installationId"], "my-ado");
        assert_eq!(body["createPortResourcesOrigin"], "Default");
        assert_eq!(body["installationAppType"], "azure-devops");
        assert!(
            body["config"]["resources"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        );
    }
}
