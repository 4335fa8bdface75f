//! The guards compiled into every jq program, so that a [`Meter`] can stop it.
//!
//! jaq evaluates by Rust recursion over lazy iterators and has no limits of its own, so the
//! parsed program (the user's expression and every definition of the prelude) is rewritten
//! before it is compiled:
//!
//! - the body `b` of every definition that calls itself becomes `_adoport_step | b`, and so
//!   does the update of every `reduce`/`foreach`: a step per call and per iteration, with the
//!   stack depth and the clock checked (a loop or a recursion in jq is one of these). A call
//!   in tail position stays in tail position (jaq runs tail calls as a loop: `def f: f; f`
//!   loops without growing the stack, and is stopped by its steps);
//! - `..` becomes `_adoport_recurse` (a step per value visited, at every depth);
//! - `[f]` becomes `_adoport_collect(f)` (a step and a slot's bytes per element), and `{…}`
//!   becomes `{…} | _adoport_built` (a step and its entries' bytes): a value can only nest one
//!   level deeper per step, which bounds the stack that dropping or comparing it takes;
//! - `l + r` becomes `(l + r) | _adoport_built` (what the sum built is charged; growth in place
//!   only once), `l * r` becomes `_adoport_mul(l; r)` (a string repetition is charged before it
//!   is allocated), and `l += r`, `l *= r` become `r as $v | l |= (. + $v)`, … the same way;
//! - string interpolation formats values with `_adoport_text`, which refuses to print a value
//!   too large or too deep.
//!
//! `range/3`, `tojson` and `fromjson` are replaced by guarded versions of jaq's natives. The
//! names starting with `_adoport_` are reserved: a mapping that defines or calls one is refused
//! (it could otherwise shadow a guard).

use std::cmp::Ordering;
use std::io;

use jaq_core::box_iter::{box_once, then};
use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::native::{Fun, v};
use jaq_core::ops::Math;
use jaq_core::path::{Opt, Part};
use jaq_core::{Bind, DataT, Error, Exn, Native, ValT, ValX, ValXs, data::HasLut};
use jaq_json::Val;

use super::limits::{ELEMENT_BYTES, MAX_NESTING, Meter, Runaway};

/// jaq's data type for our programs: values are `Val`, and natives reach the evaluation's
/// [`Meter`] through the context.
pub(crate) struct Bounded;

impl DataT for Bounded {
    type V<'a> = Val;
    type Data<'a> = &'a Env<'a>;
}

/// What every native of one evaluation can reach.
pub(crate) struct Env<'a> {
    pub lut: &'a jaq_core::Lut<Bounded>,
    pub meter: &'a Meter,
}

impl<'a> HasLut<'a, Bounded> for &'a Env<'a> {
    fn lut(&self) -> &'a jaq_core::Lut<Bounded> {
        self.lut
    }
}

const RESERVED: &str = "_adoport_";
const STEP: &str = "_adoport_step";
const RECURSE: &str = "_adoport_recurse";
const COLLECT: &str = "_adoport_collect";
const BUILT: &str = "_adoport_built";
const MUL: &str = "_adoport_mul";
const TEXT: &str = "_adoport_text";
/// The variable `l op= r` binds `r` to.
const RHS: &str = "$_adoport_rhs";

/// Rewrites a definition (and everything in it) with guards. Only a definition that calls
/// itself (directly, or from a definition inside it) can loop or recurse, so only such a
/// definition takes a step per call: the others run a bounded amount of code per call.
pub(crate) fn guard_def(def: &mut Def<&str>) {
    let recursive = calls(&def.body, def.name, def.args.len());
    guard_term(&mut def.body);
    if recursive {
        stepped(&mut def.body);
    }
}

/// Whether `term` calls a filter named `name` with `arity` arguments (whichever definition of
/// that name the call resolves to: a shadowing one only costs a needless step).
fn calls(term: &Term<&str>, name: &str, arity: usize) -> bool {
    if let Term::Call(called, args) = term
        && *called == name
        && args.len() == arity
    {
        return true;
    }
    children(term).into_iter().any(|t| calls(t, name, arity))
}

/// The terms directly inside `term` (definitions' bodies included).
pub(super) fn children<'t, 's>(term: &'t Term<&'s str>) -> Vec<&'t Term<&'s str>> {
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => Vec::new(),
        Term::Arr(t) => t.as_deref().into_iter().collect(),
        Term::Str(_, parts) => parts
            .iter()
            .filter_map(|p| match p {
                StrPart::Term(t) => Some(t),
                _ => None,
            })
            .collect(),
        Term::Obj(entries) => entries
            .iter()
            .flat_map(|(k, v)| std::iter::once(k).chain(v))
            .collect(),
        Term::Neg(t) | Term::Label(_, t) => vec![t],
        Term::BinOp(l, op, r) => {
            let mut out = vec![&**l, &**r];
            if let BinaryOp::Pipe(Some(p)) = op {
                pattern_terms(p, &mut out);
            }
            out
        }
        Term::Fold(_, xs, p, args) => {
            let mut out = vec![&**xs];
            pattern_terms(p, &mut out);
            out.extend(args);
            out
        }
        Term::TryCatch(t, c) => std::iter::once(&**t).chain(c.as_deref()).collect(),
        Term::IfThenElse(branches, otherwise) => branches
            .iter()
            .flat_map(|(c, t)| [c, t])
            .chain(otherwise.as_deref())
            .collect(),
        Term::Def(defs, t) => defs
            .iter()
            .map(|d| &d.body)
            .chain(std::iter::once(&**t))
            .collect(),
        Term::Call(_, args) => args.iter().collect(),
        Term::Path(t, path) => std::iter::once(&**t)
            .chain(path.0.iter().flat_map(|(part, _)| match part {
                Part::Index(i) => vec![i],
                Part::Range(from, to) => from.iter().chain(to).collect(),
            }))
            .collect(),
    }
}

fn pattern_terms<'t, 's>(pattern: &'t Pattern<&'s str>, out: &mut Vec<&'t Term<&'s str>>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter().for_each(|p| pattern_terms(p, out)),
        Pattern::Obj(entries) => {
            for (k, p) in entries {
                out.push(k);
                pattern_terms(p, out);
            }
        }
    }
}

/// Rewrites a term (and everything in it) with guards.
pub(crate) fn guard_term(term: &mut Term<&str>) {
    match term {
        Term::Id | Term::Num(_) | Term::Var(_) | Term::Break(_) => {}
        Term::Recurse => *term = Term::Call(RECURSE, Vec::new()),
        Term::Str(fmt, parts) => {
            let mut interpolated = false;
            for part in parts.iter_mut() {
                if let StrPart::Term(t) = part {
                    guard_term(t);
                    interpolated = true;
                }
            }
            if interpolated && fmt.is_none() {
                *fmt = Some(TEXT);
            }
        }
        Term::Arr(None) => {}
        Term::Arr(Some(f)) => {
            guard_term(f);
            let f = std::mem::take(&mut **f);
            *term = Term::Call(COLLECT, vec![f]);
        }
        Term::Obj(entries) => {
            for (k, v) in entries.iter_mut() {
                guard_term(k);
                if let Some(v) = v {
                    guard_term(v);
                }
            }
            if !entries.is_empty() {
                let object = std::mem::take(term);
                *term = pipe(object, Term::Call(BUILT, Vec::new()));
            }
        }
        Term::Neg(t) | Term::Label(_, t) => guard_term(t),
        Term::BinOp(l, op, r) => {
            guard_term(l);
            guard_term(r);
            if let BinaryOp::Pipe(Some(pattern)) = op {
                guard_pattern(pattern);
            }
            match op {
                BinaryOp::Math(Math::Add) => {
                    let sum = std::mem::take(term);
                    *term = pipe(sum, Term::Call(BUILT, Vec::new()));
                }
                BinaryOp::Math(Math::Mul) => {
                    let (l, r) = (std::mem::take(&mut **l), std::mem::take(&mut **r));
                    *term = Term::Call(MUL, vec![l, r]);
                }
                BinaryOp::UpdateMath(math @ (Math::Add | Math::Mul)) => {
                    // `l op= r` is `r as $v | l |= (. op $v)` (jq's definition), with the
                    // operation guarded as above.
                    let math = *math;
                    let (l, r) = (std::mem::take(&mut **l), std::mem::take(&mut **r));
                    let mut op = Term::BinOp(
                        Box::new(Term::Id),
                        BinaryOp::Math(math),
                        Box::new(Term::Var(RHS)),
                    );
                    guard_term(&mut op);
                    let update = Term::BinOp(Box::new(l), BinaryOp::Update, Box::new(op));
                    *term = Term::BinOp(
                        Box::new(r),
                        BinaryOp::Pipe(Some(Pattern::Var(RHS))),
                        Box::new(update),
                    );
                }
                _ => {}
            }
        }
        Term::Fold(_, xs, pattern, args) => {
            guard_term(xs);
            guard_pattern(pattern);
            for arg in args.iter_mut() {
                guard_term(arg);
            }
            // `reduce xs as $x (init; update)`, `foreach xs as $x (init; update; extract)`
            if let Some(update) = args.get_mut(1) {
                stepped(update);
            }
        }
        Term::TryCatch(t, catch) => {
            guard_term(t);
            if let Some(c) = catch {
                guard_term(c);
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                guard_term(cond);
                guard_term(then);
            }
            if let Some(e) = otherwise {
                guard_term(e);
            }
        }
        Term::Def(defs, t) => {
            for def in defs {
                guard_def(def);
            }
            guard_term(t);
        }
        Term::Call(_, args) => {
            for arg in args {
                guard_term(arg);
            }
        }
        Term::Path(t, path) => {
            guard_term(t);
            for (part, _) in &mut path.0 {
                match part {
                    Part::Index(i) => guard_term(i),
                    Part::Range(from, to) => {
                        for bound in [from, to].into_iter().flatten() {
                            guard_term(bound);
                        }
                    }
                }
            }
        }
    }
}

fn guard_pattern(pattern: &mut Pattern<&str>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter_mut().for_each(guard_pattern),
        Pattern::Obj(entries) => {
            for (key, p) in entries {
                guard_term(key);
                guard_pattern(p);
            }
        }
    }
}

fn pipe<'s>(l: Term<&'s str>, r: Term<&'s str>) -> Term<&'s str> {
    Term::BinOp(Box::new(l), BinaryOp::Pipe(None), Box::new(r))
}

/// `t` becomes `_adoport_step | t`.
fn stepped(t: &mut Term<&str>) {
    let body = std::mem::take(t);
    *t = pipe(Term::Call(STEP, Vec::new()), body);
}

/// The first reserved name the user's program defines, binds or calls, if any.
pub(crate) fn reserved_name<'s>(term: &Term<&'s str>) -> Option<&'s str> {
    let reserved = |name: &&'s str| name.trim_start_matches('$').starts_with(RESERVED);
    let own: Vec<&'s str> = match term {
        Term::Var(name) | Term::Label(name, _) | Term::Call(name, _) => vec![*name],
        Term::Str(Some(fmt), _) => vec![*fmt],
        Term::BinOp(_, BinaryOp::Pipe(Some(p)), _) | Term::Fold(_, _, p, _) => pattern_vars(p),
        Term::Def(defs, _) => defs
            .iter()
            .flat_map(|d| std::iter::once(d.name).chain(d.args.iter().copied()))
            .collect(),
        _ => Vec::new(),
    };
    own.into_iter()
        .find(reserved)
        .or_else(|| children(term).into_iter().find_map(reserved_name))
}

fn pattern_vars<'s>(pattern: &Pattern<&'s str>) -> Vec<&'s str> {
    match pattern {
        Pattern::Var(name) => vec![*name],
        Pattern::Arr(items) => items.iter().flat_map(pattern_vars).collect(),
        Pattern::Obj(entries) => entries.iter().flat_map(|(_, p)| pattern_vars(p)).collect(),
    }
}

fn meter<'a, T>(cv: &jaq_core::Cv<'a, Bounded, T>) -> &'a Meter {
    let env: &'a Env<'a> = cv.0.data();
    env.meter
}

fn fail<'a>(e: Exn<'a, Val>) -> ValXs<'a, Val> {
    box_once(Err(e))
}

/// Our natives: the guards, and the guarded replacements of jaq's `range/3`, `tojson` and
/// `fromjson` (see [`replaced`]).
pub(crate) fn funs() -> impl Iterator<Item = Fun<Bounded>> {
    let none = || v(0);
    let step = Native::<Bounded>::new(|cv| match meter(&cv).step() {
        Ok(()) => box_once(Ok(cv.1)),
        Err(e) => fail(e),
    })
    .with_paths(|cv| match meter(&cv).step() {
        Ok(()) => box_once(Ok(cv.1)),
        Err(e) => box_once(Err(e)),
    })
    .with_update(|cv, f| match meter(&cv).step() {
        Ok(()) => f(cv.1),
        Err(e) => fail(e),
    });
    let recurse = Native::<Bounded>::new(|cv| {
        let meter = meter(&cv);
        recurse_values(cv.1, meter)
    })
    .with_paths(|cv| {
        let meter = meter(&cv);
        let (value, path) = cv.1;
        recurse_paths(value, path, meter, |path, key| path.cons(key))
    })
    .with_update(|cv, f| {
        let meter = meter(&cv);
        recurse_update(cv.1, &*f, meter)
    });
    [
        (STEP, none(), step),
        (RECURSE, none(), recurse),
        (
            COLLECT,
            [Bind::Fun(())].into(),
            Native::new(|mut cv| {
                let (f, fc) = cv.0.pop_fun();
                let meter = meter(&cv);
                collect(f.run((fc, cv.1)), meter)
            }),
        ),
        (
            BUILT,
            none(),
            Native::new(|cv| match meter(&cv).built(&cv.1) {
                Ok(()) => box_once(Ok(cv.1)),
                Err(e) => fail(e),
            }),
        ),
        (
            MUL,
            v(2),
            Native::new(|mut cv| {
                let r = cv.0.pop_var();
                let l = cv.0.pop_var();
                box_once(multiply(l, r, meter(&cv)))
            }),
        ),
        (
            TEXT,
            none(),
            Native::new(|cv| match cv.1 {
                Val::TStr(_) | Val::BStr(_) => box_once(Ok(cv.1.into_string())),
                _ => box_once(print(&cv.1, meter(&cv))),
            }),
        ),
        (
            "tojson",
            none(),
            Native::new(|cv| box_once(print(&cv.1, meter(&cv)))),
        ),
        (
            "fromjson",
            none(),
            Native::new(|cv| {
                let meter = meter(&cv);
                parse_json(cv.1, meter)
            }),
        ),
        (
            "range",
            v(3),
            Native::new(|mut cv| {
                let by = cv.0.pop_var();
                let to = cv.0.pop_var();
                let from = cv.0.pop_var();
                Box::new(range(from, to, by, meter(&cv)))
            }),
        ),
    ]
    .into_iter()
}

/// Whether one of jaq's natives is replaced by ours (`funs`).
pub(crate) fn replaced(name: &str, arity: usize) -> bool {
    matches!(
        (name, arity),
        ("range", 3) | ("tojson", 0) | ("fromjson", 0)
    )
}

/// `..`: the value, then every value inside it, depth first (jaq's order), a step each.
fn recurse_values<'a>(value: Val, meter: &'a Meter) -> ValXs<'a, Val> {
    if let Err(e) = meter.step() {
        return fail(e);
    }
    let children = value.clone().values().flatten();
    Box::new(std::iter::once(Ok(value)).chain(children.flat_map(move |c| recurse_values(c, meter))))
}

/// `path(..)`: as [`recurse_values`], with the path of each value.
fn recurse_paths<'a, P: Clone + 'a>(
    value: Val,
    path: P,
    meter: &'a Meter,
    cons: fn(P, Val) -> P,
) -> ValXs<'a, (Val, P), Val> {
    if let Err(e) = meter.step() {
        return box_once(Err(e));
    }
    let inner = path.clone();
    let children = value
        .clone()
        .key_values()
        .flatten()
        .map(move |(k, v)| (v, cons(inner.clone(), k)));
    Box::new(
        std::iter::once(Ok((value, path)))
            .chain(children.flat_map(move |(v, p)| recurse_paths(v, p, meter, cons))),
    )
}

/// `.. |= f`: children before their parent (jaq's order), a step each.
fn recurse_update<'a, F>(value: Val, f: &F, meter: &'a Meter) -> ValXs<'a, Val>
where
    F: Fn(Val) -> ValXs<'a, Val> + ?Sized,
{
    if let Err(e) = meter.step() {
        return fail(e);
    }
    then(
        value.map_values(Opt::Optional, |v| recurse_update(v, f, meter)),
        |v| f(v),
    )
}

/// `[f]`: a step and a slot per element.
fn collect<'a>(outputs: ValXs<'a, Val>, meter: &'a Meter) -> ValXs<'a, Val> {
    let mut items = Vec::new();
    for output in outputs {
        let added = output.and_then(|v| {
            meter.step()?;
            meter.charge(ELEMENT_BYTES)?;
            items.push(v);
            Ok(())
        });
        if let Err(e) = added {
            return fail(e);
        }
    }
    box_once(Ok(Val::Arr(items.into())))
}

/// `l * r`, with a string repetition charged before it is made.
fn multiply<'a>(l: Val, r: Val, meter: &'a Meter) -> ValX<'a, Val> {
    let repeated = match (&l, &r) {
        (Val::TStr(s) | Val::BStr(s), Val::Num(n)) | (Val::Num(n), Val::TStr(s) | Val::BStr(s)) => {
            let times = match n {
                jaq_json::Num::Int(i) => usize::try_from(*i).unwrap_or(0),
                // jaq saturates a big integer: positive ones repeat "forever".
                jaq_json::Num::BigInt(_) if Val::Num(n.clone()) > Val::from(0isize) => usize::MAX,
                _ => 0,
            };
            Some(s.len().saturating_mul(times))
        }
        _ => None,
    };
    if let Some(bytes) = repeated {
        meter.charge(bytes)?;
        meter.steps_of(1 + bytes as u64 / 1024)?;
    }
    let product = (l * r).map_err(Exn::from)?;
    if repeated.is_none() {
        meter.built(&product)?;
    }
    Ok(product)
}

/// `tojson` and string interpolation of a non-string: the value's JSON text, unless the value
/// is nested deeper than [`MAX_NESTING`] or its text exceeds the memory left.
fn print<'a>(value: &Val, meter: &'a Meter) -> ValX<'a, Val> {
    let room = meter.memory_left();
    if let Val::Arr(_) | Val::Obj(_) = value {
        check_printable(value, room, meter)?;
    }
    let mut out = Capped {
        bytes: Vec::new(),
        room,
    };
    super::text::write_json(&mut out, value).map_err(|_| {
        meter.stop(Runaway::Memory {
            limit: meter.memory_limit(),
        })
    })?;
    let text = Val::utf8_str(out.bytes);
    meter.built(&text)?;
    Ok(text)
}

/// Depth first, without recursion: at most `MAX_NESTING` levels, and at most `room` values (a
/// value prints as one byte at least); a step per 1024 values.
fn check_printable<'a>(value: &Val, room: usize, meter: &Meter) -> Result<(), Exn<'a, Val>> {
    let mut pending: Vec<(&Val, usize)> = vec![(value, 0)];
    let mut seen = 0usize;
    while let Some((v, depth)) = pending.pop() {
        seen += 1;
        if seen > room {
            return Err(meter.stop(Runaway::Memory {
                limit: meter.memory_limit(),
            }));
        }
        if seen.is_multiple_of(1024) {
            meter.step()?;
        }
        if let Val::Arr(_) | Val::Obj(_) = v {
            if depth >= MAX_NESTING {
                return Err(meter.stop(Runaway::Nesting { limit: MAX_NESTING }));
            }
            pending.extend(items_of(v).map(|child| (child, depth + 1)));
        }
    }
    Ok(())
}

fn items_of(v: &Val) -> Box<dyn Iterator<Item = &Val> + '_> {
    match v {
        Val::Arr(items) => Box::new(items.iter()),
        Val::Obj(map) => Box::new(map.iter().flat_map(|(k, v)| [k, v])),
        _ => Box::new(std::iter::empty()),
    }
}

/// A writer that refuses to grow past `room` bytes.
struct Capped {
    bytes: Vec<u8>,
    room: usize,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.room {
            return Err(io::Error::other("over the memory limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `fromjson`: jaq's, once the text is known to nest at most [`MAX_NESTING`] levels (jaq's
/// parser recurses once per level).
fn parse_json<'a>(input: Val, meter: &'a Meter) -> ValXs<'a, Val> {
    let bytes = match &input {
        Val::TStr(b) | Val::BStr(b) => (**b).clone(),
        other => {
            let e = Error::str(format_args!("cannot parse {other} as JSON: not a string"));
            return fail(Exn::from(e));
        }
    };
    if json_nesting(&bytes) > MAX_NESTING {
        return fail(meter.stop(Runaway::Nesting { limit: MAX_NESTING }));
    }
    if let Err(e) = meter.charge(bytes.len()) {
        return fail(e);
    }
    let values = jaq_json::bytes_valrs(bytes, move |text| {
        Box::new(jaq_json::read::parse_many(text).map(move |r| {
            r.map_err(|e| Error::str(format_args!("cannot parse {input} as JSON: {e}")))
        }))
    });
    Box::new(values.map(|r| r.map_err(Exn::from)))
}

/// How deep the arrays and objects of a JSON text nest (brackets inside strings excluded).
fn json_nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `range($from; $to; $by)` as jaq generates it, a step per value.
fn range<'a>(from: Val, to: Val, by: Val, meter: &'a Meter) -> impl Iterator<Item = ValX<'a, Val>> {
    let direction = by
        .partial_cmp(&Val::from(0isize))
        .unwrap_or(Ordering::Equal);
    let mut next: Option<ValX<'a, Val>> = Some(Ok(from));
    std::iter::from_fn(move || {
        let x = match next.take()? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let more = match direction {
            Ordering::Greater => x < to,
            Ordering::Less => x > to,
            Ordering::Equal => x != to,
        };
        if !more {
            return None;
        }
        if let Err(e) = meter.step() {
            return Some(Err(e));
        }
        next = Some((x.clone() + by.clone()).map_err(Exn::from));
        Some(Ok(x))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_nesting_ignores_brackets_in_strings() {
        assert_eq!(json_nesting(br#"{"a": [1, {"b": "[[[["}]}"#), 3);
        assert_eq!(json_nesting(br#""\"[[[""#), 0);
        assert_eq!(json_nesting(b"1 2 [3]"), 1);
        assert_eq!(json_nesting(&b"[".repeat(10_000)), 10_000);
    }
}
