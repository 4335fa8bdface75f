//! The fast path: the few jq shapes that make up most mapping expressions, evaluated directly
//! on the `serde_json` item, without converting it to jaq values or running jaq.
//!
//! Covered, when every part is covered: literals (`'"azureDevopsWorkItem"'`, `-1`, `true`),
//! key paths (`.a.b`, `.fields."System.Title"`, `.__includedFiles["README.md"]`), `|`, `//`,
//! `+`, `==`, `!=`, `and`, `or`, `tostring`, and `sub`/`gsub`/`test` with a literal pattern that
//! has no regex syntax. Anything else (a `def`, a variable, `?`, an index by number, a regex…)
//! is not compiled here and runs on jaq.
//!
//! The fast path answers only when its answer is jq's: whenever an input is not of the type the
//! shortcut assumes (indexing a number, adding two numbers, `tostring` of a float, comparing
//! numbers), evaluation gives up and the caller runs the same expression on jaq, which yields
//! the exact value or error. Tests compare the two on every expression they cover.

use std::borrow::Cow;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use serde_json::Value;

static NULL: Value = Value::Null;

/// An expression of the covered shapes, compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fast {
    /// A literal.
    Const(Value),
    /// `.` followed by object keys (none: `.` itself).
    Keys(Vec<String>),
    /// `l | r`
    Pipe(Box<Fast>, Box<Fast>),
    /// `l // r`
    Alt(Box<Fast>, Box<Fast>),
    /// `l + r`
    Add(Box<Fast>, Box<Fast>),
    /// `l == r` (`equal`), `l != r` (`!equal`)
    Eq(Box<Fast>, Box<Fast>, bool),
    /// `l and r`
    And(Box<Fast>, Box<Fast>),
    /// `l or r`
    Or(Box<Fast>, Box<Fast>),
    /// `tostring`
    ToString,
    /// `sub($pattern; $with)` (`all`: `gsub`) with a pattern free of regex syntax.
    Replace {
        pattern: String,
        with: String,
        all: bool,
    },
    /// `test($pattern)` with a pattern free of regex syntax.
    Contains(String),
}

/// Characters with a meaning in a regular expression (in or out of a class); a pattern
/// without them matches exactly its text.
const REGEX_SYNTAX: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$', '#', '&', '-', '~',
];

impl Fast {
    /// Compiles `code` (jq syntax, single quotes already converted) if it is of the covered
    /// shapes; `None` otherwise (it then runs on jaq).
    pub(crate) fn compile(code: &str) -> Option<Fast> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        Self::term(&term)
    }

    fn term(term: &Term<&str>) -> Option<Fast> {
        use Term as T;
        Some(match term {
            T::Id => Fast::Keys(Vec::new()),
            T::Str(None, _) => Fast::Const(Value::String(literal(term)?)),
            T::Num(n) => Fast::Const(Value::from(n.parse::<i64>().ok()?)),
            T::Neg(inner) => match &**inner {
                // not `-0`: jq keeps its sign
                T::Num(n) => match n.parse::<i64>().ok()? {
                    0 => return None,
                    n => Fast::Const(Value::from(n.checked_neg()?)),
                },
                _ => return None,
            },
            T::Call(name, args) => match (*name, args.as_slice()) {
                ("true", []) => Fast::Const(Value::Bool(true)),
                ("false", []) => Fast::Const(Value::Bool(false)),
                ("null", []) => Fast::Const(Value::Null),
                ("tostring", []) => Fast::ToString,
                ("sub" | "gsub", [pattern, with]) => Fast::Replace {
                    pattern: plain_pattern(pattern)?,
                    with: literal(with)?,
                    all: *name == "gsub",
                },
                ("test", [pattern]) => Fast::Contains(plain_pattern(pattern)?),
                _ => return None,
            },
            T::Path(head, path) => {
                let mut keys = Vec::with_capacity(path.0.len());
                for (part, opt) in &path.0 {
                    match (part, opt) {
                        (Part::Index(key), Opt::Essential) => keys.push(literal(key)?),
                        _ => return None,
                    }
                }
                match Self::term(head)? {
                    Fast::Keys(mut first) => {
                        first.extend(keys);
                        Fast::Keys(first)
                    }
                    other => Fast::Pipe(Box::new(other), Box::new(Fast::Keys(keys))),
                }
            }
            T::BinOp(l, op, r) => {
                let (l, r) = (Box::new(Self::term(l)?), Box::new(Self::term(r)?));
                match op {
                    BinaryOp::Pipe(None) => Fast::Pipe(l, r),
                    BinaryOp::Alt => Fast::Alt(l, r),
                    BinaryOp::Math(Math::Add) => Fast::Add(l, r),
                    BinaryOp::Cmp(Cmp::Eq) => Fast::Eq(l, r, true),
                    BinaryOp::Cmp(Cmp::Ne) => Fast::Eq(l, r, false),
                    BinaryOp::And => Fast::And(l, r),
                    BinaryOp::Or => Fast::Or(l, r),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// The first output on `input`, or `None` when only jaq can tell (the caller then runs
    /// the expression on jaq). Integral floats in the result are not yet normalised: see
    /// [`Fast::run`].
    fn eval<'a>(&'a self, input: &'a Value) -> Option<Cow<'a, Value>> {
        Some(match self {
            Fast::Const(v) => Cow::Borrowed(v),
            Fast::Keys(keys) => {
                let mut at = input;
                for key in keys {
                    at = match at {
                        Value::Object(map) => map.get(key.as_str()).unwrap_or(&NULL),
                        Value::Null => &NULL,
                        // jq: "Cannot index number with …" — jaq says it.
                        _ => return None,
                    };
                }
                Cow::Borrowed(at)
            }
            Fast::Pipe(l, r) => match l.eval(input)? {
                Cow::Borrowed(v) => r.eval(v)?,
                Cow::Owned(v) => Cow::Owned(r.eval(&v)?.into_owned()),
            },
            Fast::Alt(l, r) => {
                let first = l.eval(input)?;
                if truthy(&first) {
                    first
                } else {
                    r.eval(input)?
                }
            }
            Fast::Add(l, r) => {
                let (a, b) = (l.eval(input)?, r.eval(input)?);
                match (&*a, &*b) {
                    (Value::Null, _) => b,
                    (_, Value::Null) => a,
                    (Value::String(x), Value::String(y)) => {
                        let mut s = String::with_capacity(x.len() + y.len());
                        s.push_str(x);
                        s.push_str(y);
                        Cow::Owned(Value::String(s))
                    }
                    _ => return None,
                }
            }
            Fast::Eq(l, r, equal) => {
                let (a, b) = (l.eval(input)?, r.eval(input)?);
                // jq compares numbers by value (1 == 1.0) and containers deeply: jaq decides.
                if !is_plain_scalar(&a) || !is_plain_scalar(&b) {
                    return None;
                }
                Cow::Owned(Value::Bool((a == b) == *equal))
            }
            Fast::And(l, r) => {
                let a = truthy(&*l.eval(input)?);
                Cow::Owned(Value::Bool(a && truthy(&*r.eval(input)?)))
            }
            Fast::Or(l, r) => {
                let a = truthy(&*l.eval(input)?);
                Cow::Owned(Value::Bool(a || truthy(&*r.eval(input)?)))
            }
            Fast::ToString => match input {
                Value::String(_) => Cow::Borrowed(input),
                // Integers print alike in jq and here; floats have jq's own formatting.
                Value::Number(n) if n.as_i64().is_some_and(|i| i.unsigned_abs() < 1 << 53) => {
                    Cow::Owned(Value::String(n.to_string()))
                }
                _ => return None,
            },
            Fast::Replace { pattern, with, all } => match input {
                Value::String(s) if !s.contains(pattern.as_str()) => Cow::Borrowed(input),
                Value::String(s) if *all => Cow::Owned(Value::String(s.replace(pattern, with))),
                Value::String(s) => Cow::Owned(Value::String(s.replacen(pattern, with, 1))),
                _ => return None,
            },
            Fast::Contains(pattern) => match input {
                Value::String(s) => Cow::Owned(Value::Bool(s.contains(pattern.as_str()))),
                _ => return None,
            },
        })
    }

    /// The first output on `input` as jaq would convert it back (integral floats become
    /// integers), or `None` when only jaq can tell.
    pub(crate) fn run<'a>(&'a self, input: &'a Value) -> Option<Cow<'a, Value>> {
        let out = self.eval(input)?;
        Some(if has_integral_float(&out) {
            // Through jaq and back: numbers come out exactly as on the slow path.
            let budget = super::JqLimits::default().for_item();
            Cow::Owned(super::val_to_json(&super::json_to_val(&out), &budget).ok()?)
        } else {
            out
        })
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

fn is_plain_scalar(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(_) | Value::String(_))
}

/// jaq turns a float with no fraction (`8.0` in the item) into the integer `8`.
fn has_integral_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.as_f64().is_some_and(|f| f.fract() == 0.0) && !n.is_i64() && !n.is_u64()
        }
        Value::Array(items) => items.iter().any(has_integral_float),
        Value::Object(map) => map.values().any(has_integral_float),
        _ => false,
    }
}

/// The text of a string literal without interpolation or format (`"a\nb"`), else `None`.
fn literal(term: &Term<&str>) -> Option<String> {
    let Term::Str(None, parts) = term else {
        return None;
    };
    let mut out = String::new();
    for part in parts {
        match part {
            StrPart::Str(s) => out.push_str(s),
            StrPart::Char(c) => out.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(out)
}

/// A literal regex pattern that matches exactly its own text.
fn plain_pattern(term: &Term<&str>) -> Option<String> {
    let text = literal(term)?;
    (!text.is_empty() && !text.contains(REGEX_SYNTAX)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jq::{JqProgram, Prelude};
    use serde_json::json;

    const WORK_ITEM: &str = include_str!("../../fixtures/work-item.json");

    /// Expressions the fast path covers, the default mapping's among them.
    const COVERED: &[&str] = &[
        ".",
        ".id",
        ".fields.\"System.Title\"",
        ".fields[\"System.State\"]",
        ".[\"fields\"].\"System.CreatedBy\".displayName",
        ".__includedFiles[\"README.md\"]",
        "'\"azureDevopsWorkItem\"'",
        "\"a\\n\\u00e9b\"",
        ".fields.\"Microsoft.VSTS.Scheduling.Effort\" // -1",
        ".fields.\"System.Description\" // ''",
        ".missing.deeper // 'none'",
        ".__project.id + \"/\" + (.id | tostring) | gsub(\" \"; \"\")",
        ".fields.\"System.WorkItemType\"+\"-\"+.fields.\"System.BoardColumn\"+\"-\"+.__project.id | gsub(\" \"; \"\")",
        ".url | gsub(\"_apis/projects/\"; \"\")",
        ".name | sub(\"a\"; \"b\")",
        ".name | test(\"ab\")",
        ".type.displayName==\"Minimum number of reviewers\"",
        ".name != null",
        ".isEnabled and .isBlocking",
        ".isEnabled or .isBlocking",
        "true",
        "null",
        ".x + .y",
        ".x.y.z",
        "(.x | tostring)",
        ".n",
        ".f",
    ];

    /// Not covered: they must run on jaq.
    const NOT_COVERED: &[&str] = &[
        ".name?",
        ".[0]",
        ".relations[0].url",
        ".name | gsub(\"[a-z]\"; \"\")",
        ".name | gsub(\" \"; \"\\(.)\")",
        "\"\\(.id)\"",
        ".x as $x | $x",
        "def f: .; f",
        "$ENV",
        "1.5",
        "-0",
        ".a, .b",
        ".a - .b",
        ".name | ascii_downcase",
        "env",
    ];

    fn inputs() -> Vec<Value> {
        let work_item: Value = serde_json::from_str(WORK_ITEM).expect("fixture parses");
        vec![
            work_item,
            json!(null),
            json!({}),
            json!({"id": 7, "name": "a b a", "x": "p", "y": "q", "n": 8.0, "f": {"g": [2.0, 2.5]}}),
            json!({"id": "s p a c e", "x": null, "y": "q", "isEnabled": true, "isBlocking": false}),
            json!({"id": 1.5, "x": 1, "y": 2, "name": 3, "isEnabled": 1, "isBlocking": "no"}),
            json!({"id": [1], "x": [1], "y": [2], "name": {"a": 1}, "url": 5, "missing": "str"}),
            json!({"x": {"y": 3}, "type": {"displayName": "Minimum number of reviewers"}}),
            json!({"x": {"y": {"z": "deep"}}, "type": {"displayName": 4}, "fields": 3}),
            json!({"id": 9007199254740993_u64, "__project": {"id": "p q"}, "x": 1e300}),
            json!("a string"),
            json!([1, 2, 3]),
        ]
    }

    #[test]
    fn covered_shapes_compile_and_others_do_not() {
        let prelude = Prelude::new();
        for expr in COVERED {
            let p = JqProgram::compile_with(&prelude, expr).unwrap_or_else(|e| panic!("{e}"));
            assert!(p.has_fast_path(), "expected a fast path for `{expr}`");
        }
        for expr in NOT_COVERED {
            let p = JqProgram::compile_with(&prelude, expr).unwrap_or_else(|e| panic!("{e}"));
            assert!(!p.has_fast_path(), "expected no fast path for `{expr}`");
        }
    }

    #[test]
    fn fast_path_answers_as_jaq_does() {
        let prelude = Prelude::new();
        let inputs = inputs();
        let mut answered = 0;
        for expr in COVERED {
            let fast = JqProgram::compile_with(&prelude, expr).unwrap_or_else(|e| panic!("{e}"));
            let slow = fast.without_fast_path();
            assert!(!slow.has_fast_path());
            for input in &inputs {
                let by_fast = fast.first(input).map_err(|_| ());
                let by_jaq = slow.first(input).map_err(|_| ());
                assert_eq!(by_fast, by_jaq, "`{expr}` on {input}");
                let covered = fast.fast.as_ref().expect("fast path");
                answered += usize::from(covered.run(input).is_some());
            }
        }
        // Most of these are answered without jaq (the rest fall back, as they must).
        assert!(answered > COVERED.len() * inputs.len() / 2, "{answered}");
    }

    #[test]
    fn fast_path_gives_up_where_jq_would_fail_or_differ() {
        let run = |expr: &str, input: Value| {
            Fast::compile(expr)
                .unwrap_or_else(|| panic!("`{expr}` covered"))
                .run(&input)
                .map(Cow::into_owned)
        };
        assert_eq!(run(".a.b", json!({"a": 3})), None);
        assert_eq!(run(".a + .b", json!({"a": 1, "b": 2})), None);
        assert_eq!(run("tostring", json!(1.5)), None);
        assert_eq!(run(". == 1", json!(1.0)), None);
        assert_eq!(run("gsub(\" \"; \"\")", json!(3)), None);
        // and answers where it can
        assert_eq!(run(".a.b", json!({"a": null})), Some(json!(null)));
        assert_eq!(run(".a // -1", json!({"a": false})), Some(json!(-1)));
        assert_eq!(run(".a", json!({"a": 8.0})), Some(json!(8)));
        assert_eq!(run(".a + \"x\"", json!({})), Some(json!("x")));
        assert_eq!(run("gsub(\" \"; \"\")", json!("a b c")), Some(json!("abc")));
        assert_eq!(run("sub(\" \"; \"\")", json!("a b c")), Some(json!("ab c")));
    }
}
