//! The compiled mapping: a port-app-config with every jq expression compiled once, and the
//! rules that turn one raw item of a kind into entity changes — the semantics of Ocean's
//! `JQEntityProcessor` and `handle_items_to_parse`, with a few deliberate differences noted
//! where they occur.
//!
//! For each resource of the item's kind, in mapping order:
//! 1. `itemsToParse` (if any) fans the item out into one item per array element, the element
//!    under `itemsToParseName`, merged into the item (minus the array when
//!    `itemsToParseTopLevelTransform`);
//! 2. `selector.query` must yield a boolean: `false` skips the item, anything else is a problem;
//! 3. identifier and blueprint must be non-empty strings (a number identifier is turned into
//!    its decimal text), else the entity is dropped with a problem;
//! 4. title, icon, team are optional; each property and relation is evaluated, a failing
//!    expression gives `null` and a problem, an expression that yields nothing gives a silent
//!    `null`. Values are never coerced: numbers stay numbers.
//!
//! Every expression of an item runs within the item's [`ItemBudget`]: an expression stopped at
//! a limit (a runaway: endless recursion or loop, a huge string) fails the whole item, which
//! then produces nothing but an [`ItemProblem::Runaway`] (the worker dead-letters it).
//!
//! Nothing here is async or does I/O.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::fmt;

use adoport_shared::messages::{ChangeOp, RawAction};
use adoport_shared::port_app_config::{
    JqExpr, LEGACY_FILE_PREFIX, MappingValue, NamedFields, PortAppConfig, SearchQuery, SearchRule,
    value_excerpt,
};
use jaq_json::Val;
use serde_json::{Map, Value};

use crate::error::{MappingError, shortened};
use crate::jq::{
    COMPILER_STACK, ItemBudget, JqError, JqInput, JqLimits, JqProgram, Prelude, Runaway,
    val_to_json,
};

/// One entity change produced from a raw item.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedChange {
    pub blueprint: String,
    /// The entity identifier; for a search-query identifier, the canonical JSON text of the
    /// evaluated query.
    pub identifier: String,
    /// The index of the resource (in the mapping's `resources`) that produced it. Several
    /// resources may write different properties of one entity (merge upserts): their changes
    /// are parts of the entity, not versions of it.
    pub resource_index: usize,
    pub op: ChangeOp,
}

/// What one raw item produced: changes to publish and problems to count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindOutcome {
    pub changes: Vec<MappedChange>,
    pub problems: Vec<ItemProblem>,
}

impl KindOutcome {
    /// An item that produced nothing, for this reason.
    pub fn failed(problem: ItemProblem) -> Self {
        Self {
            changes: Vec::new(),
            problems: vec![problem],
        }
    }
}

/// Something the mapping could not do with one item. The item itself is not lost: whatever
/// could be mapped still is.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemProblem {
    /// `selector.query` yielded a non-boolean (or nothing): no entity from this resource.
    SelectorNotBoolean {
        resource_index: usize,
        kind: String,
        item_id: String,
        found: String,
    },
    /// `selector.query` failed: no entity from this resource.
    SelectorFailed {
        resource_index: usize,
        kind: String,
        item_id: String,
        error: String,
    },
    /// A mapping expression failed on this item. For an identifier or blueprint the entity is
    /// dropped; for any other field the field is `null`.
    FieldFailed {
        resource_index: usize,
        field_path: String,
        expression: String,
        item_id: String,
        error: String,
    },
    /// A property or relation expression yielded nothing or null: the field is `null` (a
    /// warning, as in the Python integration; the entity is still written).
    FieldNull {
        resource_index: usize,
        field_path: String,
        expression: String,
        item_id: String,
    },
    /// The identifier is null, empty or `false`: entity dropped.
    EmptyIdentifier {
        resource_index: usize,
        kind: String,
        item_id: String,
    },
    /// The identifier is a boolean, array or object (not a search query): entity dropped.
    InvalidIdentifier {
        resource_index: usize,
        kind: String,
        item_id: String,
        found: String,
    },
    /// The blueprint is not a non-empty string: entity dropped.
    EmptyBlueprint {
        resource_index: usize,
        kind: String,
        item_id: String,
        found: String,
    },
    /// `itemsToParse` failed or did not yield an array (or the item is not an object): no
    /// entity from this resource.
    ItemsToParseFailed {
        resource_index: usize,
        kind: String,
        item_id: String,
        error: String,
    },
    /// An expression was stopped at one of its limits (see [`crate::jq::limits`]): the whole
    /// item fails, produces nothing, and is dead-lettered with this as the reason.
    Runaway {
        resource_index: usize,
        kind: String,
        item_id: String,
        field_path: String,
        expression: String,
        reason: String,
    },
}

impl ItemProblem {
    /// A stable name for counting problems by type (not per item).
    pub fn category(&self) -> &'static str {
        match self {
            ItemProblem::SelectorNotBoolean { .. } => "selector not boolean",
            ItemProblem::SelectorFailed { .. } => "selector failed",
            ItemProblem::FieldFailed { .. } => "field failed",
            ItemProblem::FieldNull { .. } => "field null",
            ItemProblem::EmptyIdentifier { .. } => "empty identifier",
            ItemProblem::InvalidIdentifier { .. } => "invalid identifier",
            ItemProblem::EmptyBlueprint { .. } => "empty blueprint",
            ItemProblem::ItemsToParseFailed { .. } => "itemsToParse failed",
            ItemProblem::Runaway { .. } => "expression stopped",
        }
    }

    /// Whether the item could not be mapped as the mapping says (no entity, or not the one
    /// it should be): such an item blocks the deletion of stale entities after a resync. A
    /// field that failed or is null still leaves its entity written, and is only a warning.
    pub fn is_item_failure(&self) -> bool {
        match self {
            ItemProblem::FieldNull { .. } => false,
            ItemProblem::FieldFailed { field_path, .. } => {
                field_path.ends_with(".identifier") || field_path.ends_with(".blueprint")
            }
            _ => true,
        }
    }

    /// The field a field-level problem is about, for grouping warnings per field.
    pub fn field_path(&self) -> Option<&str> {
        match self {
            ItemProblem::FieldFailed { field_path, .. }
            | ItemProblem::FieldNull { field_path, .. }
            | ItemProblem::Runaway { field_path, .. } => Some(field_path),
            _ => None,
        }
    }

    pub fn resource_index(&self) -> usize {
        match self {
            ItemProblem::SelectorNotBoolean { resource_index, .. }
            | ItemProblem::SelectorFailed { resource_index, .. }
            | ItemProblem::FieldFailed { resource_index, .. }
            | ItemProblem::FieldNull { resource_index, .. }
            | ItemProblem::EmptyIdentifier { resource_index, .. }
            | ItemProblem::InvalidIdentifier { resource_index, .. }
            | ItemProblem::EmptyBlueprint { resource_index, .. }
            | ItemProblem::ItemsToParseFailed { resource_index, .. }
            | ItemProblem::Runaway { resource_index, .. } => *resource_index,
        }
    }

    /// Whether the item was stopped (a runaway expression): it produces nothing and is
    /// dead-lettered.
    pub fn is_runaway(&self) -> bool {
        matches!(self, ItemProblem::Runaway { .. })
    }
}

impl fmt::Display for ItemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemProblem::SelectorNotBoolean {
                resource_index,
                kind,
                item_id,
                found,
            } => write!(
                f,
                "resources[{resource_index}].selector.query ({kind} {item_id}): expected a boolean, found {found}"
            ),
            ItemProblem::SelectorFailed {
                resource_index,
                kind,
                item_id,
                error,
            } => write!(
                f,
                "resources[{resource_index}].selector.query ({kind} {item_id}) failed: {error}"
            ),
            ItemProblem::FieldFailed {
                field_path,
                expression,
                item_id,
                error,
                ..
            } => write!(
                f,
                "{field_path} (item {item_id}): `{expression}` failed: {error}"
            ),
            ItemProblem::FieldNull {
                field_path,
                expression,
                item_id,
                ..
            } => write!(
                f,
                "{field_path} (item {item_id}): `{expression}` yielded nothing or null; the field is null"
            ),
            ItemProblem::EmptyIdentifier {
                resource_index,
                kind,
                item_id,
            } => write!(
                f,
                "resources[{resource_index}].port.entity.mappings.identifier ({kind} {item_id}): empty or null; entity skipped"
            ),
            ItemProblem::InvalidIdentifier {
                resource_index,
                kind,
                item_id,
                found,
            } => write!(
                f,
                "resources[{resource_index}].port.entity.mappings.identifier ({kind} {item_id}): expected a string, found {found}; entity skipped"
            ),
            ItemProblem::EmptyBlueprint {
                resource_index,
                kind,
                item_id,
                found,
            } => write!(
                f,
                "resources[{resource_index}].port.entity.mappings.blueprint ({kind} {item_id}): expected a non-empty string, found {found}; entity skipped"
            ),
            ItemProblem::ItemsToParseFailed {
                resource_index,
                kind,
                item_id,
                error,
            } => write!(
                f,
                "resources[{resource_index}].port.itemsToParse ({kind} {item_id}): {error}"
            ),
            ItemProblem::Runaway {
                kind,
                item_id,
                field_path,
                expression,
                reason,
                ..
            } => write!(
                f,
                "{field_path} ({kind} {item_id}): `{}` stopped: {reason}; the item is not mapped",
                shortened(expression)
            ),
        }
    }
}

/// A compiled expression with the place it came from.
#[derive(Debug, Clone)]
struct Field {
    path: String,
    program: JqProgram,
    /// Its index among the mapping's expressions (see [`CompiledMapping::expression`]).
    id: usize,
}

impl Field {
    /// Compiles a mapping value; the deprecated `file://<path>` form reads
    /// `.__includedFiles["<path>"]` (ingest fetches those files, see
    /// `ResourceConfig::legacy_file_paths`).
    fn compile(prelude: &Prelude, path: String, expr: &JqExpr) -> Result<Self, MappingError> {
        match expr.as_str().trim().strip_prefix(LEGACY_FILE_PREFIX) {
            Some(file) => {
                let rewritten = format!(".__includedFiles[{}]", Value::String(file.to_owned()));
                Self::compile_jq(prelude, path, &JqExpr(rewritten))
            }
            None => Self::compile_jq(prelude, path, expr),
        }
    }

    /// Compiles a plain jq expression (selector, itemsToParse).
    fn compile_jq(prelude: &Prelude, path: String, expr: &JqExpr) -> Result<Self, MappingError> {
        match JqProgram::compile_with(prelude, expr.as_str()) {
            Ok(program) => Ok(Self {
                path,
                program,
                id: 0,
            }),
            Err(e) => Err(MappingError::from_jq(path, expr.as_str(), e)),
        }
    }
}

#[derive(Debug, Clone)]
enum CompiledValue {
    Jq(Field),
    Search(CompiledSearch),
}

#[derive(Debug, Clone)]
struct CompiledSearch {
    combinator: Field,
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
enum CompiledRule {
    Rule {
        property: Field,
        operator: Field,
        value: Field,
    },
    Query(CompiledSearch),
}

impl CompiledValue {
    fn fields<'a>(&'a self, out: &mut Vec<&'a Field>) {
        match self {
            CompiledValue::Jq(field) => out.push(field),
            CompiledValue::Search(search) => search.fields(out),
        }
    }

    fn fields_mut<'a>(&'a mut self, out: &mut Vec<&'a mut Field>) {
        match self {
            CompiledValue::Jq(field) => out.push(field),
            CompiledValue::Search(search) => search.fields_mut(out),
        }
    }

    fn compile(
        prelude: &Prelude,
        path: String,
        value: &MappingValue,
    ) -> Result<Self, MappingError> {
        Ok(match value {
            MappingValue::Jq(expr) => CompiledValue::Jq(Field::compile(prelude, path, expr)?),
            MappingValue::Search(query) => {
                CompiledValue::Search(CompiledSearch::compile(prelude, &path, query)?)
            }
        })
    }
}

impl CompiledSearch {
    fn fields<'a>(&'a self, out: &mut Vec<&'a Field>) {
        out.push(&self.combinator);
        for rule in &self.rules {
            match rule {
                CompiledRule::Rule {
                    property,
                    operator,
                    value,
                } => out.extend([property, operator, value]),
                CompiledRule::Query(inner) => inner.fields(out),
            }
        }
    }

    fn fields_mut<'a>(&'a mut self, out: &mut Vec<&'a mut Field>) {
        out.push(&mut self.combinator);
        for rule in &mut self.rules {
            match rule {
                CompiledRule::Rule {
                    property,
                    operator,
                    value,
                } => out.extend([property, operator, value]),
                CompiledRule::Query(inner) => inner.fields_mut(out),
            }
        }
    }

    fn compile(prelude: &Prelude, path: &str, query: &SearchQuery) -> Result<Self, MappingError> {
        let combinator = Field::compile(prelude, format!("{path}.combinator"), &query.combinator)?;
        let mut rules = Vec::with_capacity(query.rules.len());
        for (i, rule) in query.rules.iter().enumerate() {
            let at = format!("{path}.rules[{i}]");
            rules.push(match rule {
                SearchRule::Rule {
                    property,
                    operator,
                    value,
                } => CompiledRule::Rule {
                    property: Field::compile(prelude, format!("{at}.property"), property)?,
                    operator: Field::compile(prelude, format!("{at}.operator"), operator)?,
                    value: Field::compile(prelude, format!("{at}.value"), value)?,
                },
                SearchRule::Query(inner) => {
                    CompiledRule::Query(Self::compile(prelude, &at, inner)?)
                }
            });
        }
        Ok(Self { combinator, rules })
    }
}

#[derive(Debug, Clone)]
struct ItemsToParse {
    field: Field,
    name: String,
    /// `del(<path>)` when `itemsToParseTopLevelTransform` and a path could be read from the
    /// expression.
    remove: Option<JqProgram>,
}

#[derive(Debug, Clone)]
struct CompiledResource {
    index: usize,
    kind: String,
    selector: Field,
    items_to_parse: Option<ItemsToParse>,
    identifier: CompiledValue,
    blueprint: Field,
    title: Option<Field>,
    icon: Option<Field>,
    team: Option<CompiledValue>,
    properties: Vec<(String, Field)>,
    relations: Vec<(String, CompiledValue)>,
}

impl CompiledResource {
    /// Every expression of the resource.
    fn fields(&self) -> Vec<&Field> {
        let mut out = vec![&self.selector, &self.blueprint];
        out.extend(self.items_to_parse.iter().map(|i| &i.field));
        out.extend([&self.title, &self.icon].into_iter().flatten());
        out.extend(self.properties.iter().map(|(_, f)| f));
        for value in std::iter::once(&self.identifier)
            .chain(&self.team)
            .chain(self.relations.iter().map(|(_, v)| v))
        {
            value.fields(&mut out);
        }
        out
    }

    fn fields_mut(&mut self) -> Vec<&mut Field> {
        let mut out = vec![&mut self.selector, &mut self.blueprint];
        out.extend(self.items_to_parse.iter_mut().map(|i| &mut i.field));
        out.extend([&mut self.title, &mut self.icon].into_iter().flatten());
        out.extend(self.properties.iter_mut().map(|(_, f)| f));
        for value in std::iter::once(&mut self.identifier)
            .chain(&mut self.team)
            .chain(self.relations.iter_mut().map(|(_, v)| v))
        {
            value.fields_mut(&mut out);
        }
        out
    }
}

/// A port-app-config with every expression compiled. Immutable and `Send + Sync`: share it
/// behind an `Arc` between worker tasks; a new mapping version is a new `CompiledMapping`.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    resources: Vec<CompiledResource>,
    /// Every expression by its id: (resource index, path, text).
    expressions: Vec<(usize, String, String)>,
}

impl CompiledMapping {
    /// A mapping of no resources: maps nothing.
    pub fn empty() -> Self {
        Self {
            resources: Vec::new(),
            expressions: Vec::new(),
        }
    }

    /// Compiles every expression of the config. Every expression that does not compile is
    /// reported (with its path, its text and jaq's message), not just the first.
    ///
    /// Compiling recurses as deep as an expression nests: it runs on a thread of its own with
    /// [`COMPILER_STACK`] of stack, so that no mapping can overflow the caller's.
    pub fn compile(config: &PortAppConfig) -> Result<Self, MappingError> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("adoport-jq-compile".into())
                .stack_size(COMPILER_STACK)
                .spawn_scoped(scope, || Self::compile_here(config))
                .map_err(|e| MappingError::NoCompiler(e.to_string()))?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn compile_here(config: &PortAppConfig) -> Result<Self, MappingError> {
        let prelude = Prelude::new();
        let mut errors = Vec::new();
        let mut resources = Vec::with_capacity(config.resources.len());
        for (index, resource) in config.resources.iter().enumerate() {
            if let Some(r) = compile_resource(&prelude, index, resource, &mut errors) {
                resources.push(r);
            }
        }
        MappingError::from_all(errors)?;
        let mut expressions = Vec::new();
        for r in &mut resources {
            let index = r.index;
            for field in r.fields_mut() {
                field.id = expressions.len();
                expressions.push((index, field.path.clone(), field.program.source().to_owned()));
            }
        }
        Ok(Self {
            resources,
            expressions,
        })
    }

    /// The expression with this id: its resource's index, its path and its text.
    pub fn expression(&self, id: usize) -> Option<(usize, &str, &str)> {
        self.expressions
            .get(id)
            .map(|(index, path, text)| (*index, path.as_str(), text.as_str()))
    }

    /// The same mapping with every expression evaluated by jaq alone, without the fast path
    /// (`adoport bench-mapping --jaq-only` measures it; tests compare the two).
    pub fn without_fast_paths(&self) -> Self {
        let mut slow = self.clone();
        for r in &mut slow.resources {
            for field in r.fields_mut() {
                field.program = field.program.without_fast_path();
            }
        }
        slow
    }

    /// How many of the mapping's expressions the fast path covers, of how many.
    pub fn fast_path_coverage(&self) -> (usize, usize) {
        let fields: Vec<&Field> = self.resources.iter().flat_map(|r| r.fields()).collect();
        let fast = fields.iter().filter(|f| f.program.has_fast_path()).count();
        (fast, fields.len())
    }

    /// The indices of the resources `resources` names, in mapping order (those an event's
    /// items are mapped with).
    pub fn indices(&self, resources: Resources<'_>) -> Vec<u32> {
        (self.resources.iter())
            .filter(|r| resources.includes(&r.kind, r.index))
            .filter_map(|r| u32::try_from(r.index).ok())
            .collect()
    }

    /// Whether any resource maps this kind.
    pub fn handles(&self, kind: &str) -> bool {
        self.resources.iter().any(|r| r.kind == kind)
    }

    /// Maps one raw item of `kind`, with the default limits, on the calling thread (tools,
    /// tests, the benchmark; the worker uses [`CompiledMapping::map_item`]). `Upsert`:
    /// entities of the resources whose selector passes. `Delete`: a delete for every resource
    /// whose identifier and blueprint evaluate (the selector is not consulted: a deleted
    /// item's state may no longer pass it).
    pub fn apply(&self, kind: &str, action: RawAction, item: &Value) -> KindOutcome {
        self.apply_to(Resources::of_kind(kind), action, item, false)
    }

    /// Like [`CompiledMapping::apply`] for a live event (see [`CompiledMapping::map_item`]).
    pub fn apply_live(&self, kind: &str, action: RawAction, item: &Value) -> KindOutcome {
        self.apply_to(Resources::of_kind(kind), action, item, true)
    }

    /// Like [`CompiledMapping::apply`] (`live`: [`CompiledMapping::apply_live`]) with only
    /// the resources `resources` names.
    pub fn apply_to(
        &self,
        resources: Resources<'_>,
        action: RawAction,
        item: &Value,
        live: bool,
    ) -> KindOutcome {
        let budget = JqLimits::default().on_any_thread().for_item();
        self.map_item(resources, action, item, live, &budget, None)
    }

    /// Maps one raw item of `kind` within `budget`. `live` (a webhook's item): an item that
    /// no longer passes a resource's selector deletes that resource's entity, unless another
    /// resource of the same kind upserts the same entity (as the two `repository-policy`
    /// resources of the default mapping do) — Ocean's "failed selector → delete" for live
    /// events. `watch`, when given, holds the id of the expression running (see
    /// [`CompiledMapping::expression`]), for whoever watches the evaluation from outside.
    pub fn map_item(
        &self,
        resources: Resources<'_>,
        action: RawAction,
        item: &Value,
        live: bool,
        budget: &ItemBudget,
        watch: Option<&AtomicUsize>,
    ) -> KindOutcome {
        let mut outcome = self.run(resources, action, item, live, ItemRun { budget, watch });
        if live && action == RawAction::Upsert {
            let upserted: Vec<(String, String)> = outcome
                .changes
                .iter()
                .filter(|c| matches!(c.op, ChangeOp::Upsert { .. }))
                .map(|c| (c.blueprint.clone(), c.identifier.clone()))
                .collect();
            let mut seen: Vec<(String, String)> = Vec::new();
            outcome.changes.retain(|c| {
                if !matches!(c.op, ChangeOp::Delete) {
                    return true;
                }
                let key = (c.blueprint.clone(), c.identifier.clone());
                if upserted.contains(&key) || seen.contains(&key) {
                    return false;
                }
                seen.push(key);
                true
            });
        }
        outcome
    }

    fn run(
        &self,
        resources: Resources<'_>,
        action: RawAction,
        item: &Value,
        live: bool,
        ItemRun { budget, watch }: ItemRun,
    ) -> KindOutcome {
        let mut outcome = KindOutcome::default();
        let mut stop = None;
        // Shared by every resource and field: converted to jaq at most once, and only if an
        // expression without a fast path needs it.
        let input = JqInput::from_json(item);
        for resource in (self.resources.iter()).filter(|r| resources.includes(&r.kind, r.index)) {
            let mut ctx = ItemCtx {
                resource,
                item,
                outcome: &mut outcome,
                budget,
                watch,
                stop: &mut stop,
            };
            match &resource.items_to_parse {
                None => ctx.one(action, &input, live),
                Some(items) => {
                    for expanded in ctx.expand(items, &input) {
                        if ctx.stop.is_some() {
                            break;
                        }
                        ctx.one(action, &expanded, live);
                    }
                }
            }
            if stop.is_some() {
                break;
            }
        }
        match stop {
            // A runaway expression fails the whole item: nothing of it is written.
            Some(runaway) => KindOutcome::failed(runaway),
            None => outcome,
        }
    }
}

/// Which resources of the mapping an item is mapped with: those of `kind`, and of them only
/// the ones `only` lists (indices into the mapping's `resources`; `None`: all of them) — a
/// raw event's `resources`, the crawl unit that read its items.
#[derive(Debug, Clone, Copy)]
pub struct Resources<'a> {
    pub kind: &'a str,
    pub only: Option<&'a [u32]>,
}

impl<'a> Resources<'a> {
    /// Every resource of `kind`.
    pub fn of_kind(kind: &'a str) -> Self {
        Self { kind, only: None }
    }

    /// The resources a raw event names (every resource of its kind when it names none).
    pub fn of_event(event: &'a adoport_shared::messages::RawEvent) -> Self {
        Self {
            kind: &event.kind,
            only: event.resources.as_deref(),
        }
    }

    fn includes(&self, kind: &str, index: usize) -> bool {
        kind == self.kind
            && self
                .only
                .is_none_or(|only| u32::try_from(index).is_ok_and(|index| only.contains(&index)))
    }
}

/// Compiles one resource; `None` after recording every error of its expressions.
fn compile_resource(
    prelude: &Prelude,
    index: usize,
    resource: &adoport_shared::port_app_config::ResourceConfig,
    errors: &mut Vec<MappingError>,
) -> Option<CompiledResource> {
    fn keep<T>(errors: &mut Vec<MappingError>, r: Result<T, MappingError>) -> Option<T> {
        r.map_err(|e| errors.push(e)).ok()
    }
    let at = format!("resources[{index}]");
    let m = &resource.port.entity.mappings;
    let mp = format!("{at}.port.entity.mappings");
    let items_to_parse = match &resource.port.items_to_parse {
        None => Some(None),
        Some(expr) => keep(
            errors,
            Field::compile_jq(prelude, format!("{at}.port.itemsToParse"), expr),
        )
        .map(|field| {
            let remove = if resource.port.items_to_parse_top_level_transform {
                deletion_path(expr.as_str())
                    .and_then(|path| JqProgram::compile_with(prelude, &format!("del({path})")).ok())
            } else {
                None
            };
            Some(ItemsToParse {
                field,
                name: resource.port.items_to_parse_name.clone(),
                remove,
            })
        }),
    };
    let selector = keep(
        errors,
        Field::compile_jq(
            prelude,
            format!("{at}.selector.query"),
            &resource.selector.query,
        ),
    );
    let identifier = keep(
        errors,
        CompiledValue::compile(prelude, format!("{mp}.identifier"), &m.identifier),
    );
    let blueprint = keep(
        errors,
        Field::compile(prelude, format!("{mp}.blueprint"), &m.blueprint),
    );
    let mut optional = |name: &str, expr: &Option<JqExpr>| -> Option<Option<Field>> {
        match expr {
            None => Some(None),
            Some(e) => keep(errors, Field::compile(prelude, format!("{mp}.{name}"), e)).map(Some),
        }
    };
    let title = optional("title", &m.title);
    let icon = optional("icon", &m.icon);
    let team = match &m.team {
        None => Some(None),
        Some(t) => keep(
            errors,
            CompiledValue::compile(prelude, format!("{mp}.team"), t),
        )
        .map(Some),
    };
    let properties = compile_named(&m.properties, |name, expr| {
        keep(
            errors,
            Field::compile(prelude, format!("{mp}.properties.{name}"), expr),
        )
    });
    let relations = compile_named(&m.relations, |name, value| {
        keep(
            errors,
            CompiledValue::compile(prelude, format!("{mp}.relations.{name}"), value),
        )
    });
    Some(CompiledResource {
        index,
        kind: resource.kind.clone(),
        selector: selector?,
        items_to_parse: items_to_parse?,
        identifier: identifier?,
        blueprint: blueprint?,
        title: title?,
        icon: icon?,
        team: team?,
        properties: properties?,
        relations: relations?,
    })
}

/// Compiles every entry (so that each failure is reported), in order; `None` when any failed.
fn compile_named<T, C>(
    entries: &NamedFields<T>,
    mut compile: impl FnMut(&str, &T) -> Option<C>,
) -> Option<Vec<(String, C)>> {
    let mut compiled = Some(Vec::with_capacity(entries.len()));
    for (name, entry) in entries.iter() {
        match (&mut compiled, compile(name, entry)) {
            (Some(list), Some(done)) => list.push((name.to_owned(), done)),
            _ => compiled = None,
        }
    }
    compiled
}

/// The item's `.id` (string or number) for problem reports.
pub(crate) fn item_id(item: &Value) -> String {
    match item.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<no id>".to_owned(),
    }
}

fn short(value: &Value) -> String {
    value_excerpt(value, 80)
}

/// What an item's evaluations share: its budget, and where to say which expression runs.
struct ItemRun<'a> {
    budget: &'a ItemBudget,
    watch: Option<&'a AtomicUsize>,
}

struct ItemCtx<'a> {
    resource: &'a CompiledResource,
    item: &'a Value,
    outcome: &'a mut KindOutcome,
    budget: &'a ItemBudget,
    watch: Option<&'a AtomicUsize>,
    /// The runaway that stopped the item, once one did.
    stop: &'a mut Option<ItemProblem>,
}

impl ItemCtx<'_> {
    /// Runs `program` (the expression of `field`, or one derived from it) on this item as jaq
    /// values: `Err(None)` once the item is stopped, by this expression or an earlier one.
    fn first_val(
        &mut self,
        field: &Field,
        program: &JqProgram,
        input: &JqInput,
    ) -> Result<Option<Val>, Option<JqError>> {
        self.checked(field, program, |budget| program.first_val(input, budget))
    }

    /// Like [`ItemCtx::first_val`], as JSON (through the fast path when it has one).
    fn first(
        &mut self,
        field: &Field,
        program: &JqProgram,
        input: &JqInput,
    ) -> Result<Option<Value>, Option<JqError>> {
        self.checked(field, program, |budget| program.first_on(input, budget))
    }

    fn checked<T>(
        &mut self,
        field: &Field,
        program: &JqProgram,
        run: impl FnOnce(&ItemBudget) -> Result<T, JqError>,
    ) -> Result<T, Option<JqError>> {
        if self.stop.is_some() {
            return Err(None);
        }
        if let Some(watch) = self.watch {
            watch.store(field.id, Ordering::Relaxed);
        }
        run(self.budget).map_err(|e| match e {
            JqError::Runaway(why) => {
                self.stopped(field, program, why);
                None
            }
            other => Some(other),
        })
    }

    fn stopped(&mut self, field: &Field, program: &JqProgram, why: Runaway) {
        *self.stop = Some(ItemProblem::Runaway {
            resource_index: self.resource.index,
            kind: self.resource.kind.clone(),
            item_id: item_id(self.item),
            field_path: field.path.clone(),
            expression: program.source().to_owned(),
            reason: why.to_string(),
        });
    }

    fn expand(&mut self, items: &ItemsToParse, input: &JqInput) -> Vec<JqInput<'static>> {
        let failed = |this: &mut Self, error: String| {
            this.outcome.problems.push(ItemProblem::ItemsToParseFailed {
                resource_index: this.resource.index,
                kind: this.resource.kind.clone(),
                item_id: item_id(this.item),
                error,
            });
            Vec::new()
        };
        let source = items.field.program.source();
        let elements = match self.first_val(&items.field, &items.field.program, input) {
            Ok(Some(Val::Arr(elements))) => elements,
            Ok(Some(other)) => {
                let found = val_to_json(&other, self.budget)
                    .map_or_else(|_| "a value too large to show".to_owned(), |v| short(&v));
                return failed(
                    self,
                    format!("`{source}` must yield an array, found {found}"),
                );
            }
            Ok(None) => return failed(self, format!("`{source}` yielded nothing")),
            Err(Some(e)) => return failed(self, format!("`{source}` failed: {e}")),
            Err(None) => return Vec::new(),
        };
        let base = match &items.remove {
            None => input.val().clone(),
            Some(remove) => {
                let whole = JqInput::from_val(input.val().clone());
                match self.first_val(&items.field, remove, &whole) {
                    Ok(Some(v)) => v,
                    Ok(None) => {
                        return failed(self, format!("`{}` yielded nothing", remove.source()));
                    }
                    Err(Some(e)) => {
                        return failed(self, format!("`{}` failed: {e}", remove.source()));
                    }
                    Err(None) => return Vec::new(),
                }
            }
        };
        let Val::Obj(base) = base else {
            return failed(self, "the item is not an object".to_owned());
        };
        let name = Val::utf8_str(items.name.clone().into_bytes());
        elements
            .iter()
            .map(|element| {
                let mut merged = (*base).clone();
                merged.insert(name.clone(), element.clone());
                JqInput::from_val(Val::obj(merged))
            })
            .collect()
    }

    fn field_failed(&mut self, field: &Field, error: JqError) {
        self.outcome.problems.push(ItemProblem::FieldFailed {
            resource_index: self.resource.index,
            field_path: field.path.clone(),
            expression: field.program.source().to_owned(),
            item_id: item_id(self.item),
            error: error.to_string(),
        });
    }

    /// Evaluates a property or relation: its value, `null` after recording a failure, or `null`
    /// with a warning when it yields nothing or null.
    fn eval_field(&mut self, field: &Field, input: &JqInput) -> Value {
        match self.eval(field, input) {
            Ok(Value::Null) => {
                self.outcome.problems.push(ItemProblem::FieldNull {
                    resource_index: self.resource.index,
                    field_path: field.path.clone(),
                    expression: field.program.source().to_owned(),
                    item_id: item_id(self.item),
                });
                Value::Null
            }
            Ok(value) => value,
            Err(()) => Value::Null,
        }
    }

    /// Evaluates a field: `Ok(value)` (null when it yields nothing), `Err(())` after recording
    /// the failure.
    fn eval(&mut self, field: &Field, input: &JqInput) -> Result<Value, ()> {
        match self.first(field, &field.program, input) {
            Ok(v) => Ok(v.unwrap_or(Value::Null)),
            Err(Some(e)) => {
                self.field_failed(field, e);
                Err(())
            }
            Err(None) => Err(()),
        }
    }

    fn eval_value(&mut self, value: &CompiledValue, input: &JqInput) -> Result<Value, ()> {
        match value {
            CompiledValue::Jq(field) => self.eval(field, input),
            CompiledValue::Search(search) => Ok(self.eval_search(search, input)),
        }
    }

    /// A search query with every expression evaluated (a failing one is null + a problem).
    fn eval_search(&mut self, search: &CompiledSearch, input: &JqInput) -> Value {
        let mut object = Map::new();
        object.insert(
            "combinator".to_owned(),
            self.eval(&search.combinator, input).unwrap_or(Value::Null),
        );
        let rules = search
            .rules
            .iter()
            .map(|rule| match rule {
                CompiledRule::Rule {
                    property,
                    operator,
                    value,
                } => {
                    let mut r = Map::new();
                    r.insert(
                        "property".to_owned(),
                        self.eval(property, input).unwrap_or(Value::Null),
                    );
                    r.insert(
                        "operator".to_owned(),
                        self.eval(operator, input).unwrap_or(Value::Null),
                    );
                    r.insert(
                        "value".to_owned(),
                        self.eval(value, input).unwrap_or(Value::Null),
                    );
                    Value::Object(r)
                }
                CompiledRule::Query(inner) => self.eval_search(inner, input),
            })
            .collect();
        object.insert("rules".to_owned(), Value::Array(rules));
        Value::Object(object)
    }

    /// Maps one (possibly expanded) item through this resource.
    fn one(&mut self, action: RawAction, input: &JqInput, live: bool) {
        let r = self.resource;
        let mut passes = true;
        if action == RawAction::Upsert {
            match self.first(&r.selector, &r.selector.program, input) {
                Ok(Some(Value::Bool(b))) => passes = b,
                Ok(other) => {
                    let found = other.map_or_else(|| "nothing".to_owned(), |v| short(&v));
                    self.outcome.problems.push(ItemProblem::SelectorNotBoolean {
                        resource_index: r.index,
                        kind: r.kind.clone(),
                        item_id: item_id(self.item),
                        found,
                    });
                    return;
                }
                Err(Some(e)) => {
                    self.outcome.problems.push(ItemProblem::SelectorFailed {
                        resource_index: r.index,
                        kind: r.kind.clone(),
                        item_id: item_id(self.item),
                        error: e.to_string(),
                    });
                    return;
                }
                Err(None) => return,
            }
            if !passes && !live {
                return;
            }
        }

        let Some((identifier, identifier_text)) = self.identifier(input) else {
            return;
        };
        let Some(blueprint) = self.blueprint(input) else {
            return;
        };

        if action == RawAction::Delete || !passes {
            self.outcome.changes.push(MappedChange {
                blueprint,
                identifier: identifier_text,
                resource_index: self.resource.index,
                op: ChangeOp::Delete,
            });
            return;
        }

        // Sized up front: no rehash while the entity is filled.
        let mut entity = Map::with_capacity(6);
        entity.insert("identifier".to_owned(), identifier);
        for (name, field) in [("title", &r.title), ("icon", &r.icon)] {
            if let Some(field) = field
                && let Ok(v) = self.eval(field, input)
                && !v.is_null()
            {
                entity.insert(name.to_owned(), v);
            }
        }
        if let Some(team) = &r.team
            && let Ok(v) = self.eval_value(team, input)
            && !v.is_null()
        {
            entity.insert("team".to_owned(), v);
        }
        let mut properties = Map::with_capacity(r.properties.len());
        for (name, field) in &r.properties {
            properties.insert(name.clone(), self.eval_field(field, input));
        }
        entity.insert("properties".to_owned(), Value::Object(properties));
        let mut relations = Map::with_capacity(r.relations.len());
        for (name, value) in &r.relations {
            let related = match value {
                CompiledValue::Jq(field) => self.eval_field(field, input),
                search => self.eval_value(search, input).unwrap_or(Value::Null),
            };
            relations.insert(name.clone(), related);
        }
        entity.insert("relations".to_owned(), Value::Object(relations));

        self.outcome.changes.push(MappedChange {
            blueprint,
            identifier: identifier_text,
            resource_index: self.resource.index,
            op: ChangeOp::Upsert {
                entity: Value::Object(entity),
            },
        });
    }

    /// The identifier as sent to Port, and as text for routing; `None` after a problem.
    fn identifier(&mut self, input: &JqInput) -> Option<(Value, String)> {
        let r = self.resource;
        let value = self.eval_value(&r.identifier, input).ok()?;
        let problem = match value {
            Value::String(s) if !s.is_empty() => return Some((Value::String(s.clone()), s)),
            // Port identifiers are strings; a numeric id (`.id` of a build) is sent as its text.
            Value::Number(n) => {
                let text = n.to_string();
                return Some((Value::String(text.clone()), text));
            }
            Value::Object(_) if matches!(r.identifier, CompiledValue::Search(_)) => {
                let text = value.to_string();
                return Some((value, text));
            }
            Value::Null | Value::Bool(false) => ItemProblem::EmptyIdentifier {
                resource_index: r.index,
                kind: r.kind.clone(),
                item_id: item_id(self.item),
            },
            Value::String(_) => ItemProblem::EmptyIdentifier {
                resource_index: r.index,
                kind: r.kind.clone(),
                item_id: item_id(self.item),
            },
            other => ItemProblem::InvalidIdentifier {
                resource_index: r.index,
                kind: r.kind.clone(),
                item_id: item_id(self.item),
                found: short(&other),
            },
        };
        self.outcome.problems.push(problem);
        None
    }

    fn blueprint(&mut self, input: &JqInput) -> Option<String> {
        let r = self.resource;
        match self.eval(&r.blueprint, input).ok()? {
            Value::String(s) if !s.is_empty() => Some(s),
            other => {
                self.outcome.problems.push(ItemProblem::EmptyBlueprint {
                    resource_index: r.index,
                    kind: r.kind.clone(),
                    item_id: item_id(self.item),
                    found: short(&other),
                });
                None
            }
        }
    }
}

/// The path `itemsToParseTopLevelTransform` deletes from the item: the first plain path
/// (`.a.b`, `.a[0]`, `.["a"]`) found in the pipe segments of the `itemsToParse` expression, as
/// Ocean's `extract_jq_deletion_path_revised` finds it. `None` when there is none; Ocean then
/// runs `del(.)`, which yields null and drops every item (a bug we do not copy: we delete
/// nothing).
pub(crate) fn deletion_path(expr: &str) -> Option<String> {
    let expr = expr.trim();
    let chain = if let Some(rest) = expr.strip_prefix('(') {
        rest[..rest.find(')')?].trim()
    } else {
        expr
    };
    for segment in chain.split('|') {
        let segment = segment.trim();
        if is_dot_as_var(segment) || segment == "." || segment.starts_with('$') {
            continue;
        }
        if let Some(path) = leading_path(segment) {
            return Some(path.to_owned());
        }
    }
    None
}

/// `. as $name` at the start of a segment.
fn is_dot_as_var(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('.') else {
        return false;
    };
    let trimmed = rest.trim_start();
    if trimmed.len() == rest.len() {
        return false;
    }
    let Some(rest) = trimmed.strip_prefix("as") else {
        return false;
    };
    let trimmed = rest.trim_start();
    if trimmed.len() == rest.len() {
        return false;
    }
    trimmed
        .strip_prefix('$')
        .is_some_and(|name| name.chars().next().is_some_and(is_word))
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The regex `(\.\w+|\.\[[^\]]+\])(\.\w+|\[[^\]]+\]|\.\[[^\]]+\])*` anchored at the start.
fn leading_path(segment: &str) -> Option<&str> {
    fn word(s: &str) -> usize {
        s.char_indices()
            .find(|(_, c)| !is_word(*c))
            .map_or(s.len(), |(i, _)| i)
    }
    fn bracket(s: &str) -> usize {
        // `[` then one or more non-`]` then `]`
        if !s.starts_with('[') {
            return 0;
        }
        match s[1..].find(']') {
            Some(0) | None => 0,
            Some(i) => i + 2,
        }
    }
    let component = |s: &str, first: bool| -> usize {
        if let Some(rest) = s.strip_prefix('.') {
            let w = word(rest);
            if w > 0 {
                return 1 + w;
            }
            let b = bracket(rest);
            if b > 0 {
                return 1 + b;
            }
            0
        } else if !first {
            bracket(s)
        } else {
            0
        }
    };
    let mut end = component(segment, true);
    if end == 0 {
        return None;
    }
    loop {
        let next = component(&segment[end..], false);
        if next == 0 {
            return Some(&segment[..end]);
        }
        end += next;
    }
}

pub mod versions;

#[cfg(test)]
mod tests;
