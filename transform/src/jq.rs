//! jq programs, compiled once with jaq and run many times on `serde_json` values.
//!
//! This module owns everything that touches jaq: the prelude (jaq's core, std and json
//! definitions), the jq dialect Ocean accepts (single-quoted string literals; `env` and `$ENV`
//! are what [`expose_environment`] exposed, else `{}`), and the conversion between `serde_json::Value` and jaq's `Val`
//! (integral numbers come back as JSON integers, as jq prints them). Nothing here is async, and no
//! jaq value leaves this module except inside a [`JqInput`] that lives for one item.
//!
//! Speed: most mapping expressions are key paths, literals and a few string operations; those
//! run on the `serde_json` item directly (`fast`), so an item is converted to jaq only when an
//! expression without a fast path needs it, and at most once.
//!
//! Memory: a program is compiled with only the prelude's definitions it can call (`reach`):
//! jaq keeps every definition it compiles, and a mapping has a program per expression.
//!
//! Bounds: every program is compiled with guards (`guard`) that report to a meter
//! ([`limits`]): an evaluation that recurses too deep, runs too long or builds too much is
//! stopped with [`JqError::Runaway`], whatever the expression does.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use jaq_core::load::parse::Def;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::{Num, Val};
use serde_json::Value;

mod fast;
mod guard;
pub mod limits;
mod reach;
mod text;

pub use limits::{ItemBudget, JqLimits, Runaway};

use guard::Bounded;
type Filter = jaq_core::Filter<Bounded>;

/// What can go wrong with a jq expression.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JqError {
    /// The expression does not parse or names something undefined.
    #[error("jq expression `{expr}` does not compile: {message}")]
    Compile { expr: String, message: String },
    /// The expression failed on this input (e.g. `cannot index number with "a"`).
    #[error("{message}")]
    Runtime { message: String },
    /// The evaluation was stopped at one of its limits (see [`limits`]).
    #[error("stopped: {0}")]
    Runaway(Runaway),
}

/// The definitions every program can use, parsed once and shared by the programs compiled with
/// it (parsing jaq's standard library is most of the cost of a compile), and what `env` and
/// `$ENV` hold in them.
#[derive(Clone)]
pub struct Prelude {
    defs: Arc<Vec<Def<&'static str>>>,
    environment: Val,
}

/// The environment the process exposed to mappings, once, at start-up.
static ENVIRONMENT: OnceLock<Val> = OnceLock::new();

/// Makes `vars` what `env` and `$ENV` hold in every mapping this process compiles from now on
/// (the role's start-up calls it with `Settings::jq_environment`, which leaves secrets out and
/// is empty when `OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS` is false). Only the first call
/// counts: the environment of a process does not change.
pub fn expose_environment(vars: &BTreeMap<String, String>) {
    let _ = ENVIRONMENT.set(environment_val(vars));
}

fn environment_val(vars: &BTreeMap<String, String>) -> Val {
    json_to_val(&Value::Object(
        vars.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    ))
}

/// Our definitions, loaded after jaq's: the hidden environment (`env` is `{}`) and the builtins
/// that make jaq answer as jq does (measured by `tests/jq_differential.rs`).
const PRELUDE: &str = include_str!("prelude.jq");

impl Prelude {
    /// The prelude with the environment the process exposed ([`expose_environment`]; `{}`
    /// when it exposed none).
    pub fn new() -> Self {
        let environment = ENVIRONMENT
            .get()
            .cloned()
            .unwrap_or_else(|| environment_val(&BTreeMap::new()));
        Self::parsed(environment)
    }

    /// The prelude with `vars` as `env` and `$ENV`, whatever the process exposed (tests, tools).
    pub fn with_environment(vars: &BTreeMap<String, String>) -> Self {
        Self::parsed(environment_val(vars))
    }

    fn parsed(environment: Val) -> Self {
        // A parse error here is a bug in `prelude.jq`, caught by the tests below.
        let ours = jaq_core::load::parse(PRELUDE, |p| p.defs()).unwrap_or_default();
        let mut defs: Vec<_> = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .chain(ours)
            .collect();
        defs.iter_mut().for_each(guard::guard_def);
        Self {
            defs: Arc::new(defs),
            environment,
        }
    }
}

impl Default for Prelude {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Prelude {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prelude")
            .field("defs", &self.defs.len())
            .finish()
    }
}

/// A compiled jq expression. `Send + Sync`: one compiled mapping serves every worker task.
///
/// Expressions of the shapes most mappings consist of (literals, key paths, `//`, `+`,
/// `tostring`, `gsub` of plain text, …) also get a fast path that evaluates them on the
/// `serde_json` input directly; it answers only when its answer is jaq's and leaves every other
/// case to jaq (see `jq/fast.rs`).
#[derive(Clone)]
pub struct JqProgram {
    source: String,
    filter: Arc<Filter>,
    fast: Option<Arc<fast::Fast>>,
    /// `$ENV` (and `env`), from the prelude it was compiled with.
    environment: Val,
}

impl std::fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JqProgram").field(&self.source).finish()
    }
}

/// One item, to run several programs on: converted to jaq at most once, and only if a program
/// without a fast path needs it.
#[derive(Clone)]
pub struct JqInput<'a> {
    json: Option<&'a Value>,
    val: OnceCell<Val>,
}

impl<'a> JqInput<'a> {
    pub fn from_json(value: &'a Value) -> Self {
        Self {
            json: Some(value),
            val: OnceCell::new(),
        }
    }
}

impl JqProgram {
    /// Compiles one expression (parses the standard library each time: use
    /// [`JqProgram::compile_with`] with a shared [`Prelude`] to compile many).
    pub fn compile(expr: &str) -> Result<Self, JqError> {
        Self::compile_with(&Prelude::new(), expr)
    }

    /// Compiles one expression against a shared prelude, with its guards (see `guard`).
    ///
    /// Parsing and compiling recurse once per level of nesting of the expression: an
    /// expression is at most [`MAX_EXPRESSION_BYTES`] long, and
    /// [`crate::CompiledMapping::compile`] compiles on a thread with [`COMPILER_STACK`] of
    /// stack, enough for the deepest nesting that length allows.
    pub fn compile_with(prelude: &Prelude, expr: &str) -> Result<Self, JqError> {
        let code = convert_single_quotes(expr);
        let compile_error = |message: String| JqError::Compile {
            expr: expr.to_owned(),
            message,
        };
        if code.len() > MAX_EXPRESSION_BYTES {
            return Err(compile_error(format!(
                "the expression is {} bytes long; at most {MAX_EXPRESSION_BYTES} are accepted",
                code.len()
            )));
        }
        let Some(mut main) = jaq_core::load::parse(&code, |p| p.term()) else {
            // Load it the usual way, for jaq's description of what is wrong.
            let arena = Arena::default();
            let message = match Loader::new([]).load(
                &arena,
                File {
                    code: &*code,
                    path: (),
                },
            ) {
                Err(errs) => describe_load_errors(&code, errs),
                Ok(_) => "modules (`import`, `include`) are not supported".to_owned(),
            };
            return Err(compile_error(message));
        };
        if let Some(name) = guard::reserved_name(&main) {
            return Err(compile_error(format!(
                "`{name}`: names starting with `_adoport_` are reserved"
            )));
        }
        guard::guard_term(&mut main);
        // The expression becomes the body of a definition, called by the main program.
        let main = Def {
            name: MAIN,
            args: Vec::new(),
            body: main,
        };
        let arena = Arena::default();
        // Only the definitions the expression reaches: jaq compiles every one it is given.
        let defs = reach::reachable(&prelude.defs, &main.body);
        let loader = Loader::new(defs.into_iter().chain([main]));
        let modules = loader
            .load(
                &arena,
                File {
                    code: MAIN,
                    path: (),
                },
            )
            .map_err(|errs| compile_error(describe_load_errors(MAIN, errs)))?;
        let funs = jaq_core::funs()
            .chain(jaq_std::funs().filter(|(name, _, _)| *name != "env"))
            .chain(jaq_json::funs())
            .filter(|(name, args, _)| !guard::replaced(name, args.len()))
            .chain(guard::funs());
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(["$ENV"])
            .compile(modules)
            .map_err(|errs| compile_error(describe_compile_errors(errs)))?;
        Ok(Self {
            source: expr.to_owned(),
            filter: Arc::new(filter),
            fast: fast::Fast::compile(&code).map(Arc::new),
            environment: prelude.environment.clone(),
        })
    }

    /// The same program without its fast path: everything runs on jaq (to measure or test
    /// the fast path against it).
    pub fn without_fast_path(&self) -> Self {
        Self {
            fast: None,
            ..self.clone()
        }
    }

    /// Whether the fast path covers this expression.
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// The expression as the user wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first output of the program on `input` (Ocean uses only the first), `None` if it
    /// yields nothing; with the default limits, on the calling thread (tests and tools).
    pub fn first(&self, input: &Value) -> Result<Option<Value>, JqError> {
        let budget = JqLimits::default().on_any_thread().for_item();
        self.first_on(&JqInput::from_json(input), &budget)
    }

    /// Like [`JqProgram::first`], on an input shared by several programs, within the budget of
    /// the item.
    pub fn first_on(&self, input: &JqInput, budget: &ItemBudget) -> Result<Option<Value>, JqError> {
        if let (Some(fast), Some(json)) = (&self.fast, input.json)
            && let Some(out) = fast.run(json)
        {
            // The fast path always yields exactly one output.
            return Ok(Some(out.into_owned()));
        }
        match self.first_val(input, budget)? {
            None => Ok(None),
            Some(v) => val_to_json(&v, budget).map(Some),
        }
    }

    /// The first output as a jaq value (stays inside this crate); always runs jaq.
    pub(crate) fn first_val(
        &self,
        input: &JqInput,
        budget: &ItemBudget,
    ) -> Result<Option<Val>, JqError> {
        let meter = budget.meter();
        let env = guard::Env {
            lut: &self.filter.lut,
            meter: &meter,
        };
        let ctx = Ctx::<Bounded>::new(&env, Vars::new([self.environment.clone()]));
        let first = self.filter.id.run((ctx, input.val().clone())).next();
        // A stop is final even if the program caught an error and went on.
        if let Some(why) = meter.stopped() {
            return Err(JqError::Runaway(why));
        }
        match first {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(exn)) => Err(JqError::Runtime {
                // `halt` must not end the process (jaq's `unwrap_valr` would exit).
                message: match exn.get_err() {
                    Ok(e) => capped_message(&e),
                    Err(_) => "halt (or an unexpected control flow) is not allowed in a mapping"
                        .to_owned(),
                },
            }),
        }
    }
}

/// The definition the user's expression becomes.
const MAIN: &str = "_adoport_main";

/// The longest expression accepted (a mapping's are a few hundred bytes).
pub const MAX_EXPRESSION_BYTES: usize = 16 * 1024;

/// Stack for compiling a mapping: parsing, guarding and compiling the most deeply nested
/// expression of [`MAX_EXPRESSION_BYTES`] (measured: under 64 MiB in a debug build).
pub const COMPILER_STACK: usize = 256 * 1024 * 1024;

/// An error message of at most [`MESSAGE_CHARS`] characters: jaq's messages quote the values
/// involved, which may be huge (or nested deep enough to exhaust the stack if printed whole).
fn capped_message(error: &jaq_core::Error<Val>) -> String {
    struct Capped(String);
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = MESSAGE_CHARS.saturating_sub(self.0.len());
            if s.len() <= room {
                self.0.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            self.0.push_str("...");
            Err(std::fmt::Error)
        }
    }
    let mut out = Capped(String::new());
    let _ = write!(out, "{error}");
    out.0
}

const MESSAGE_CHARS: usize = 1_000;

impl JqInput<'static> {
    pub(crate) fn from_val(v: Val) -> Self {
        Self {
            json: None,
            val: OnceCell::from(v),
        }
    }
}

impl JqInput<'_> {
    /// The item as a jaq value, converted on first use.
    pub(crate) fn val(&self) -> &Val {
        self.val
            .get_or_init(|| self.json.map_or(Val::Null, json_to_val))
    }
}

/// Rewrites `'…'` string literals (accepted by Ocean, not by jq) into JSON string literals.
///
/// Ocean does this with a regular expression on quotes next to whitespace; we tokenize instead:
/// a `'` outside a double-quoted string and outside a comment opens a literal that the next `'`
/// closes. Double-quoted strings (with their `\(…)` interpolations, which are code again) are
/// left alone.
pub fn convert_single_quotes(expr: &str) -> Cow<'_, str> {
    if !expr.contains('\'') {
        return Cow::Borrowed(expr);
    }
    // Contexts: code (with the paren depth of an interpolation that returns to a string), string.
    enum Ctx {
        Code { interp_depth: Option<usize> },
        Str,
    }
    let mut out = String::with_capacity(expr.len() + 8);
    let mut stack = vec![Ctx::Code { interp_depth: None }];
    let mut depth = 0usize;
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match stack.last() {
            Some(Ctx::Str) => {
                out.push(c);
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                        if next == '(' {
                            depth += 1;
                            stack.push(Ctx::Code {
                                interp_depth: Some(depth),
                            });
                        }
                    }
                } else if c == '"' {
                    stack.pop();
                }
            }
            Some(Ctx::Code { interp_depth }) => {
                let interp_depth = *interp_depth;
                match c {
                    '"' => {
                        out.push(c);
                        stack.push(Ctx::Str);
                    }
                    '(' => {
                        depth += 1;
                        out.push(c);
                    }
                    ')' => {
                        out.push(c);
                        if interp_depth == Some(depth) {
                            stack.pop();
                        }
                        depth = depth.saturating_sub(1);
                    }
                    '#' => {
                        // comment to the end of the line
                        out.push(c);
                        for c in chars.by_ref() {
                            out.push(c);
                            if c == '\n' {
                                break;
                            }
                        }
                    }
                    '\'' => {
                        let mut literal = String::new();
                        let mut closed = false;
                        for c in chars.by_ref() {
                            if c == '\'' {
                                closed = true;
                                break;
                            }
                            literal.push(c);
                        }
                        if closed {
                            out.push_str(&Value::String(literal).to_string());
                        } else {
                            // not a literal after all: leave it for jaq to report
                            out.push('\'');
                            out.push_str(&literal);
                        }
                    }
                    _ => out.push(c),
                }
            }
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn offset_in(code: &str, part: &str) -> Option<usize> {
    let start = code.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    (at >= start && at <= start + code.len()).then(|| at - start)
}

fn near(code: &str, part: &str) -> String {
    match offset_in(code, part) {
        Some(offset) => {
            let rest: String = part.chars().take(20).collect();
            if rest.is_empty() {
                format!("at the end (offset {offset})")
            } else {
                format!("at offset {offset}, near `{rest}`")
            }
        }
        None => String::new(),
    }
}

fn describe_load_errors<P>(code: &str, errs: jaq_core::load::Errors<&str, P>) -> String {
    use jaq_core::load::{Error, lex, parse};
    let mut out = String::new();
    for (_file, err) in errs {
        match err {
            Error::Io(items) => {
                for (path, e) in items {
                    let _ = write!(out, "{}cannot load module `{path}`: {e}", sep(&out));
                }
            }
            Error::Lex(items) => {
                for (expect, part) in items {
                    let what = match &expect {
                        // `as_str` panics on delimiters other than these four
                        lex::Expect::Delim(d) if !["(", "[", "{", "\""].contains(d) => {
                            format!("a match for `{d}`")
                        }
                        other => other.as_str().to_owned(),
                    };
                    let _ = write!(out, "{}expected {what} {}", sep(&out), near(code, part));
                }
            }
            Error::Parse(items) => {
                for (expect, part) in items {
                    let _ = match expect {
                        parse::Expect::Nothing => {
                            write!(out, "{}unexpected input {}", sep(&out), near(code, part))
                        }
                        other => write!(
                            out,
                            "{}expected {} {}",
                            sep(&out),
                            other.as_str(),
                            near(code, part)
                        ),
                    };
                }
            }
        }
    }
    out
}

fn describe_compile_errors<P>(errs: jaq_core::compile::Errors<&str, P>) -> String {
    use jaq_core::compile::Undefined;
    let mut out = String::new();
    for (_file, items) in errs {
        for (name, undefined) in items {
            let what = match undefined {
                Undefined::Filter(arity) => format!("filter `{name}/{arity}`"),
                other => format!("{} `{name}`", other.as_str()),
            };
            let _ = write!(out, "{}undefined {what}", sep(&out));
        }
    }
    out
}

fn sep(out: &str) -> &'static str {
    if out.is_empty() { "" } else { "; " }
}

/// serde_json → jaq. Integers stay integers; object key order is kept.
pub(crate) fn json_to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::Num(text::input_float(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Val::utf8_str(s.clone().into_bytes()),
        Value::Array(items) => items.iter().map(json_to_val).collect(),
        Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::utf8_str(k.clone().into_bytes()), json_to_val(v)))
                .collect(),
        ),
    }
}

/// jaq → serde_json. Integral floats become integers (`1764`, not `1764.0`, as jq prints
/// them); NaN and infinities become null; byte strings are read as (lossy) UTF-8; a non-string
/// object key is written as its JSON text.
///
/// A value nested deeper than [`OUTPUT_NESTING`] levels is refused (the queues' JSON would not
/// carry it), and so is one of more values than `budget` allows memory for (a value shares
/// its parts: `reduce range(40) as $i (1; [., .])` is small in jaq and 2^40 values in JSON).
pub(crate) fn val_to_json(val: &Val, budget: &ItemBudget) -> Result<Value, JqError> {
    let limit = budget.limits().max_memory;
    let values = limit / JSON_VALUE_BYTES;
    // Counted before anything is built: refusing a value that shares its parts must not cost
    // building (and dropping) as much of it as the memory allows.
    if more_values_than(val, values) {
        return Err(JqError::Runaway(Runaway::Memory { limit }));
    }
    let mut room = Room {
        values,
        limit,
        budget,
    };
    to_json_within(val, 0, &mut room)
}

/// Whether `val` holds more than `max` values, counting a shared part once per place it
/// stands in (as JSON writes it); stops counting at `max`.
fn more_values_than(val: &Val, max: usize) -> bool {
    let mut pending = vec![val];
    let mut seen = 0usize;
    while let Some(v) = pending.pop() {
        seen += 1;
        if seen > max {
            return true;
        }
        match v {
            Val::Arr(items) => pending.extend(items.iter()),
            Val::Obj(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    false
}

/// A `serde_json::Value` takes 32 bytes, before what it holds.
const JSON_VALUE_BYTES: usize = 32;

/// How many more values a conversion may make, and until when.
struct Room<'b> {
    values: usize,
    limit: usize,
    budget: &'b ItemBudget,
}

/// How deep a mapping's output may nest: the entity travels inside a message that adds a few
/// levels, and the bus's JSON parser accepts 128.
pub const OUTPUT_NESTING: usize = 100;

fn to_json_within(val: &Val, depth: usize, room: &mut Room) -> Result<Value, JqError> {
    if room.values == 0 {
        return Err(JqError::Runaway(Runaway::Memory { limit: room.limit }));
    }
    room.values -= 1;
    if room.values.is_multiple_of(4096) && room.budget.expired() {
        return Err(JqError::Runaway(Runaway::Time {
            limit: room.budget.limits().item_time,
        }));
    }
    if depth > OUTPUT_NESTING {
        return Err(JqError::Runtime {
            message: format!("the value is nested deeper than {OUTPUT_NESTING} levels"),
        });
    }
    Ok(match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(items) => Value::Array(
            items
                .iter()
                .map(|v| to_json_within(v, depth + 1, room))
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                        other => to_json_within(other, depth + 1, room)?.to_string(),
                    };
                    Ok((key, to_json_within(v, depth + 1, room)?))
                })
                .collect::<Result<_, JqError>>()?,
        ),
    })
}

/// 2^63: floats below it in magnitude and integral convert to i64 exactly.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

fn float_to_json(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < I64_LIMIT {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

fn num_to_json(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::BigInt(b) => {
            let text = b.to_string();
            text.parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<u64>().map(Value::from))
                .unwrap_or_else(|_| float_to_json(text.parse::<f64>().unwrap_or(f64::NAN)))
        }
        Num::Float(f) => float_to_json(*f),
        Num::Dec(s) => match s.parse::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => float_to_json(s.parse::<f64>().unwrap_or(f64::NAN)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(expr: &str, input: Value) -> Option<Value> {
        JqProgram::compile(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .first(&input)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn first_output_only() {
        assert_eq!(run(".[]", json!([1, 2, 3])), Some(json!(1)));
        assert_eq!(run("empty", json!(null)), None);
        assert_eq!(run(".a", json!({})), Some(Value::Null));
    }

    #[test]
    fn integral_numbers_stay_integers() {
        assert_eq!(run(".x", json!({"x": 1764})), Some(json!(1764)));
        assert_eq!(run(".x * 1.0", json!({"x": 1764})), Some(json!(1764)));
        assert_eq!(run(".x / 2", json!({"x": 3528})), Some(json!(1764)));
        assert_eq!(run("1764.0", json!(null)), Some(json!(1764)));
        assert_eq!(run(".x / 4", json!({"x": 3})), Some(json!(0.75)));
        assert_eq!(run(".x", json!({"x": 1.5})), Some(json!(1.5)));
        assert_eq!(run(".x", json!({"x": u64::MAX})), Some(json!(u64::MAX)));
        assert_eq!(run("[.x | tostring]", json!({"x": 7})), Some(json!(["7"])));
        assert_eq!(run("nan", json!(null)), Some(Value::Null));
        // no coercion of types otherwise
        assert_eq!(run(".x", json!({"x": "1764"})), Some(json!("1764")));
        assert_eq!(run(".x", json!({"x": true})), Some(json!(true)));
    }

    #[test]
    fn object_key_order_is_kept() {
        let out = run("{z: 1, a: 2} + .", json!({"m": 3, "b": 4})).expect("object");
        let keys: Vec<&String> = out.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["z", "a", "m", "b"]);
    }

    #[test]
    fn single_quoted_literals() {
        assert_eq!(convert_single_quotes(".a // ''"), r#".a // """#);
        assert_eq!(convert_single_quotes("'it\"s'"), r#""it\"s""#);
        assert_eq!(convert_single_quotes(r#""it's" + 'x'"#), r#""it's" + "x""#);
        assert_eq!(
            convert_single_quotes(r#""\('a' + "b's")" "#),
            r#""\("a" + "b's")" "#
        );
        assert_eq!(convert_single_quotes("# it's\n.a"), "# it's\n.a");
        assert_eq!(
            run(
                r#".fields."System.Description" // ''"#,
                json!({"fields": {}})
            ),
            Some(json!(""))
        );
        assert_eq!(
            run("if .a == 'x' then 'yes' else 'no' end", json!({"a": "x"})),
            Some(json!("yes"))
        );
        assert_eq!(run(r#"("a" + 'b')"#, json!(null)), Some(json!("ab")));
    }

    #[test]
    fn prelude_parses() {
        let defs = jaq_core::load::parse(PRELUDE, |p| p.defs()).expect("prelude.jq parses");
        assert!(defs.len() > 10, "{} definitions", defs.len());
    }

    #[test]
    fn environment_is_hidden() {
        assert_eq!(run("env", json!(null)), Some(json!({})));
        assert_eq!(run("$ENV", json!(null)), Some(json!({})));
        assert_eq!(run("$ENV.PATH", json!(null)), Some(Value::Null));
    }

    #[test]
    fn an_exposed_environment_is_env_and_dollar_env() {
        let vars = BTreeMap::from([("CLUSTER".to_string(), "prod-eu".to_string())]);
        let prelude = Prelude::with_environment(&vars);
        for (expr, expected) in [
            ("env.CLUSTER", json!("prod-eu")),
            ("$ENV.CLUSTER", json!("prod-eu")),
            ("env", json!({"CLUSTER": "prod-eu"})),
            (r#".name + "@" + env.CLUSTER"#, json!("repo@prod-eu")),
            ("env.MISSING", Value::Null),
        ] {
            let program = JqProgram::compile_with(&prelude, expr).expect("compiles");
            let out = program.first(&json!({"name": "repo"})).expect("runs");
            assert_eq!(out, Some(expected), "{expr}");
        }
        // Another prelude (no environment) is unaffected.
        let hidden = JqProgram::compile_with(&Prelude::with_environment(&BTreeMap::new()), "env")
            .expect("compiles");
        assert_eq!(hidden.first(&json!(null)).expect("runs"), Some(json!({})));
    }

    #[test]
    fn compile_errors_name_expression_and_cause() {
        let err = JqProgram::compile(".a | (").expect_err("parse error");
        let text = err.to_string();
        assert!(text.contains("`.a | (`"), "{text}");
        assert!(text.contains("expected"), "{text}");
        let err = JqProgram::compile(".a | nosuchfilter(1)").expect_err("undefined");
        let text = err.to_string();
        assert!(text.contains("undefined filter `nosuchfilter/1`"), "{text}");
        let err = JqProgram::compile("$nope").expect_err("undefined var");
        assert!(
            err.to_string().contains("undefined variable `$nope`"),
            "{err}"
        );
    }

    #[test]
    fn runtime_errors_and_halt_are_errors() {
        let p = JqProgram::compile(".a.b").expect("compiles");
        let err = p.first(&json!({"a": 3})).expect_err("cannot index");
        assert!(matches!(err, JqError::Runtime { .. }), "{err}");
        assert!(err.to_string().contains("cannot index"), "{err}");
        let p = JqProgram::compile("halt").expect("compiles");
        assert!(p.first(&json!(null)).is_err());
        let p = JqProgram::compile(r#"error("boom")"#).expect("compiles");
        assert!(
            p.first(&json!(null))
                .expect_err("boom")
                .to_string()
                .contains("boom")
        );
    }

    #[test]
    fn names_of_the_guards_are_reserved() {
        for expr in [
            "def _adoport_step: .; def f: f; f",
            "def f(_adoport_step): _adoport_step; f(.)",
            "_adoport_collect(.)",
            ". as $_adoport_rhs | 1",
            "reduce .[] as [$_adoport_x] (0; .)",
        ] {
            let err = JqProgram::compile(expr).expect_err(expr).to_string();
            assert!(err.contains("reserved"), "{expr}: {err}");
        }
    }

    #[test]
    fn overlong_expressions_are_refused() {
        let long = vec!["1"; MAX_EXPRESSION_BYTES / 2 + 1].join("+");
        let err = JqProgram::compile(&long).expect_err("too long").to_string();
        assert!(err.contains("at most 16384"), "{}", &err[err.len() - 80..]);
    }

    #[test]
    fn a_stopped_evaluation_is_a_runaway_even_if_caught() {
        let p = JqProgram::compile("try (def f: 1 + f; f) catch \"caught\"").expect("compiles");
        assert!(matches!(
            p.first(&json!(null)),
            Err(JqError::Runaway(Runaway::Stack { .. }))
        ));
        // Error messages quote values at most a thousand characters long.
        let p = JqProgram::compile("[range(600)] | .a").expect("compiles");
        let err = p.first(&json!(null)).expect_err("cannot index").to_string();
        assert!(err.starts_with("cannot index [0,1,2,"), "{err}");
        assert!(err.len() < 1100, "{} characters", err.len());
    }

    #[test]
    fn outputs_nest_at_most_a_hundred_levels_and_fit_the_memory() {
        let p = JqProgram::compile("reduce range(100) as $i (0; [.])").expect("compiles");
        assert!(p.first(&json!(null)).is_ok());
        let p = JqProgram::compile("reduce range(101) as $i (0; [.])").expect("compiles");
        let err = p.first(&json!(null)).expect_err("too deep").to_string();
        assert!(err.contains("nested deeper than 100 levels"), "{err}");
        // Small in jaq (its parts are shared), 2^40 values as JSON. The memory bound, not the
        // item's time, must stop it: the time is made ample, as a loaded machine (a debug
        // build beside other builds) can take longer than the default to fill the memory.
        let p = JqProgram::compile("reduce range(40) as $i (1; [., .])").expect("compiles");
        let limits = JqLimits {
            item_time: std::time::Duration::from_secs(600),
            ..JqLimits::default().on_any_thread()
        };
        let outcome = p.first_on(&JqInput::from_json(&json!(null)), &limits.for_item());
        assert!(
            matches!(outcome, Err(JqError::Runaway(Runaway::Memory { .. }))),
            "{outcome:?}"
        );
    }

    #[test]
    fn programs_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JqProgram>();
        assert_send_sync::<Prelude>();
    }
}
