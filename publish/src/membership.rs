//! Who shares the change partitions, and which partition is whose.
//!
//! - [`View`]: the publish replicas this one has heard from within the member timeout (itself
//!   always included), from their heartbeats; a replica that says it is leaving is out at once.
//! - [`assign`] / [`share_of`]: which member consumes which partition, decided from the view
//!   alone, so replicas with the same view decide the same without talking to each other.
//!
//! The assignment is balanced — every member gets ⌊P/N⌋ or ⌈P/N⌉ partitions — and moves few
//! partitions when a member joins or leaves: each (partition, member) pair has a stable score
//! (rendezvous hashing), and partitions go, highest score first, to members with room under
//! their quota. A member that leaves mostly hands over only its own partitions; one that joins
//! mostly takes only its share (`p mod N` over sorted ids, the simpler rule, moves two to three
//! times as many, and every move is a hand-over: see `crate::worker`).
//!
//! Pure: time is passed in, nothing here touches the bus. The heartbeats travel through
//! `adoport_shared::bus` and are driven by `crate::sharing`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// The publish replicas one replica knows of.
#[derive(Debug, Clone)]
pub struct View {
    me: String,
    timeout: Duration,
    /// Every other member heard, with when it was last heard.
    heard: BTreeMap<String, Instant>,
    /// Members that said they left (the last few): a beat of theirs still on its way must
    /// not bring them back for a timeout.
    departed: VecDeque<String>,
}

/// Departed members remembered (ids are per process start: one never comes back).
const DEPARTED_KEPT: usize = 64;

impl View {
    /// A view holding only `me`; others are dropped `timeout` after they were last heard.
    pub fn new(me: impl Into<String>, timeout: Duration) -> Self {
        Self {
            me: me.into(),
            timeout,
            heard: BTreeMap::new(),
            departed: VecDeque::new(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// `member` said it is there at `now`. True when it was not in the view.
    pub fn heard(&mut self, member: &str, now: Instant) -> bool {
        if member == self.me || self.departed.iter().any(|d| d == member) {
            return false;
        }
        self.heard.insert(member.to_string(), now).is_none()
    }

    /// `member` said it is leaving. True when it was in the view.
    pub fn left(&mut self, member: &str) -> bool {
        if member != self.me && !self.departed.iter().any(|d| d == member) {
            if self.departed.len() == DEPARTED_KEPT {
                self.departed.pop_front();
            }
            self.departed.push_back(member.to_string());
        }
        self.heard.remove(member).is_some()
    }

    /// Drops the members not heard for the timeout by `now`; answers which.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let timeout = self.timeout;
        let gone: Vec<String> = self
            .heard
            .iter()
            .filter(|(_, last)| now.saturating_duration_since(**last) >= timeout)
            .map(|(member, _)| member.clone())
            .collect();
        for member in &gone {
            self.heard.remove(member);
        }
        gone
    }

    /// When the next member times out, if nothing is heard from it before.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.heard.values().min().map(|last| *last + self.timeout)
    }

    /// Every member, this one included, sorted.
    pub fn members(&self) -> Vec<String> {
        let mut all: Vec<String> = self.heard.keys().cloned().collect();
        all.push(self.me.clone());
        all.sort();
        all
    }
}

/// Which member consumes which partition: member → its partitions (ascending). Every
/// partition has exactly one member; each member has ⌊P/N⌋ or ⌈P/N⌉. The order of `members`
/// does not matter; duplicates count once.
pub fn assign<S: AsRef<str>>(members: &[S], partitions: u16) -> BTreeMap<String, Vec<u16>> {
    let mut members: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
    members.sort_unstable();
    members.dedup();
    let n = members.len();
    let mut shares: BTreeMap<String, Vec<u16>> = members
        .iter()
        .map(|m| (m.to_string(), Vec::new()))
        .collect();
    if n == 0 {
        return shares;
    }
    let total = usize::from(partitions);
    let floor = total / n;
    // Members that may hold one more than `floor`.
    let extra = total % n;
    let member_hashes: Vec<u64> = members.iter().map(|m| fnv1a(m.as_bytes())).collect();
    let mut pairs: Vec<(u64, u16, usize)> = Vec::with_capacity(total * n);
    for partition in 0..partitions {
        for (index, hash) in member_hashes.iter().enumerate() {
            pairs.push((score(*hash, partition), partition, index));
        }
    }
    // Highest score first; ties (astronomically rare) by partition then member, so the result
    // never depends on the sort's stability.
    pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut owner: Vec<Option<usize>> = vec![None; total];
    let mut load = vec![0usize; n];
    let mut at_ceiling = 0usize;
    for (_, partition, index) in pairs {
        let slot = &mut owner[usize::from(partition)];
        if slot.is_some() {
            continue;
        }
        let room = load[index] < floor || (load[index] == floor && at_ceiling < extra);
        if room {
            *slot = Some(index);
            load[index] += 1;
            if load[index] == floor + 1 {
                at_ceiling += 1;
            }
        }
    }
    // Every partition found a member: the quotas add up to exactly `partitions`, and a member
    // with room left at the end had room when each partition's pair with it came by.
    for (partition, index) in owner.into_iter().enumerate() {
        if let Some(index) = index
            && let Some(share) = shares.get_mut(members[index])
        {
            share.push(partition as u16);
        }
    }
    shares
}

/// The partitions `me` consumes under `members` (empty when `me` is not among them).
pub fn share_of<S: AsRef<str>>(members: &[S], me: &str, partitions: u16) -> Vec<u16> {
    assign(members, partitions).remove(me).unwrap_or_default()
}

/// FNV-1a: stable across processes and versions (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The rendezvous score of a (member, partition) pair: the member's hash and the partition,
/// mixed (splitmix64's finaliser) so that near-equal ids still rank independently.
fn score(member_hash: u64, partition: u16) -> u64 {
    let mut z = member_hash ^ u64::from(partition).wrapping_mul(0xd6e8_feb8_6659_fd93);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Member ids as replicas make them (uuids), deterministic per test.
    fn ids(n: usize, seed: u64) -> Vec<String> {
        (0..n)
            .map(|i| {
                let a = score(seed, i as u16);
                let b = score(a, 7);
                format!("{a:016x}{b:016x}")
            })
            .collect()
    }

    fn owner_of(shares: &BTreeMap<String, Vec<u16>>, partition: u16) -> &str {
        shares
            .iter()
            .find(|(_, share)| share.contains(&partition))
            .map(|(member, _)| member.as_str())
            .expect("every partition has an owner")
    }

    #[test]
    fn every_partition_has_one_member_and_shares_differ_by_at_most_one() {
        for (partitions, members) in [
            (12u16, 3usize),
            (12, 2),
            (12, 5),
            (12, 12),
            (12, 13),
            (8, 3),
            (1, 1),
            (1, 4),
            (64, 7),
            (1024, 9),
        ] {
            for seed in 0..20 {
                let shares = assign(&ids(members, seed), partitions);
                assert_eq!(shares.len(), members);
                let mut all: Vec<u16> = shares.values().flatten().copied().collect();
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..partitions).collect::<Vec<_>>(),
                    "P={partitions} N={members}"
                );
                let floor = usize::from(partitions) / members;
                for share in shares.values() {
                    assert!(
                        share.len() == floor || share.len() == floor + 1,
                        "P={partitions} N={members}: {shares:?}"
                    );
                }
                // Exactly P mod N members hold the extra one.
                let over = shares.values().filter(|s| s.len() > floor).count();
                assert_eq!(over, usize::from(partitions) % members);
            }
        }
    }

    #[test]
    fn the_assignment_depends_on_the_members_only() {
        let members = ids(4, 1);
        let forward = assign(&members, 12);
        let mut backward = members.clone();
        backward.reverse();
        backward.push(members[0].clone());
        assert_eq!(assign(&backward, 12), forward, "order and duplicates");
        assert_eq!(assign(&members, 12), forward, "every time");
        for member in &members {
            assert_eq!(&share_of(&backward, member, 12), &forward[member]);
        }
        assert!(share_of(&members, "not-a-member", 12).is_empty());
        assert!(assign::<String>(&[], 12).is_empty());
        // Pinned: a change of the scores moves partitions between replicas of two versions
        // during an upgrade (safe, single active consumer holds, but needless).
        let fixed = assign(&["a", "b", "c"], 12);
        assert_eq!(fixed["a"], vec![0, 3, 7, 8]);
        assert_eq!(fixed["b"], vec![2, 6, 9, 10]);
        assert_eq!(fixed["c"], vec![1, 4, 5, 11]);
    }

    #[test]
    fn a_member_leaving_or_joining_moves_little_more_than_its_own_share() {
        // (partitions, members, most partitions moved on average beyond the unavoidable ones)
        for (partitions, members, slack) in [
            (12u16, 3usize, 0.75),
            (12, 4, 1.0),
            (8, 3, 0.5),
            (64, 5, 3.0),
        ] {
            let rounds = 200;
            let (mut leave_moved, mut leave_needed) = (0usize, 0usize);
            let (mut join_moved, mut join_needed) = (0usize, 0usize);
            for seed in 0..rounds {
                let before = ids(members, seed);
                let shares = assign(&before, partitions);
                // One leaves: at least its partitions move.
                let gone = &before[(seed as usize) % members];
                let rest: Vec<String> = before.iter().filter(|m| *m != gone).cloned().collect();
                let after = assign(&rest, partitions);
                leave_needed += shares[gone].len();
                leave_moved += (0..partitions)
                    .filter(|p| owner_of(&shares, *p) != owner_of(&after, *p))
                    .count();
                // One joins: at least its share moves to it.
                let mut more = before.clone();
                more.extend(ids(1, 1000 + seed));
                let after = assign(&more, partitions);
                join_needed += usize::from(partitions) / (members + 1);
                join_moved += (0..partitions)
                    .filter(|p| owner_of(&shares, *p) != owner_of(&after, *p))
                    .count();
            }
            let extra = |moved: usize, needed: usize| (moved - needed) as f64 / rounds as f64;
            assert!(
                extra(leave_moved, leave_needed) <= slack,
                "P={partitions} N={members}: a leave moved {} more than needed on average",
                extra(leave_moved, leave_needed)
            );
            assert!(
                extra(join_moved, join_needed) <= slack + 0.5,
                "P={partitions} N={members}: a join moved {} more than needed on average",
                extra(join_moved, join_needed)
            );
        }
    }

    #[test]
    fn a_view_holds_members_heard_within_the_timeout() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut view = View::new("me", timeout);
        assert_eq!(view.members(), vec!["me"]);
        assert_eq!(view.next_expiry(), None);
        // (at, event, member, expected members after it)
        enum Event {
            Heard,
            Left,
            Tick,
        }
        let table: [(u64, Event, &str, &[&str]); 9] = [
            (0, Event::Heard, "b", &["b", "me"]),
            (1000, Event::Heard, "a", &["a", "b", "me"]),
            (1000, Event::Heard, "me", &["a", "b", "me"]),
            (4999, Event::Tick, "", &["a", "b", "me"]),
            (5000, Event::Tick, "", &["a", "me"]),
            (5500, Event::Heard, "a", &["a", "me"]),
            (10_400, Event::Tick, "", &["a", "me"]),
            (10_450, Event::Left, "a", &["me"]),
            (10_500, Event::Heard, "c", &["c", "me"]),
        ];
        for (at, event, member, expected) in table {
            let now = t0 + Duration::from_millis(at);
            match event {
                Event::Heard => {
                    view.heard(member, now);
                }
                Event::Left => {
                    assert!(view.left(member));
                }
                Event::Tick => {
                    view.expire(now);
                }
            }
            assert_eq!(view.members(), expected, "at {at} ms");
        }
        assert_eq!(view.next_expiry(), Some(t0 + Duration::from_millis(15_500)));
        assert!(!view.left("nobody"));
        // A beat of a departed member that was still on its way does not bring it back.
        view.heard("a", t0 + Duration::from_millis(10_600));
        assert_eq!(view.members(), vec!["c", "me"]);
    }

    #[tokio::test(start_paused = true)]
    async fn members_time_out_on_the_clock() {
        let mut view = View::new("me", Duration::from_millis(3000));
        assert!(view.heard("other", Instant::now()));
        assert!(!view.heard("other", Instant::now()), "known already");
        tokio::time::sleep(Duration::from_millis(2999)).await;
        assert!(view.expire(Instant::now()).is_empty());
        let due = view.next_expiry().expect("one member");
        tokio::time::sleep_until(due).await;
        assert_eq!(view.expire(Instant::now()), vec!["other".to_string()]);
        assert_eq!(view.members(), vec!["me"]);
    }
}
