//! The in-memory catalog: entities by blueprint and identifier, the blueprints the client
//! defined (their relation targets are checked; any other blueprint is accepted schema-less),
//! blueprints a test marked unknown, and the queries Port answers (search rules, datasource
//! listing with a cursor).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::error::PortError;

/// Port's identifier pattern.
fn valid_identifier(identifier: &str) -> bool {
    !identifier.is_empty()
        && identifier.len() <= 1000
        && identifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@_.+:\\/=-".contains(c))
}

/// An entity's `team` as Port stores it: an array of team names. Port takes a name or an array
/// on write and answers an array (the entity JSON's `team` is `Array<String>`; Port's Terraform
/// provider reads it as `[]string`): `"a"` is `["a"]`, `null` is `[]`.
fn stored_team(team: Value) -> Value {
    match team {
        Value::String(name) => json!([name]),
        Value::Null => json!([]),
        other => other,
    }
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One stored entity.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub blueprint: String,
    pub identifier: String,
    pub title: Option<Value>,
    pub icon: Option<Value>,
    pub team: Value,
    pub properties: Map<String, Value>,
    pub relations: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub datasource: Option<String>,
    pub updated_by: String,
}

impl Stored {
    /// An entity with nothing set, for checking a query's shape before searching.
    fn blank() -> Stored {
        Stored {
            blueprint: String::new(),
            identifier: String::new(),
            title: None,
            icon: None,
            team: json!([]),
            properties: Map::new(),
            relations: Map::new(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            datasource: None,
            updated_by: String::new(),
        }
    }

    /// The entity as Port's API returns it.
    pub(crate) fn api_json(&self) -> Value {
        let mut value = json!({
            "identifier": self.identifier,
            "title": self.title.clone().unwrap_or(Value::Null),
            "icon": self.icon.clone().unwrap_or(Value::Null),
            "blueprint": self.blueprint,
            "team": self.team,
            "properties": self.properties,
            "relations": self.relations,
            "createdAt": timestamp(self.created_at),
            "createdBy": self.updated_by,
            "updatedAt": timestamp(self.updated_at),
            "updatedBy": self.updated_by,
        });
        if self.icon.is_none()
            && let Value::Object(map) = &mut value
        {
            map.remove("icon");
        }
        value
    }

    /// The API shape plus the meta properties (`$identifier`, `$blueprint`, `$title`,
    /// `$datasource`, `$createdAt`, `$updatedAt`), what the handle's accessors return.
    pub(crate) fn with_meta(&self) -> Value {
        let mut value = self.api_json();
        if let Value::Object(map) = &mut value {
            for name in ["identifier", "blueprint", "title", "createdAt", "updatedAt"] {
                if let Some(v) = self.meta(&format!("${name}")) {
                    map.insert(format!("${name}"), v);
                }
            }
            map.insert("$datasource".into(), json!(self.datasource));
        }
        value
    }

    /// A meta property's value, if `name` is one.
    fn meta(&self, name: &str) -> Option<Value> {
        Some(match name {
            "$identifier" => json!(self.identifier),
            "$blueprint" => json!(self.blueprint),
            "$title" => self.title.clone().unwrap_or(Value::Null),
            "$team" => self.team.clone(),
            "$datasource" => json!(self.datasource),
            "$createdAt" => json!(timestamp(self.created_at)),
            "$updatedAt" => json!(timestamp(self.updated_at)),
            _ => return None,
        })
    }

    fn property(&self, name: &str) -> Value {
        self.meta(name)
            .or_else(|| self.properties.get(name).cloned())
            .unwrap_or(Value::Null)
    }

    fn relation_targets(&self, relation: &str) -> Vec<String> {
        match self.relations.get(relation) {
            Some(Value::String(id)) => vec![id.clone()],
            Some(Value::Array(ids)) => ids
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A validated entity from a request body.
#[derive(Debug)]
pub(crate) struct EntityInput {
    pub identifier: String,
    title: Option<Value>,
    icon: Option<Value>,
    team: Option<Value>,
    properties: Map<String, Value>,
    relations: Map<String, Value>,
}

/// Validates one entity of a request; on failure, the identifier if there was a usable one.
pub(crate) fn parse_entity(value: &Value) -> Result<EntityInput, (Option<String>, PortError)> {
    let Value::Object(map) = value else {
        return Err((None, PortError::invalid("an entity must be an object")));
    };
    let identifier = match map.get("identifier") {
        Some(Value::String(id)) if valid_identifier(id) => id.clone(),
        Some(Value::String(id)) => {
            return Err((
                Some(id.clone()),
                PortError::invalid(format!(
                    "identifier \"{id}\" must match the pattern ^[A-Za-z0-9@_.+:\\\\/=-]+$"
                )),
            ));
        }
        Some(_) => return Err((None, PortError::invalid("identifier must be a string"))),
        None => return Err((None, PortError::invalid("identifier is required"))),
    };
    let object = |name: &str| -> Result<Map<String, Value>, (Option<String>, PortError)> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err((
                Some(identifier.clone()),
                PortError::invalid(format!("{name} must be an object")),
            )),
        }
    };
    let properties = object("properties")?;
    let relations = object("relations")?;
    for (name, target) in &relations {
        let ok = match target {
            Value::Null | Value::String(_) => true,
            Value::Array(items) => items.iter().all(Value::is_string),
            _ => false,
        };
        if !ok {
            return Err((
                Some(identifier.clone()),
                PortError::invalid(format!(
                    "relation \"{name}\" must be a string, an array of strings or null"
                )),
            ));
        }
    }
    Ok(EntityInput {
        title: map.get("title").cloned(),
        icon: map.get("icon").cloned(),
        team: map.get("team").cloned(),
        properties,
        relations,
        identifier,
    })
}

/// The query flags of an upsert.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UpsertOptions {
    pub upsert: bool,
    pub merge: bool,
    pub create_missing_related_entities: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// blueprint → identifier → entity.
    entities: BTreeMap<String, BTreeMap<String, Stored>>,
    /// Blueprints defined through the API (or the handle), by identifier.
    blueprints: BTreeMap<String, Value>,
    /// Blueprints that answer 404 (for error tests).
    unknown: BTreeSet<String>,
    /// Every upsert's result per entity, in the order they were applied, when recorded
    /// (`PortSimConfig::record_writes`).
    writes: Option<BTreeMap<(String, String), Vec<Value>>>,
    /// Every entity deleted, `(blueprint, identifier)` in order (cascades included), so a test
    /// can tell an entity deleted and written again from one never deleted.
    deletions: Vec<(String, String)>,
}

impl Catalog {
    pub(crate) fn get(&self, blueprint: &str, identifier: &str) -> Option<&Stored> {
        self.entities.get(blueprint)?.get(identifier)
    }

    pub(crate) fn of_blueprint(&self, blueprint: &str) -> impl Iterator<Item = &Stored> {
        self.entities
            .get(blueprint)
            .into_iter()
            .flat_map(|m| m.values())
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Stored> {
        self.entities.values().flat_map(|m| m.values())
    }

    pub(crate) fn count(&self) -> usize {
        self.entities.values().map(BTreeMap::len).sum()
    }

    /// 404 for a blueprint marked unknown.
    pub(crate) fn check_blueprint(&self, blueprint: &str) -> Result<(), PortError> {
        if self.unknown.contains(blueprint) {
            return Err(PortError::not_found(format!(
                "Blueprint with identifier \"{blueprint}\" was not found"
            )));
        }
        Ok(())
    }

    pub(crate) fn mark_unknown(&mut self, blueprint: &str) {
        self.unknown.insert(blueprint.to_string());
    }

    pub(crate) fn blueprint(&self, identifier: &str) -> Option<&Value> {
        self.blueprints.get(identifier)
    }

    pub(crate) fn blueprints(&self) -> Vec<Value> {
        self.blueprints.values().cloned().collect()
    }

    /// Defines (or replaces) a blueprint; it is no longer unknown.
    pub(crate) fn define_blueprint(&mut self, identifier: &str, body: Value) {
        self.unknown.remove(identifier);
        self.blueprints.insert(identifier.to_string(), body);
    }

    /// The target blueprint of `relation` on `blueprint`, when that blueprint is defined.
    fn relation_target(&self, blueprint: &str, relation: &str) -> Option<String> {
        self.blueprints
            .get(blueprint)?
            .get("relations")?
            .get(relation)?
            .get("target")?
            .as_str()
            .map(String::from)
    }

    /// Creates or updates one entity; returns it and whether it was created.
    pub(crate) fn upsert(
        &mut self,
        blueprint: &str,
        input: EntityInput,
        options: UpsertOptions,
        datasource: Option<&str>,
        actor: &str,
    ) -> Result<(Value, bool), PortError> {
        self.check_blueprint(blueprint)?;
        let existing = self.get(blueprint, &input.identifier).cloned();
        if existing.is_some() && !options.upsert {
            return Err(PortError::new(
                axum::http::StatusCode::CONFLICT,
                "identifier_taken",
                format!(
                    "Entity with identifier \"{}\" already exists",
                    input.identifier
                ),
            ));
        }
        // Relation targets, for blueprints whose relations are known.
        let mut missing = Vec::new();
        for (relation, value) in &input.relations {
            let Some(target) = self.relation_target(blueprint, relation) else {
                continue;
            };
            let ids: Vec<&str> = match value {
                Value::String(id) => vec![id.as_str()],
                Value::Array(ids) => ids.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for id in ids {
                let is_self = target == blueprint && id == input.identifier;
                if !is_self && self.get(&target, id).is_none() {
                    missing.push((target.clone(), id.to_string()));
                }
            }
        }
        let now = Utc::now();
        if !missing.is_empty() {
            if !options.create_missing_related_entities {
                let list = missing
                    .iter()
                    .map(|(b, i)| format!("{i} ({b})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(PortError::not_found(format!(
                    "Related entities were not found: {list}"
                )));
            }
            for (target, id) in missing {
                let stub = Stored {
                    blueprint: target.clone(),
                    identifier: id.clone(),
                    title: None,
                    icon: None,
                    team: json!([]),
                    properties: Map::new(),
                    relations: Map::new(),
                    created_at: now,
                    updated_at: now,
                    datasource: None,
                    updated_by: actor.to_string(),
                };
                self.entities.entry(target).or_default().insert(id, stub);
            }
        }
        let created = existing.is_none();
        let entity = match existing {
            Some(mut current) if options.merge => {
                current.properties.extend(input.properties);
                current.relations.extend(input.relations);
                if input.title.is_some() {
                    current.title = input.title;
                }
                if input.icon.is_some() {
                    current.icon = input.icon;
                }
                if let Some(team) = input.team {
                    current.team = stored_team(team);
                }
                current.updated_at = now;
                current.datasource = datasource.map(String::from);
                current.updated_by = actor.to_string();
                current
            }
            other => Stored {
                blueprint: blueprint.to_string(),
                identifier: input.identifier.clone(),
                title: input.title,
                icon: input.icon,
                team: stored_team(input.team.unwrap_or(Value::Null)),
                properties: input.properties,
                relations: input.relations,
                created_at: other.map_or(now, |o| o.created_at),
                updated_at: now,
                datasource: datasource.map(String::from),
                updated_by: actor.to_string(),
            },
        };
        let answer = entity.api_json();
        if let Some(writes) = &mut self.writes {
            writes
                .entry((blueprint.to_string(), input.identifier.clone()))
                .or_default()
                .push(answer.clone());
        }
        self.entities
            .entry(blueprint.to_string())
            .or_default()
            .insert(input.identifier, entity);
        Ok((answer, created))
    }

    /// Starts recording every upsert's result per entity.
    pub(crate) fn record_writes(&mut self) {
        self.writes.get_or_insert_with(BTreeMap::new);
    }

    /// The upserts applied to each entity, in order (empty unless recorded).
    pub(crate) fn writes(&self) -> BTreeMap<(String, String), Vec<Value>> {
        self.writes.clone().unwrap_or_default()
    }

    /// Every entity deleted so far, in order.
    pub(crate) fn deletions(&self) -> Vec<(String, String)> {
        self.deletions.clone()
    }

    /// Entities whose (known) relations point at `blueprint`/`identifier`.
    pub(crate) fn dependents(&self, blueprint: &str, identifier: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for entity in self.all() {
            for relation in entity.relations.keys() {
                if self.relation_target(&entity.blueprint, relation).as_deref() == Some(blueprint)
                    && entity
                        .relation_targets(relation)
                        .iter()
                        .any(|id| id == identifier)
                    && !(entity.blueprint == blueprint && entity.identifier == identifier)
                {
                    found.push((entity.blueprint.clone(), entity.identifier.clone()));
                }
            }
        }
        found
    }

    /// Deletes an entity (and, with `delete_dependents`, what depends on it). `Ok(false)` when
    /// it did not exist; an error when it has dependents and they may not be deleted.
    pub(crate) fn delete(
        &mut self,
        blueprint: &str,
        identifier: &str,
        delete_dependents: bool,
    ) -> Result<bool, PortError> {
        self.delete_cascading(blueprint, identifier, delete_dependents)
            .map(|deleted| !deleted.is_empty())
    }

    /// [`Catalog::delete`], answering every entity it deleted (the dependents a cascade took
    /// with it included); empty when the entity did not exist.
    pub(crate) fn delete_cascading(
        &mut self,
        blueprint: &str,
        identifier: &str,
        delete_dependents: bool,
    ) -> Result<Vec<(String, String)>, PortError> {
        self.check_blueprint(blueprint)?;
        if self.get(blueprint, identifier).is_none() {
            return Ok(Vec::new());
        }
        let dependents = self.dependents(blueprint, identifier);
        if !dependents.is_empty() && !delete_dependents {
            return Err(PortError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "has_dependents",
                format!(
                    "Entity \"{identifier}\" has {} dependent entities; pass delete_dependents=true",
                    dependents.len()
                ),
            ));
        }
        let mut queue = vec![(blueprint.to_string(), identifier.to_string())];
        let mut deleted = Vec::new();
        while let Some((bp, id)) = queue.pop() {
            if let Some(entities) = self.entities.get_mut(&bp)
                && entities.remove(&id).is_some()
            {
                if delete_dependents {
                    queue.extend(self.dependents(&bp, &id));
                }
                deleted.push((bp, id));
            }
        }
        self.deletions.extend(deleted.iter().cloned());
        Ok(deleted)
    }

    /// Every entity, gone (a user clearing the catalog); answers how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let count = self.count();
        self.entities.clear();
        count
    }

    /// A user's edit of an entity's fields (`title`, `icon`, `team`, and the `properties` and
    /// `relations` it names), leaving its `$datasource` as it was. False when it does not exist.
    pub(crate) fn edit(
        &mut self,
        blueprint: &str,
        identifier: &str,
        changes: &Value,
        actor: &str,
    ) -> bool {
        let Some(entity) = self
            .entities
            .get_mut(blueprint)
            .and_then(|m| m.get_mut(identifier))
        else {
            return false;
        };
        for (field, slot) in [("title", &mut entity.title), ("icon", &mut entity.icon)] {
            if let Some(value) = changes.get(field) {
                *slot = Some(value.clone());
            }
        }
        if let Some(team) = changes.get("team") {
            entity.team = stored_team(team.clone());
        }
        for (field, map) in [
            ("properties", &mut entity.properties),
            ("relations", &mut entity.relations),
        ] {
            if let Some(Value::Object(values)) = changes.get(field) {
                map.extend(values.clone());
            }
        }
        entity.updated_at = Utc::now();
        entity.updated_by = actor.to_string();
        true
    }
}

impl Catalog {
    /// The entities a search query matches. Candidates are narrowed first, as Port's indexes
    /// would, by the query's top-level `and` rules `$blueprint =` and `$identifier =`/`in`
    /// (so a search of 100 identifiers does not scan the catalog); every candidate is then
    /// matched against the whole query. An invalid query is refused whatever it would match.
    pub(crate) fn search(&self, query: &Value) -> Result<Vec<&Stored>, PortError> {
        matches_query(&Stored::blank(), query)?;
        let top_level = |property: &str, operators: &[&str]| -> Option<&Value> {
            let and = query
                .get("combinator")
                .and_then(Value::as_str)
                .unwrap_or("and")
                == "and";
            let rules = query.get("rules")?.as_array()?;
            and.then(|| {
                rules.iter().find(|r| {
                    r.get("property").and_then(Value::as_str) == Some(property)
                        && r.get("operator")
                            .and_then(Value::as_str)
                            .is_some_and(|o| operators.contains(&o))
                })
            })?
            .and_then(|rule| rule.get("value"))
        };
        let blueprint = top_level("$blueprint", &["="]).and_then(Value::as_str);
        let identifiers: Option<BTreeSet<&str>> =
            top_level("$identifier", &["=", "in"]).and_then(|value| match value {
                Value::String(id) => Some(BTreeSet::from([id.as_str()])),
                Value::Array(ids) => ids.iter().map(Value::as_str).collect(),
                _ => None,
            });
        let candidates: Vec<&Stored> = match (blueprint, identifiers) {
            (Some(blueprint), Some(ids)) => ids
                .into_iter()
                .filter_map(|id| self.get(blueprint, id))
                .collect(),
            (Some(blueprint), None) => self.of_blueprint(blueprint).collect(),
            (None, Some(ids)) => self
                .all()
                .filter(|e| ids.contains(e.identifier.as_str()))
                .collect(),
            (None, None) => self.all().collect(),
        };
        let mut found = Vec::new();
        for entity in candidates {
            if matches_query(entity, query)? {
                found.push(entity);
            }
        }
        Ok(found)
    }
}

/// Evaluates a Port query (`{combinator, rules}`, nested) against one entity.
pub(crate) fn matches_query(entity: &Stored, query: &Value) -> Result<bool, PortError> {
    let Some(rules) = query.get("rules").and_then(Value::as_array) else {
        return Err(PortError::invalid("a query needs a \"rules\" array"));
    };
    let any = match query
        .get("combinator")
        .and_then(Value::as_str)
        .unwrap_or("and")
    {
        "and" => false,
        "or" => true,
        other => {
            return Err(PortError::invalid(format!(
                "unknown combinator \"{other}\""
            )));
        }
    };
    let mut outcome = !any;
    for rule in rules {
        let hit = if rule.get("rules").is_some() {
            matches_query(entity, rule)?
        } else {
            matches_rule(entity, rule)?
        };
        if any && hit {
            outcome = true;
        }
        if !any && !hit {
            outcome = false;
        }
    }
    Ok(outcome)
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn compare(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => {
            match (
                DateTime::parse_from_rfc3339(a),
                DateTime::parse_from_rfc3339(b),
            ) {
                (Ok(a), Ok(b)) => Some(a.cmp(&b)),
                _ => Some(a.cmp(b)),
            }
        }
        _ => None,
    }
}

fn matches_rule(entity: &Stored, rule: &Value) -> Result<bool, PortError> {
    let operator = rule
        .get("operator")
        .and_then(Value::as_str)
        .ok_or_else(|| PortError::invalid("a rule needs an \"operator\""))?;
    let actual = if let Some(property) = rule.get("property").and_then(Value::as_str) {
        entity.property(property)
    } else if let Some(relation) = rule.get("relation").and_then(Value::as_str) {
        entity
            .relations
            .get(relation)
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        return Err(PortError::invalid(
            "a rule needs a \"property\" or a \"relation\"",
        ));
    };
    let expected = rule.get("value").cloned().unwrap_or(Value::Null);
    let contains = |haystack: &Value, needle: &Value| match (haystack, needle) {
        (Value::Array(items), _) => items.contains(needle),
        (Value::String(h), Value::String(n)) => h.contains(n.as_str()),
        _ => false,
    };
    let equal = |a: &Value, b: &Value| match (a, b) {
        (Value::String(a), Value::String(b)) => a == b,
        _ => a == b || (as_text(a).is_some() && as_text(a) == as_text(b)),
    };
    let empty = matches!(&actual, Value::Null)
        || actual.as_str().is_some_and(str::is_empty)
        || actual.as_array().is_some_and(Vec::is_empty)
        || actual.as_object().is_some_and(Map::is_empty);
    Ok(match operator {
        "=" => match &actual {
            Value::Array(items) => items.iter().any(|i| equal(i, &expected)),
            _ => equal(&actual, &expected),
        },
        "!=" => !equal(&actual, &expected),
        "in" | "notIn" => {
            let Some(options) = expected.as_array() else {
                return Err(PortError::invalid(format!(
                    "operator \"{operator}\" needs an array value"
                )));
            };
            let hit = match &actual {
                Value::Array(items) => items.iter().any(|i| options.iter().any(|o| equal(i, o))),
                _ => options.iter().any(|o| equal(&actual, o)),
            };
            hit == (operator == "in")
        }
        "contains" => contains(&actual, &expected),
        "doesNotContains" | "doesNotContain" => !contains(&actual, &expected),
        "beginsWith" | "doesNotBeginsWith" => {
            let hit = matches!((&actual, &expected), (Value::String(a), Value::String(e)) if a.starts_with(e.as_str()));
            hit == (operator == "beginsWith")
        }
        "endsWith" | "doesNotEndsWith" => {
            let hit = matches!((&actual, &expected), (Value::String(a), Value::String(e)) if a.ends_with(e.as_str()));
            hit == (operator == "endsWith")
        }
        "isEmpty" => empty,
        "isNotEmpty" => !empty,
        ">" => compare(&actual, &expected).is_some_and(|o| o.is_gt()),
        ">=" => compare(&actual, &expected).is_some_and(|o| o.is_ge()),
        "<" => compare(&actual, &expected).is_some_and(|o| o.is_lt()),
        "<=" => compare(&actual, &expected).is_some_and(|o| o.is_le()),
        other => {
            return Err(PortError::invalid(format!(
                "unsupported operator \"{other}\""
            )));
        }
    })
}

/// An opaque cursor after (`blueprint`, `identifier`).
pub(crate) fn cursor(entity: &Stored) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}\u{0}{}", entity.blueprint, entity.identifier))
}

pub(crate) fn parse_cursor(text: &str) -> Result<(String, String), PortError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.split_once('\u{0}')
                .map(|(b, i)| (b.to_string(), i.to_string()))
        })
        .ok_or_else(|| PortError::invalid("invalid \"from\" cursor"))
}

/// One page of `candidates` (already in key order) after the cursor `from`.
pub(crate) fn page<'a>(
    candidates: impl Iterator<Item = &'a Stored>,
    from: Option<&str>,
    limit: usize,
) -> Result<(Vec<&'a Stored>, Option<String>), PortError> {
    let after = from.map(parse_cursor).transpose()?;
    let mut selected = candidates
        .filter(|e| {
            after.as_ref().is_none_or(|(b, i)| {
                (e.blueprint.as_str(), e.identifier.as_str()) > (b.as_str(), i.as_str())
            })
        })
        .take(limit + 1)
        .collect::<Vec<_>>();
    let next = if selected.len() > limit {
        selected.truncate(limit);
        selected.last().map(|e| cursor(e))
    } else {
        None
    };
    Ok((selected, next))
}

/// Keeps only the `include`d top-level fields of an API entity (all when `include` is empty).
pub(crate) fn project_fields(entity: Value, include: &[String]) -> Value {
    if include.is_empty() {
        return entity;
    }
    match entity {
        Value::Object(map) => {
            let wanted: HashMap<&str, ()> = include.iter().map(|s| (s.as_str(), ())).collect();
            Value::Object(
                map.into_iter()
                    .filter(|(k, _)| wanted.contains_key(k.as_str()))
                    .collect(),
            )
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upsert, merge and create missing related entities, as the integration asks.
    const EVERY_OPTION: UpsertOptions = UpsertOptions {
        upsert: true,
        merge: true,
        create_missing_related_entities: true,
    };

    fn input(v: Value) -> EntityInput {
        parse_entity(&v).unwrap()
    }

    /// A catalog whose `repo` blueprint relates to `project`.
    fn with_repository_relation() -> Catalog {
        let mut catalog = Catalog::default();
        catalog.define_blueprint(
            "repo",
            json!({"identifier": "repo", "relations": {"project": {"target": "project"}}}),
        );
        catalog
    }

    /// Upserts `entity` into blueprint `bp` with every option, written by `datasource`.
    fn put(catalog: &mut Catalog, bp: &str, entity: Value, datasource: Option<&str>) {
        catalog
            .upsert(bp, input(entity), EVERY_OPTION, datasource, "me")
            .unwrap();
    }

    #[test]
    fn merge_keeps_other_properties() {
        let mut catalog = Catalog::default();
        let opts = EVERY_OPTION;
        put(
            &mut catalog,
            "bp",
            json!({"identifier": "a", "properties": {"x": 1, "y": 2}}),
            Some("ua"),
        );
        put(
            &mut catalog,
            "bp",
            json!({"identifier": "a", "properties": {"y": 3}}),
            Some("ua"),
        );
        let stored = catalog.get("bp", "a").unwrap();
        assert_eq!(stored.properties.get("x"), Some(&json!(1)));
        assert_eq!(stored.properties.get("y"), Some(&json!(3)));
        let replace = UpsertOptions {
            merge: false,
            ..opts
        };
        catalog
            .upsert(
                "bp",
                input(json!({"identifier": "a", "properties": {"y": 4}})),
                replace,
                None,
                "me",
            )
            .unwrap();
        assert!(
            catalog
                .get("bp", "a")
                .unwrap()
                .properties
                .get("x")
                .is_none()
        );
    }

    #[test]
    fn known_relations_are_checked() {
        let mut catalog = with_repository_relation();
        let strict = UpsertOptions {
            upsert: true,
            merge: true,
            create_missing_related_entities: false,
        };
        let err = catalog
            .upsert(
                "repo",
                input(json!({"identifier": "r", "relations": {"project": "p"}})),
                strict,
                None,
                "me",
            )
            .unwrap_err();
        assert_eq!(err.error, "not_found");
        let lenient = UpsertOptions {
            create_missing_related_entities: true,
            ..strict
        };
        catalog
            .upsert(
                "repo",
                input(json!({"identifier": "r", "relations": {"project": "p"}})),
                lenient,
                None,
                "me",
            )
            .unwrap();
        assert!(catalog.get("project", "p").is_some());
        assert_eq!(
            catalog.delete("project", "p", false).unwrap_err().error,
            "has_dependents"
        );
        assert!(catalog.delete("project", "p", true).unwrap());
        assert_eq!(catalog.count(), 0);
    }

    #[test]
    fn team_is_stored_as_an_array() {
        let mut catalog = Catalog::default();
        for (identifier, team) in [
            ("a", json!("t1")),
            ("b", json!(["t1", "t2"])),
            ("c", Value::Null),
        ] {
            put(
                &mut catalog,
                "bp",
                json!({"identifier": identifier, "team": team}),
                None,
            );
        }
        put(&mut catalog, "bp", json!({"identifier": "d"}), None);
        let team = |id: &str| catalog.get("bp", id).unwrap().api_json()["team"].clone();
        assert_eq!(team("a"), json!(["t1"]));
        assert_eq!(team("b"), json!(["t1", "t2"]));
        assert_eq!(team("c"), json!([]));
        assert_eq!(team("d"), json!([]));
    }

    #[test]
    fn a_cascade_reports_what_it_deleted_and_edits_keep_the_datasource() {
        let mut catalog = with_repository_relation();
        for (bp, entity) in [
            ("project", json!({"identifier": "p"})),
            (
                "repo",
                json!({"identifier": "r1", "relations": {"project": "p"}}),
            ),
            (
                "repo",
                json!({"identifier": "r2", "relations": {"project": "p"}}),
            ),
        ] {
            put(&mut catalog, bp, entity, Some("ours"));
        }
        assert!(catalog.edit(
            "repo",
            "r1",
            &json!({"title": "by hand", "properties": {"x": 1}}),
            "user"
        ));
        let edited = catalog.get("repo", "r1").unwrap();
        assert_eq!(edited.title, Some(json!("by hand")));
        assert_eq!(edited.properties.get("x"), Some(&json!(1)));
        assert_eq!(edited.datasource.as_deref(), Some("ours"));
        assert!(!catalog.edit("repo", "nope", &json!({}), "user"));
        let mut deleted = catalog.delete_cascading("project", "p", true).unwrap();
        deleted.sort();
        assert_eq!(
            deleted,
            [("project", "p"), ("repo", "r1"), ("repo", "r2")]
                .map(|(b, i)| (b.to_string(), i.to_string()))
        );
        assert!(
            catalog
                .delete_cascading("project", "p", true)
                .unwrap()
                .is_empty()
        );
        assert_eq!(catalog.clear(), 0);
    }

    #[test]
    fn search_narrows_by_blueprint_and_identifier_and_still_checks_every_rule() {
        let mut catalog = Catalog::default();
        for (bp, id, source) in [("a", "1", "ours"), ("a", "2", "theirs"), ("b", "1", "ours")] {
            put(&mut catalog, bp, json!({"identifier": id}), Some(source));
        }
        let ids = |query: Value| -> Vec<(String, String)> {
            let mut found: Vec<_> = catalog
                .search(&query)
                .unwrap()
                .into_iter()
                .map(|e| (e.blueprint.clone(), e.identifier.clone()))
                .collect();
            found.sort();
            found
        };
        let pair = |b: &str, i: &str| (b.to_string(), i.to_string());
        let by_id = json!({"combinator": "and", "rules": [
            {"property": "$blueprint", "operator": "=", "value": "a"},
            {"property": "$identifier", "operator": "in", "value": ["1", "2", "1", "9"]},
        ]});
        assert_eq!(ids(by_id), vec![pair("a", "1"), pair("a", "2")]);
        let owned = json!({"combinator": "and", "rules": [
            {"property": "$identifier", "operator": "=", "value": "1"},
            {"property": "$datasource", "operator": "=", "value": "ours"},
        ]});
        assert_eq!(ids(owned), vec![pair("a", "1"), pair("b", "1")]);
        let either = json!({"combinator": "or", "rules": [
            {"property": "$identifier", "operator": "=", "value": "2"},
            {"property": "$blueprint", "operator": "=", "value": "b"},
        ]});
        assert_eq!(ids(either), vec![pair("a", "2"), pair("b", "1")]);
        // An invalid rule is refused even when the narrowing leaves no candidate.
        let invalid = json!({"combinator": "and", "rules": [
            {"property": "$identifier", "operator": "in", "value": ["nope"]},
            {"property": "n", "operator": "~", "value": 1},
        ]});
        assert!(catalog.search(&invalid).is_err());
    }

    #[test]
    fn rules() {
        let mut catalog = Catalog::default();
        put(
            &mut catalog,
            "bp",
            json!({"identifier": "a", "properties": {"n": 5, "tags": ["x"]}}),
            Some("port-ocean/azure-devops/1.0/azure-devops/exporter"),
        );
        let e = catalog.get("bp", "a").unwrap();
        let q =
            |rules: Value| matches_query(e, &json!({"combinator": "and", "rules": rules})).unwrap();
        assert!(q(
            json!([{"property": "$datasource", "operator": "contains", "value": "port-ocean/azure-devops/"}])
        ));
        assert!(q(
            json!([{"property": "$identifier", "operator": "in", "value": ["a", "b"]}])
        ));
        assert!(q(json!([{"property": "n", "operator": ">", "value": 4}])));
        assert!(q(
            json!([{"property": "tags", "operator": "contains", "value": "x"}])
        ));
        assert!(!q(
            json!([{"property": "$blueprint", "operator": "=", "value": "other"}])
        ));
        assert!(matches_query(e, &json!({"combinator": "and", "rules": [{"property": "n", "operator": "~", "value": 1}]})).is_err());
    }
}
