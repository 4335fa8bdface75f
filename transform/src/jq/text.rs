//! The JSON text of a value as libjq writes it (`tojson`, `tostring`, string interpolation),
//! where it differs from jaq's: numbers.
//!
//! The Python integration evaluates mappings with libjq (PyPI `jq` 1.12.0), built with
//! decNumber. Its numbers are written in one of two ways:
//!
//! - a number as it was read — from the input or from the program text — keeps its literal, in
//!   decNumber's canonical form: `3.0` stays `3.0`, `1.50` stays `1.50`, `1e3` becomes `1E+3`.
//!   The Python integration hands items to libjq as Python's `json.dumps` writes them, so an
//!   input float reads as Python's shortest `repr` (`3.0`, `1e+20`). [`input_float`] makes the
//!   same literal, kept by jaq as a [`Num::Dec`];
//! - a computed number (any arithmetic) is a double, written with 17 significant digits at
//!   most, without a fraction when integral, and in exponent form (`1e+17`, `1e-05`) when its
//!   decimal exponent is below -4 or beyond its digits by more than 15.

use std::io;

use jaq_json::{Num, Val};

/// Writes `value` compactly, as libjq's `tojson` does.
pub(crate) fn write_json(out: &mut dyn io::Write, value: &Val) -> io::Result<()> {
    match value {
        Val::Num(n) => out.write_all(number_text(n).as_bytes()),
        Val::Arr(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json(out, item)?;
            }
            out.write_all(b"]")
        }
        Val::Obj(entries) => {
            out.write_all(b"{")?;
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json(out, key)?;
                out.write_all(b":")?;
                write_json(out, item)?;
            }
            out.write_all(b"}")
        }
        // null, booleans and strings: jaq writes them as jq does
        other => jaq_json::write::write(out, &jaq_json::write::Pp::default(), 0, other),
    }
}

/// A number's text, as libjq writes it.
pub(crate) fn number_text(n: &Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::BigInt(b) => b.to_string(),
        Num::Dec(literal) => decimal_text(literal)
            .unwrap_or_else(|| double_text(literal.parse().unwrap_or(f64::NAN))),
        Num::Float(f) => double_text(*f),
    }
}

/// The number jaq holds for a float of the input: its literal as Python writes it.
pub(crate) fn input_float(f: f64) -> Num {
    if f.is_finite() {
        Num::Dec(python_repr(f).into())
    } else {
        Num::Float(f)
    }
}

/// Shortest round-trip digits of a finite, non-zero `f` and its decimal point position:
/// `f = 0.DIGITS × 10^point`.
fn shortest_digits(f: f64) -> (String, i32) {
    // `{:e}` writes the shortest digits that read back as `f`: `1.5e300`, `3e0`.
    let text = format!("{:e}", f.abs());
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    (digits, exponent + 1)
}

/// Python's `repr` of a finite float (what `json.dumps` writes): fixed notation with at least
/// one fractional digit when the decimal exponent is in `-4..16`, else `d.ddde+XX`.
fn python_repr(f: f64) -> String {
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    let (digits, point) = shortest_digits(f);
    let exponent = point - 1;
    if (-4..16).contains(&exponent) {
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (whole, fraction) = digits.split_at(point as usize);
            format!("{whole}.{fraction}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.unsigned_abs())
    }
}

/// decNumber's scientific string of a decimal literal (`3.0`, `1.50`, `1e3` → `1E+3`), or
/// `None` when `literal` is not a decimal number.
fn decimal_text(literal: &str) -> Option<String> {
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal.strip_prefix('+').unwrap_or(literal)),
    };
    let (significand, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = significand.split_once('.').unwrap_or((significand, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let coefficient = format!("{whole}{fraction}");
    let coefficient = match coefficient.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let exponent = exponent - fraction.len() as i64;
    let adjusted = exponent + coefficient.len() as i64 - 1;
    let sign = if negative { "-" } else { "" };
    let body = if exponent <= 0 && adjusted >= -6 {
        let point = coefficient.len() as i64 + exponent;
        if exponent == 0 {
            coefficient.to_owned()
        } else if point > 0 {
            let (w, f) = coefficient.split_at(point as usize);
            format!("{w}.{f}")
        } else {
            format!(
                "0.{}{coefficient}",
                "0".repeat(point.unsigned_abs() as usize)
            )
        }
    } else {
        let (first, rest) = coefficient.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if adjusted < 0 { '-' } else { '+' };
        format!("{first}{dot}{rest}E{exp_sign}{}", adjusted.unsigned_abs())
    };
    Some(format!("{sign}{body}"))
}

/// A computed double as libjq writes it.
fn double_text(f: f64) -> String {
    if f.is_nan() {
        return "null".to_owned();
    }
    if f.is_infinite() {
        let sign = if f < 0.0 { "-" } else { "" };
        return format!("{sign}1.7976931348623157e+308");
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    let (digits, point) = shortest_digits(f);
    let count = digits.len() as i32;
    let body = if point <= -4 || point > count + 15 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exponent = point - 1;
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{first}{dot}{rest}e{exp_sign}{:02}",
            exponent.unsigned_abs()
        )
    } else if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point >= count {
        format!("{digits}{}", "0".repeat((point - count) as usize))
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        format!("{whole}.{fraction}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair was read off libjq (PyPI `jq` 1.12.0): `jq.compile("E | tostring")` on a
    /// computed double, or Python's `repr` of an input float.
    #[test]
    fn computed_doubles_are_written_as_libjq_writes_them() {
        for (f, text) in [
            (3.0, "3"),
            (1e15, "1000000000000000"),
            (1e16, "1e+16"),
            (1e17, "1e+17"),
            (-1e19, "-1e+19"),
            (12345678901234568.0, "12345678901234568"),
            (0.30000000000000004, "0.30000000000000004"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789.125, "123456789.125"),
            (1e301, "1e+301"),
            (2.0 / 3.0, "0.6666666666666666"),
            (1e-310, "1e-310"),
            (f64::INFINITY, "1.7976931348623157e+308"),
            (f64::NAN, "null"),
            (0.0, "0"),
        ] {
            assert_eq!(double_text(f), text, "{f:e}");
        }
    }

    #[test]
    fn input_floats_read_as_python_writes_them() {
        for (f, repr, jq) in [
            (3.0, "3.0", "3.0"),
            (1000.0, "1000.0", "1000.0"),
            (2.5, "2.5", "2.5"),
            (0.1, "0.1", "0.1"),
            (0.0001, "0.0001", "0.0001"),
            (1e-5, "1e-05", "0.00001"),
            (1.5e-7, "1.5e-07", "1.5E-7"),
            (1e16, "1e+16", "1E+16"),
            (1e20, "1e+20", "1E+20"),
            (
                1234567890123456.0,
                "1234567890123456.0",
                "1234567890123456.0",
            ),
            (
                1.2345678901234568e17,
                "1.2345678901234568e+17",
                "1.2345678901234568E+17",
            ),
            (-0.0, "-0.0", "-0.0"),
            (-3.5, "-3.5", "-3.5"),
        ] {
            assert_eq!(python_repr(f), repr);
            assert_eq!(number_text(&input_float(f)), jq, "{repr}");
        }
    }

    #[test]
    fn program_literals_keep_their_text_in_canonical_form() {
        for (literal, text) in [
            ("3.0", "3.0"),
            ("1.50", "1.50"),
            ("1e3", "1E+3"),
            ("1E2", "1E+2"),
            ("100000000000000000001", "100000000000000000001"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1E-7"),
            (".5", "0.5"),
        ] {
            assert_eq!(decimal_text(literal).as_deref(), Some(text), "{literal}");
        }
        assert_eq!(decimal_text("nan"), None);
        assert_eq!(decimal_text("."), None);
    }

    #[test]
    fn containers_are_written_compactly_in_key_order() {
        let value = crate::jq::json_to_val(&serde_json::json!({"b": [1, 2.0, null], "a": "x"}));
        let mut out = Vec::new();
        write_json(&mut out, &value).expect("written");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"b":[1,2.0,null],"a":"x"}"#
        );
    }
}
