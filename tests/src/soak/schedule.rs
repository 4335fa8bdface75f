//! When the soak does what: the one-off faults (the broker restart, the Port outage, the
//! mapping change, emptying Port) at seeded moments of the chaos phase, and the cadence of the
//! repeated ones (kills, hand edits, resync requests, Azure DevOps changes), scaled to the
//! phase's length so a bounded run of a minute and a half has every kind of fault at least
//! once and a long run has many.

use std::time::Duration;

use super::rng::Rng;

/// The Port outage of a long run (issue 13: "a Port outage of a minute").
pub const LONG_PORT_OUTAGE: Duration = Duration::from_secs(60);

/// The plan of one run.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The chaos phase.
    pub duration: Duration,
    /// Offsets into the chaos phase.
    pub broker_restart_at: Duration,
    /// How long the broker stays stopped (on top of stopping and booting).
    pub broker_down: Duration,
    pub port_outage_at: Duration,
    /// The outage: 500/503 for the first half, 429 with `Retry-After` for the second.
    pub port_outage: Duration,
    pub port_retry_after_secs: u64,
    pub mapping_change_at: Duration,
    pub port_emptied_at: Duration,
    /// Mean pauses between repeated faults (each pause is 0.5–1.5 × the mean).
    pub kill_every: Duration,
    /// How long a killed replica stays down (at most).
    pub max_down: Duration,
    pub hand_edit_every: Duration,
    pub resync_every: Duration,
    pub ado_change_every: Duration,
}

fn clamp(value: Duration, low: Duration, high: Duration) -> Duration {
    value.max(low).min(high)
}

impl Schedule {
    pub fn new(seed: u64, duration: Duration) -> Schedule {
        let mut rng = Rng::stream(seed, "schedule");
        let at =
            |rng: &mut Rng, from: f64, to: f64| duration.mul_f64(from + (to - from) * rng.unit());
        // A minute in a run of ten minutes or more, proportionally less in a shorter one.
        let port_outage = clamp(
            LONG_PORT_OUTAGE.mul_f64(duration.as_secs_f64() / 600.0),
            Duration::from_secs(6),
            LONG_PORT_OUTAGE,
        );
        Schedule {
            duration,
            broker_restart_at: at(&mut rng, 0.15, 0.3),
            broker_down: Duration::from_secs(1 + rng.below(4) as u64),
            port_outage_at: at(&mut rng, 0.35, 0.45),
            port_outage,
            port_retry_after_secs: 1 + rng.below(5) as u64,
            mapping_change_at: at(&mut rng, 0.5, 0.6),
            port_emptied_at: at(&mut rng, 0.65, 0.8),
            kill_every: clamp(
                duration / 12,
                Duration::from_secs(4),
                Duration::from_secs(20),
            ),
            max_down: Duration::from_secs(3),
            hand_edit_every: clamp(
                duration / 25,
                Duration::from_secs(2),
                Duration::from_secs(10),
            ),
            resync_every: clamp(
                duration / 8,
                Duration::from_secs(8),
                Duration::from_secs(45),
            ),
            ado_change_every: Duration::from_millis(600),
        }
    }

    /// One line per planned fault, for the run's header.
    pub fn describe(&self) -> String {
        let s = |d: Duration| format!("{:.0}s", d.as_secs_f64());
        format!(
            "chaos phase {}: broker restart at {} (down {} more), Port outage at {} for {} (500/503, then 429 with Retry-After {}s), mapping change at {}, Port emptied by hand at {}; a kill every ~{}, a hand edit every ~{}, a resync request every ~{}, an Azure DevOps change every ~{:.1}s",
            s(self.duration),
            s(self.broker_restart_at),
            s(self.broker_down),
            s(self.port_outage_at),
            s(self.port_outage),
            self.port_retry_after_secs,
            s(self.mapping_change_at),
            s(self.port_emptied_at),
            s(self.kill_every),
            s(self.hand_edit_every),
            s(self.resync_every),
            self.ado_change_every.as_secs_f64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_do_not_overlap_and_the_outage_scales() {
        for seed in 0..50 {
            for minutes in [1.5, 10.0, 30.0] {
                let duration = Duration::from_secs_f64(minutes * 60.0);
                let plan = Schedule::new(seed, duration);
                assert!(
                    plan.broker_restart_at + Duration::from_secs(20) < plan.port_outage_at
                        || minutes < 2.0
                );
                assert!(
                    plan.port_outage_at + plan.port_outage
                        <= plan.mapping_change_at + duration / 10
                );
                assert!(plan.port_emptied_at < duration);
                if minutes >= 10.0 {
                    assert_eq!(plan.port_outage, LONG_PORT_OUTAGE);
                }
            }
        }
        assert_eq!(
            Schedule::new(1, Duration::from_secs(90)).port_outage,
            Duration::from_secs(9)
        );
    }
}
