//! How far a jq evaluation may go, and the meter that stops it there.
//!
//! A mapping is user code: `def f: 1 + f; f` recurses until the stack overflows (which aborts
//! the whole process), `last(range(1e10))` runs for hours, `"x" * 1e9` allocates a gigabyte in
//! one step. jaq has no limits of its own, so every program is compiled with guards (see
//! `guard.rs`) that report to a [`Meter`]: one per evaluation, counting
//!
//! - **steps**: jq function calls, `reduce`/`foreach` iterations, values `range` generates,
//!   array elements collected, nodes `..` visits;
//! - **memory**: bytes of the strings, arrays and objects the evaluation builds (`+`, `*`,
//!   `[…]`, `tojson`, string interpolation), growth in place charged once;
//! - **stack**: bytes of stack below the point where the evaluation started (recursion depth);
//! - **time**: the item's deadline, shared by every expression of the item.
//!
//! The first limit crossed stops the evaluation for good: the meter remembers it (a `try`
//! cannot catch it), and the error that unwinds jaq is a `halt`, which nothing in jq catches.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::{Duration, Instant};

use adoport_shared::config::TransformSettings;
use jaq_core::Exn;
use jaq_json::Val;

/// Limits of jq evaluation (the `ADOPORT__TRANSFORM__JQ_…` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JqLimits {
    /// Wall time for all expressions of one item together.
    pub item_time: Duration,
    /// Steps one evaluation (one expression on one item) may take.
    pub max_steps: u64,
    /// Bytes of strings, arrays and objects one evaluation may build.
    pub max_memory: usize,
    /// Bytes of stack one evaluation may use: bounds recursion depth.
    pub max_stack: usize,
}

impl Default for JqLimits {
    fn default() -> Self {
        Self::from_settings(&TransformSettings::default())
    }
}

const MIB: usize = 1024 * 1024;

impl JqLimits {
    pub fn from_settings(settings: &TransformSettings) -> Self {
        Self {
            item_time: Duration::from_millis(settings.jq_item_time_ms),
            max_steps: settings.jq_max_steps,
            max_memory: usize::try_from(settings.jq_max_memory_mib)
                .unwrap_or(usize::MAX)
                .saturating_mul(MIB),
            max_stack: usize::try_from(settings.jq_max_stack_mib)
                .unwrap_or(usize::MAX)
                .saturating_mul(MIB),
        }
    }

    /// The budget of one item whose mapping starts now.
    pub fn for_item(&self) -> ItemBudget {
        ItemBudget {
            limits: *self,
            deadline: Instant::now() + self.item_time,
        }
    }

    /// These limits, lowered to fit a thread whose stack is not ours to size (a tool, a test):
    /// Rust and tokio give a thread 2 MiB, of which the guarded recursion may take
    /// [`ANY_THREAD_STACK`], and what is left must hold dropping or comparing the deepest value
    /// the steps can build (one level per step). The transform worker evaluates on threads of
    /// its own instead, with the limits as configured (see `crate::evaluator`).
    pub fn on_any_thread(self) -> Self {
        Self {
            max_stack: self.max_stack.min(ANY_THREAD_STACK),
            max_steps: self.max_steps.min(ANY_THREAD_STEPS),
            ..self
        }
    }

    /// The stack a thread needs to evaluate within these limits: the guarded recursion, then
    /// the deepest value the steps can build taken apart by unguarded recursion (dropping,
    /// comparing it: at most [`BYTES_PER_LEVEL`] a level), and a margin for the frames around.
    pub fn thread_stack(&self) -> usize {
        let levels = usize::try_from(self.max_steps).unwrap_or(usize::MAX);
        self.max_stack
            .saturating_add(levels.saturating_mul(BYTES_PER_LEVEL))
            .saturating_add(32 * MIB)
    }
}

/// Stack an evaluation may use on a thread that is not an evaluator thread.
const ANY_THREAD_STACK: usize = 256 * 1024;
/// Steps an evaluation may take on such a thread: as many levels of nesting as 1.5 MiB of
/// stack can take apart.
const ANY_THREAD_STEPS: u64 = (1536 * 1024 / BYTES_PER_LEVEL) as u64;
/// Stack that dropping or comparing one level of a nested value takes, with a margin
/// (measured on 1 MiB threads: 32 to 64 bytes in a release build, 128 to 512 in a debug one).
const BYTES_PER_LEVEL: usize = if cfg!(debug_assertions) { 1024 } else { 128 };

/// What one item may spend: the limits, and the deadline every expression of the item shares.
#[derive(Debug, Clone, Copy)]
pub struct ItemBudget {
    limits: JqLimits,
    deadline: Instant,
}

impl ItemBudget {
    pub fn limits(&self) -> &JqLimits {
        &self.limits
    }

    pub(crate) fn meter(&self) -> Meter {
        Meter::new(self.limits, self.deadline)
    }

    /// Whether the item's time is up.
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// Why an evaluation was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runaway {
    Time {
        limit: Duration,
    },
    Steps {
        limit: u64,
    },
    Memory {
        limit: usize,
    },
    Stack {
        limit: usize,
    },
    /// A value nested deeper than a serializer or parser can take.
    Nesting {
        limit: usize,
    },
    /// The evaluation did not come back to a guard by its deadline (a long operation on a
    /// single value); its thread was given up and replaced.
    Stalled {
        after: Duration,
    },
    /// jaq itself failed (a bug in it); the message is its panic's.
    Panicked {
        message: String,
    },
}

impl fmt::Display for Runaway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runaway::Time { limit } => write!(
                f,
                "the item's expressions ran longer than {} ms (ADOPORT__TRANSFORM__JQ_ITEM_TIME_MS)",
                limit.as_millis()
            ),
            Runaway::Steps { limit } => write!(
                f,
                "took more than {limit} steps (ADOPORT__TRANSFORM__JQ_MAX_STEPS): a loop or \
                 generator that does not end?"
            ),
            Runaway::Memory { limit } => write!(
                f,
                "built more than {} of strings, arrays and objects \
                 (ADOPORT__TRANSFORM__JQ_MAX_MEMORY_MIB)",
                Bytes(*limit)
            ),
            Runaway::Stack { limit } => write!(
                f,
                "recursed deeper than {} of stack allow (ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB): \
                 a recursion without a base case?",
                Bytes(*limit)
            ),
            Runaway::Nesting { limit } => {
                write!(f, "met a value nested deeper than {limit} levels")
            }
            Runaway::Stalled { after } => write!(
                f,
                "did not stop at its limits and was abandoned after {} ms",
                after.as_millis()
            ),
            Runaway::Panicked { message } => write!(f, "the jq engine failed: {message}"),
        }
    }
}

/// A size in MiB, or KiB below one MiB.
struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= MIB {
            write!(f, "{} MiB", self.0 / MIB)
        } else {
            write!(f, "{} KiB", self.0 / 1024)
        }
    }
}

/// Deepest value that `tojson`, string interpolation and `fromjson` handle (printing and
/// parsing recurse once per level; jq's parser refuses 10,000).
pub(crate) const MAX_NESTING: usize = 512;

/// Exit code of the `halt` that unwinds a stopped evaluation (the meter says why).
const STOPPED: i32 = -0x0ad0;

/// How often (in steps) the clock is read.
const CLOCK_EVERY: u64 = 256;

/// Bytes an array element or object entry takes (a `Val` is 16 bytes; an entry holds two and
/// its hash).
pub(crate) const ELEMENT_BYTES: usize = 16;
pub(crate) const ENTRY_BYTES: usize = 48;

/// The counters of one evaluation. Single-threaded (an evaluation runs on one thread).
#[derive(Debug)]
pub(crate) struct Meter {
    limits: JqLimits,
    deadline: Instant,
    stack_base: usize,
    steps: Cell<u64>,
    memory: Cell<usize>,
    /// The buffer (address, bytes charged) of the value built last: a value that grows in
    /// place (`reduce … (.; . + [$x])`) is charged its growth, not its size again.
    last_built: Cell<(usize, usize)>,
    stopped: Cell<bool>,
    why: RefCell<Option<Runaway>>,
}

impl Meter {
    fn new(limits: JqLimits, deadline: Instant) -> Self {
        Self {
            limits,
            deadline,
            stack_base: stack_address(),
            steps: Cell::new(0),
            memory: Cell::new(0),
            last_built: Cell::new((0, 0)),
            stopped: Cell::new(false),
            why: RefCell::new(None),
        }
    }

    /// Why the evaluation was stopped, if it was.
    pub(crate) fn stopped(&self) -> Option<Runaway> {
        self.why.borrow().clone()
    }

    /// Stops the evaluation: every later check fails too.
    pub(crate) fn stop<'a>(&self, why: Runaway) -> Exn<'a, Val> {
        if !self.stopped.replace(true) {
            *self.why.borrow_mut() = Some(why);
        }
        Exn::halt(STOPPED)
    }

    fn check_stopped<'a>(&self) -> Result<(), Exn<'a, Val>> {
        if self.stopped.get() {
            Err(Exn::halt(STOPPED))
        } else {
            Ok(())
        }
    }

    /// One step: counts it, and checks the stack and (now and then) the clock.
    #[inline]
    pub(crate) fn step<'a>(&self) -> Result<(), Exn<'a, Val>> {
        self.steps_of(1)
    }

    /// `n` steps at once.
    pub(crate) fn steps_of<'a>(&self, n: u64) -> Result<(), Exn<'a, Val>> {
        self.check_stopped()?;
        let before = self.steps.get();
        let steps = before.saturating_add(n);
        self.steps.set(steps);
        if steps > self.limits.max_steps {
            return Err(self.stop(Runaway::Steps {
                limit: self.limits.max_steps,
            }));
        }
        if stack_address().abs_diff(self.stack_base) > self.limits.max_stack {
            return Err(self.stop(Runaway::Stack {
                limit: self.limits.max_stack,
            }));
        }
        if before / CLOCK_EVERY != steps / CLOCK_EVERY && Instant::now() >= self.deadline {
            return Err(self.stop(Runaway::Time {
                limit: self.limits.item_time,
            }));
        }
        Ok(())
    }

    /// Bytes this evaluation may still build.
    pub(crate) fn memory_left(&self) -> usize {
        self.limits.max_memory.saturating_sub(self.memory.get())
    }

    pub(crate) fn memory_limit(&self) -> usize {
        self.limits.max_memory
    }

    /// Charges `bytes` about to be (or just) allocated.
    pub(crate) fn charge<'a>(&self, bytes: usize) -> Result<(), Exn<'a, Val>> {
        self.check_stopped()?;
        let memory = self.memory.get().saturating_add(bytes);
        self.memory.set(memory);
        if memory > self.limits.max_memory {
            return Err(self.stop(Runaway::Memory {
                limit: self.limits.max_memory,
            }));
        }
        Ok(())
    }

    /// Charges a value just built: its size, or only its growth when it is the value built
    /// last, grown in place. A step as well (building is work).
    pub(crate) fn built<'a>(&self, value: &Val) -> Result<(), Exn<'a, Val>> {
        let (address, size) = buffer(value);
        let (last_address, last_size) = self.last_built.get();
        let grown = if address != 0 && address == last_address {
            size.saturating_sub(last_size)
        } else {
            size
        };
        self.last_built.set((address, size));
        self.charge(grown)?;
        self.steps_of(1 + grown as u64 / 1024)
    }
}

/// Where a value's own storage is, and how many bytes it takes (not counting what it
/// shares with other values).
fn buffer(value: &Val) -> (usize, usize) {
    match value {
        Val::TStr(b) | Val::BStr(b) => (b.as_ptr() as usize, b.len()),
        Val::Arr(items) => (items.as_ptr() as usize, items.len() * ELEMENT_BYTES),
        Val::Obj(map) => (
            std::ptr::from_ref(map.as_slice()).cast::<u8>() as usize,
            map.len() * ENTRY_BYTES,
        ),
        Val::Null | Val::Bool(_) | Val::Num(_) => (0, 0),
    }
}

/// The address of a local of the caller's frame: how deep the stack is (it grows down on
/// every platform we build for; the distance is taken either way).
#[inline(always)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(std::ptr::from_ref(&marker)) as usize
}

/// Whether an exception is the one a stopped meter raises.
#[cfg(test)]
fn is_stop(exn: Exn<'_, Val>) -> bool {
    matches!(exn.get_halt(), Ok(STOPPED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> JqLimits {
        JqLimits {
            item_time: Duration::from_secs(60),
            max_steps: 1000,
            max_memory: 4096,
            max_stack: 64 * 1024,
        }
    }

    #[test]
    fn steps_stop_at_the_limit_and_stay_stopped() {
        let meter = limits().for_item().meter();
        for _ in 0..1000 {
            meter.step().expect("within the limit");
        }
        assert!(is_stop(meter.step().expect_err("over")));
        assert_eq!(meter.stopped(), Some(Runaway::Steps { limit: 1000 }));
        // Whatever comes next fails as well: a `try` cannot resume the evaluation.
        assert!(meter.charge(0).is_err());
        assert_eq!(meter.stopped(), Some(Runaway::Steps { limit: 1000 }));
    }

    #[test]
    fn time_is_checked_while_stepping() {
        let budget = JqLimits {
            item_time: Duration::ZERO,
            max_steps: u64::MAX,
            ..limits()
        }
        .for_item();
        let meter = budget.meter();
        let stopped = (0..2 * CLOCK_EVERY).find_map(|_| meter.step().err());
        assert!(stopped.is_some_and(is_stop));
        assert!(matches!(meter.stopped(), Some(Runaway::Time { .. })));
    }

    #[test]
    fn growth_in_place_is_charged_once() {
        let meter = limits().for_item().meter();
        let mut items: Vec<Val> = Vec::with_capacity(200);
        items.push(Val::Null);
        let mut value = Val::Arr(items.into());
        for _ in 0..199 {
            if let Val::Arr(items) = &mut value {
                jaq_json::Rc::make_mut(items).push(Val::Null);
            }
            meter
                .built(&value)
                .expect("200 elements of 16 bytes fit in 4096");
        }
        // A copy (another buffer) is charged in full.
        let copy = Val::Arr(
            std::iter::repeat_n(Val::Null, 200)
                .collect::<Vec<_>>()
                .into(),
        );
        assert!(meter.built(&copy).is_err());
        assert_eq!(meter.stopped(), Some(Runaway::Memory { limit: 4096 }));
    }

    #[test]
    fn deep_recursion_is_stopped_by_stack() {
        fn recurse(meter: &Meter, depth: usize) -> usize {
            let pad = std::hint::black_box([0u8; 512]);
            match meter.step() {
                Ok(()) => recurse(meter, depth + 1) + usize::from(pad[0]),
                Err(_) => depth,
            }
        }
        let meter = JqLimits {
            max_steps: u64::MAX,
            ..limits()
        }
        .for_item()
        .meter();
        let depth = recurse(&meter, 0);
        assert!((16..=128).contains(&depth), "{depth}");
        assert!(matches!(meter.stopped(), Some(Runaway::Stack { .. })));
    }

    #[test]
    fn reasons_name_the_setting() {
        for (why, setting) in [
            (
                Runaway::Time {
                    limit: Duration::from_secs(2),
                },
                "JQ_ITEM_TIME_MS",
            ),
            (Runaway::Steps { limit: 5 }, "JQ_MAX_STEPS"),
            (Runaway::Memory { limit: MIB }, "JQ_MAX_MEMORY_MIB"),
            (Runaway::Stack { limit: MIB }, "JQ_MAX_STACK_MIB"),
        ] {
            assert!(why.to_string().contains(setting), "{why}");
        }
    }
}
