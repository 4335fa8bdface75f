//! A mapping expression that runs away — recursion without a base case, a loop or generator
//! that never ends, a string or array that grows without bound, deep recursion through the
//! standard library — fails its item, within the item's time, and nothing else: the next item
//! of the same event and the other expressions still map. Each shape is one row of a table,
//! mapped the way the worker maps: on the evaluator's threads, with small limits (so that the
//! table runs in seconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use adoport_shared::messages::{ChangeOp, Origin, RawEvent, ResyncId};
use adoport_transform::JqLimits;
use adoport_transform::evaluator::Evaluator;
use adoport_transform::mapping::{CompiledMapping, ItemProblem, KindOutcome};
use serde_json::{Value, json};

mod support;

use support::{SHAPED, thing_event, thing_mapping};

fn limits() -> JqLimits {
    support::limits(Duration::from_millis(400))
}

/// A mapping whose property `shaped` runs `shape` on items with `runaway: true`, and plain
/// expressions on every item (one on the fast path, one on jaq).
fn mapping(shape: &str) -> CompiledMapping {
    let shaped = format!("if .runaway then ({shape}) else .name end");
    let shaped = serde_json::to_string(&shaped).expect("a string");
    let config = thing_mapping(&format!(
        r#"
            shaped: {shaped}
            bar: .name + "!"
            tags: '[.tags[]? | ascii_upcase]'
"#
    ));
    CompiledMapping::compile(&config).expect("mapping compiles")
}

fn event(items: Vec<Value>) -> Arc<RawEvent> {
    let origin = Origin::Resync {
        resync_id: ResyncId::new(),
    };
    Arc::new(thing_event(origin, items))
}

/// An item that runs the shape (its input `n` a number, for shapes that count), and one that
/// does not.
fn items(runaway_input: Value) -> Vec<Value> {
    vec![
        json!({"id": 1, "runaway": true, "name": "one", "n": runaway_input, "tags": ["a"]}),
        json!({"id": 2, "runaway": false, "name": "two", "tags": ["b", "c"]}),
    ]
}

fn entity(outcome: &KindOutcome) -> &Value {
    match outcome.changes.as_slice() {
        [change] => match &change.op {
            ChangeOp::Upsert { entity } => entity,
            ChangeOp::Delete => panic!("a delete: {outcome:?}"),
        },
        other => panic!(
            "expected one change, got {other:?} ({:?})",
            outcome.problems
        ),
    }
}

/// Maps the two items and checks: the first fails with a runaway of `shaped` naming item 1 and
/// a reason containing `reason`; the second maps completely; all within the watchdog's time.
async fn fails_only_its_item(evaluator: &Evaluator, shape: &str, input: Value, reason: &str) {
    let mapping = Arc::new(mapping(shape));
    let started = Instant::now();
    let outcomes = evaluator.map_event(mapping, event(items(input))).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < evaluator.watchdog(),
        "{shape}: took {elapsed:?}, longer than the watchdog allows"
    );
    assert_eq!(outcomes.len(), 2, "{shape}");
    let stopped = &outcomes[0];
    assert!(stopped.changes.is_empty(), "{shape}: {stopped:?}");
    match stopped.problems.as_slice() {
        [
            ItemProblem::Runaway {
                kind,
                item_id,
                field_path,
                reason: why,
                ..
            },
        ] => {
            assert_eq!((kind.as_str(), item_id.as_str()), ("thing", "1"), "{shape}");
            assert_eq!(field_path, SHAPED, "{shape}");
            assert!(why.contains(reason), "{shape}: {why}");
        }
        other => panic!("{shape}: expected one runaway, got {other:?}"),
    }
    let two = &outcomes[1];
    assert!(two.problems.is_empty(), "{shape}: {:?}", two.problems);
    assert_eq!(
        entity(two)["properties"],
        json!({"shaped": "two", "bar": "two!", "tags": ["B", "C"]}),
        "{shape}"
    );
}

/// `[[[…0…]]]`, `depth` levels.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| Value::Array(vec![inner]))
}

const ANY_LIMIT: &str = "ADOPORT__TRANSFORM__JQ_";
const STACK: &str = "JQ_MAX_STACK_MIB";
const MEMORY: &str = "JQ_MAX_MEMORY_MIB";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_expressions_fail_their_item_and_nothing_else() {
    let evaluator = Evaluator::start(limits(), 2).expect("evaluator threads");
    // Each shape runs on an item whose `n` is 0 ...
    let table: &[(&str, &str)] = &[
        // recursion without a base case: stopped by the stack, before it overflows
        ("def f: 1 + f; f", STACK),
        ("def f: [f]; f", STACK),
        // a `try` cannot catch the stop and carry on
        ("def f: try (1 + f) catch f; f", STACK),
        ("try (def f: 1 + f; f) catch 0", STACK),
        // a tail call loops without growing the stack: stopped by its steps
        ("def f: f; f", ANY_LIMIT),
        ("def f(x): f(x + 1); f(0)", ANY_LIMIT),
        // generators and loops that never end
        ("last(range(1e10))", ANY_LIMIT),
        ("[range(1e9)]", ANY_LIMIT),
        ("[repeat(.)]", ANY_LIMIT),
        ("last(repeat(1))", ANY_LIMIT),
        ("until(false; .)", ANY_LIMIT),
        (".n | [recurse(. + 1)]", ANY_LIMIT),
        ("[limit(1e9; repeat(1))]", ANY_LIMIT),
        ("[while(true; .)]", ANY_LIMIT),
        ("reduce range(1e8) as $x ([]; . + [$x])", ANY_LIMIT),
        ("[foreach range(1e9) as $x (0; . + 1)] | length", ANY_LIMIT),
        // strings and arrays that grow without bound
        ("\"x\" * 1000000000", MEMORY),
        ("reduce range(64) as $i (\"x\"; . + .)", MEMORY),
        ("reduce range(64) as $i ([1]; . + .)", MEMORY),
        ("reduce range(64) as $i ([1]; . += .)", MEMORY),
        (
            "reduce range(64) as $i ({a: 1}; {a: ., b: .}) | tojson",
            ANY_LIMIT,
        ),
        ("reduce range(64) as $i ([1]; [.[], .[]])", ANY_LIMIT),
        ("reduce range(64) as $i (1; [., .]) | \"\\(.)\"", ANY_LIMIT),
        ("reduce range(64) as $i (1; [., .])", MEMORY),
        (
            "[range(1e6) | tostring] | join(\",\") | . * 1000",
            ANY_LIMIT,
        ),
        // deep recursion through the standard library, on a deeply nested value (stopped by
        // the stack, or by the time that traversing so deep a value takes)
        ("reduce range(5000) as $i (0; [.]) | walk(.)", ANY_LIMIT),
        (
            "reduce range(5000) as $i (0; [.]) | [paths] | length",
            ANY_LIMIT,
        ),
        (
            "reduce range(5000) as $i (0; [.]) | [..] | length",
            ANY_LIMIT,
        ),
        (
            "reduce range(5000) as $i (0; {a: .}) | [paths(scalars)] | length",
            ANY_LIMIT,
        ),
        (
            "reduce range(5000) as $i (0; {a: .}) | [tostream]",
            ANY_LIMIT,
        ),
        (
            "reduce range(5000) as $i (0; [.]) | tostring",
            "nested deeper",
        ),
        (
            "reduce range(5000) as $i (0; [.]) | \"\\(.)\"",
            "nested deeper",
        ),
        ("reduce range(40000) as $i (0; [.]) | walk(.)", ANY_LIMIT),
        ("(\"[\" * 100000) | fromjson", "nested deeper"),
    ];
    for (shape, reason) in table {
        fails_only_its_item(&evaluator, shape, json!(0), reason).await;
    }
    // ... or the count these need to run away.
    let counted: &[(&str, Value, &str)] = &[
        // a generator that never ends
        (
            "[.n | range(.)] | length",
            json!(1_000_000_000_u64),
            ANY_LIMIT,
        ),
        // a string that grows without bound
        (".n * \"ab\"", json!(4_000_000_000_u64), MEMORY),
    ];
    for (shape, input, reason) in counted {
        fails_only_its_item(&evaluator, shape, input.clone(), reason).await;
    }
    assert_eq!(evaluator.abandoned(), 0, "every shape stopped at a guard");
}

/// Deep recursion through the standard library on a deeply nested input. (The test runs on a
/// thread with a large stack: building, cloning and dropping such a `serde_json::Value` here
/// recurses too.)
#[test]
fn deep_inputs_fail_their_item_and_nothing_else() {
    let test = || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let evaluator = Evaluator::start(limits(), 1).expect("evaluator threads");
            for shape in [
                ".n | walk(.)",
                ".n | [paths] | length",
                ".n | [..] | length",
            ] {
                fails_only_its_item(&evaluator, shape, nested(3000), ANY_LIMIT).await;
            }
            // `tojson` measures the depth before it writes
            fails_only_its_item(&evaluator, ".n | tojson", nested(3000), "nested deeper").await;
            // Shallower, it maps.
            let outcomes = evaluator
                .map_event(
                    Arc::new(mapping(".n | [paths] | length")),
                    event(items(nested(50))),
                )
                .await;
            assert_eq!(entity(&outcomes[0])["properties"]["shaped"], json!(50));
        });
    };
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(test)
        .expect("test thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

/// What the limits leave alone: an expression whose first output comes in time (only the
/// first counts), realistic amounts of work, and jaq's own errors (`"x" * 1e9` multiplies by
/// a float, which jaq refuses: the field fails, the item is mapped).
///
/// The step, memory and stack limits are the other tests'; the time limit is raised here, as
/// what these shapes are checked against is the work they do, not how fast an unoptimised build
/// on a loaded machine does it (the time limit has tests of its own above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_shapes_map_as_before() {
    let limits = JqLimits {
        item_time: Duration::from_secs(10),
        ..limits()
    };
    let evaluator = Evaluator::start(limits, 1).expect("evaluator threads");
    for (shape, expected) in [
        ("repeat(.name)", json!("one")),
        ("first(range(1e10))", json!(0)),
        ("[limit(3; repeat(1))]", json!([1, 1, 1])),
        (
            "reduce range(10000) as $x ([]; . + [$x]) | length",
            json!(10000),
        ),
        (
            "[range(1000) | tostring] | join(\"\") | length",
            json!(2890),
        ),
        ("0 | until(. > 1000; . + 1)", json!(1001)),
        ("\"ab\" * 3", json!("ababab")),
        ("reduce range(5000) as $i (0; [.]) | flatten", json!([0])),
        // `recurse` calls itself in tail position: jaq loops, the stack does not grow
        (
            "reduce range(5000) as $i (0; [.]) | [recurse] | length",
            json!(5001),
        ),
        ("\"x\" * 1e9", Value::Null),
    ] {
        let mapping = Arc::new(mapping(shape));
        let item = json!({"id": 1, "runaway": true, "name": "one"});
        let outcomes = evaluator.map_event(mapping, event(vec![item])).await;
        let outcome = &outcomes[0];
        assert_eq!(entity(outcome)["properties"]["shaped"], expected, "{shape}");
        if expected.is_null() {
            assert!(
                matches!(outcome.problems.as_slice(), [ItemProblem::FieldFailed { field_path, .. }] if field_path == SHAPED),
                "{shape}: {:?}",
                outcome.problems
            );
        } else {
            assert!(
                outcome.problems.is_empty(),
                "{shape}: {:?}",
                outcome.problems
            );
        }
    }
}

/// An expression that spends its time inside one builtin (here `==` on two values of 2^26
/// leaves, built in 52 steps) never reaches a guard: the watchdog fails its item as stalled,
/// abandons its thread and replaces it, and the rest of the event, and the next event, are
/// mapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_fails_an_item_that_never_reaches_a_guard() {
    let watchdog = Duration::from_millis(200);
    let evaluator = Evaluator::with_watchdog(limits(), 1, watchdog).expect("evaluator threads");
    let stall = "(reduce range(26) as $i (1; [., .])) as $a \
                 | (reduce range(26) as $i (1; [., .])) as $b | $a == $b";
    let mapping = Arc::new(mapping(stall));
    let started = Instant::now();
    let outcomes = evaluator
        .map_event(mapping.clone(), event(items(json!(0))))
        .await;
    assert!(started.elapsed() < watchdog * 10, "{:?}", started.elapsed());
    match outcomes[0].problems.as_slice() {
        [
            ItemProblem::Runaway {
                item_id,
                field_path,
                reason,
                ..
            },
        ] => {
            assert_eq!((item_id.as_str(), field_path.as_str()), ("1", SHAPED));
            assert!(reason.contains("abandoned"), "{reason}");
        }
        other => panic!("expected a stalled item, got {other:?}"),
    }
    assert_eq!(entity(&outcomes[1])["properties"]["shaped"], json!("two"));
    assert_eq!(evaluator.abandoned(), 1);
    // The pool has a thread again for the next event.
    let next = evaluator
        .map_event(
            mapping,
            event(vec![json!({"id": 3, "runaway": false, "name": "three"})]),
        )
        .await;
    assert_eq!(entity(&next[0])["properties"]["shaped"], json!("three"));
}
