//! Which of the prelude's definitions an expression can call: each program is compiled with
//! those alone.
//!
//! jaq compiles every definition it is given into the program's lookup table, whether the
//! program calls it or not. The prelude (jaq's core, std and json definitions and ours) is
//! about 150 definitions, so a mapping compiled with all of them in every one of its programs
//! kept the whole standard library once per expression: about 9.7 MiB for the default
//! mapping. An expression like `.name` calls none of them.
//!
//! A definition is kept when the expression, or a kept definition, calls its name (with any
//! number of arguments, and whichever definition of that name the call resolves to: keeping a
//! definition that is not called only costs its memory). Names the compiler itself calls
//! (`!empty`) are the loader's own and are not in the prelude.

use std::collections::HashSet;

use jaq_core::load::parse::{Def, Term};

use super::guard::children;

/// The definitions of `prelude` that `main` can reach, in the prelude's order.
pub(crate) fn reachable<'s>(prelude: &[Def<&'s str>], main: &Term<&'s str>) -> Vec<Def<&'s str>> {
    let mut names = HashSet::new();
    called_names(main, &mut names);
    let mut kept = vec![false; prelude.len()];
    // A definition calls earlier ones (and itself); walking from the last one down reaches
    // everything in one pass, and the loop is there in case one ever calls a later one.
    loop {
        let mut grew = false;
        for (index, def) in prelude.iter().enumerate().rev() {
            if !kept[index] && names.contains(def.name) {
                kept[index] = true;
                grew = true;
                called_names(&def.body, &mut names);
            }
        }
        if !grew {
            break;
        }
    }
    prelude
        .iter()
        .zip(kept)
        .filter(|(_, kept)| *kept)
        .map(|(def, _)| def.clone())
        .collect()
}

/// Every filter name `term` calls, string formats (`@base64 "…"`) included.
fn called_names<'s>(term: &Term<&'s str>, names: &mut HashSet<&'s str>) {
    match term {
        Term::Call(name, _) | Term::Str(Some(name), _) => {
            names.insert(*name);
        }
        _ => {}
    }
    for child in children(term) {
        called_names(child, names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(code: &'static str) -> Vec<Def<&'static str>> {
        jaq_core::load::parse(code, |p| p.defs()).expect("definitions parse")
    }

    fn names<'s>(defs: &[Def<&'s str>]) -> Vec<&'s str> {
        defs.iter().map(|d| d.name).collect()
    }

    fn term(code: &'static str) -> Term<&'static str> {
        jaq_core::load::parse(code, |p| p.term()).expect("term parses")
    }

    #[test]
    fn only_what_the_expression_calls_is_kept_with_what_that_calls() {
        let prelude = defs(
            "def a: 1; def b: a + 1; def c: 3; def d(f): f | b; def @fmt: tostring; def e: 5;",
        );
        assert_eq!(
            names(&reachable(&prelude, &term(".name"))),
            Vec::<&str>::new()
        );
        assert_eq!(names(&reachable(&prelude, &term("d(.)"))), ["a", "b", "d"]);
        assert_eq!(
            names(&reachable(&prelude, &term("@fmt \"\\(.)\""))),
            ["@fmt"]
        );
        // Inside a local definition, an object, a path and a fold.
        assert_eq!(
            names(&reachable(
                &prelude,
                &term("def x: c; {k: .[e]} | reduce .[] as $v (x; .)")
            )),
            ["c", "e"]
        );
    }

    #[test]
    fn every_definition_of_a_called_name_is_kept() {
        let prelude = defs("def f: 1; def f(g): g; def h: 2;");
        assert_eq!(names(&reachable(&prelude, &term("f"))), ["f", "f"]);
    }
}
