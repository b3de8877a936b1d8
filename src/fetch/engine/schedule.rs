//! Which source serves which object, as a value with no I/O: the objects still
//! needed, each source's scheduling state, which sources are asked for what and
//! which failed what. The engine's loop asks it for assignments and feeds results
//! back; time comes in as `now`, randomness from the generator it was given, so
//! every rule here is tested without a network, a disk or a main loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::repo::{ObjectName, ObjectType};

/// The most requests one HTTP source gets at once, however well it keeps up.
pub(super) const MAX_HTTP_IN_FLIGHT: usize = 32;
/// Requests an HTTP source starts with; it earns more by keeping up.
pub(super) const INITIAL_HTTP_IN_FLIGHT: usize = 4;
/// Objects a `file://` source is asked for at once, per worker thread reading it
/// (`drive`): enough queued that its workers never wait for the engine's loop.
pub(super) const FILE_IN_FLIGHT_PER_WORKER: usize = 8;
/// A request running this long at under `HEDGE_RATE` bytes per second is slow:
/// its object is asked of another source too.
pub(super) const HEDGE_AFTER: Duration = Duration::from_secs(2);
pub(super) const HEDGE_RATE: u64 = 32 * 1024;
/// How long a source whose every request is slow gets no new work.
pub(super) const STALL_PENALTY: Duration = Duration::from_secs(10);
/// Queued objects looked at per round of handing out work: when the best sources
/// are busy, a queue of 100,000 files is not walked on every result.
pub(super) const PICK_SCAN_LIMIT: usize = 512;

/// How much a source is preferred for a ref; lower is preferred. Fields compare
/// in order: a file source first (rule 1), then one that holds the chosen commit
/// (rules 2, 7), then a nearby one before the internet, then the fresher summary
/// (among sources that lack the commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SourceRank {
    not_file: bool,
    lacks_commit: bool,
    internet: bool,
    /// Minus the summary's age stamp: a newer summary is smaller.
    staleness: i64,
}

impl SourceRank {
    /// Rules 1, 2 and 7: `last_modified` is the source's summary time, which only
    /// orders the sources that lack the commit (stale ones still serve what they hold).
    pub(super) fn of(
        is_file: bool,
        has_commit: bool,
        internet: bool,
        last_modified: Option<u64>,
    ) -> Self {
        Self {
            not_file: !is_file,
            lacks_commit: !has_commit,
            internet,
            staleness: if has_commit {
                0
            } else {
                -(last_modified.unwrap_or(0) as i64)
            },
        }
    }
}

/// One source's scheduling state; it lasts the whole update, across refs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SourceSchedule {
    /// False once dropped (refused, gone, or sent a bad object): no more work.
    pub alive: bool,
    pub in_flight: usize,
    /// Requests it may have at once.
    pub limit: usize,
    /// Whether `limit` grows while the source keeps up (HTTP); a file source keeps
    /// the one it was given.
    pub adaptive: bool,
    /// Objects it stored (see `additive_increase`).
    pub successes: u64,
    /// Stalled: lower-ranked sources take new work until then.
    pub passed_over_until: Option<Instant>,
}

impl SourceSchedule {
    pub(super) fn new(limit: usize, adaptive: bool) -> Self {
        Self {
            alive: true,
            in_flight: 0,
            limit,
            adaptive,
            successes: 0,
            passed_over_until: None,
        }
    }

    fn has_free_slot(&self) -> bool {
        self.in_flight < self.limit
    }

    fn is_passed_over(&self, now: Instant) -> bool {
        self.passed_over_until.is_some_and(|t| t > now)
    }

    /// Takes the source out of this update; whether it was still in (so its
    /// dropping is news).
    pub(super) fn drop_out(&mut self) -> bool {
        std::mem::replace(&mut self.alive, false)
    }

    /// Additive increase, while an HTTP source keeps up: a success that makes its
    /// count of stored objects a multiple of `limit` earns one more slot, up to
    /// `MAX_HTTP_IN_FLIGHT`. Once a source has stored `limit` objects, that is
    /// every further success (the count and the limit then climb together).
    fn additive_increase(&mut self) {
        if self.adaptive
            && self.successes.is_multiple_of(self.limit as u64)
            && self.limit < MAX_HTTP_IN_FLIGHT
        {
            self.limit += 1;
        }
    }

    /// Server trouble (a 5xx, a reset): half the slots, at least one, so the
    /// source is asked less while another source tries.
    fn halve_limit(&mut self) {
        self.limit = (self.limit / 2).max(1);
    }
}

/// Whether a request running for `running` that has received `received` bytes is
/// slow: running `HEDGE_AFTER` or longer at under `HEDGE_RATE` on average.
pub(super) fn is_slow(running: Duration, received: u64) -> bool {
    running >= HEDGE_AFTER && (received as f64 / running.as_secs_f64()) < HEDGE_RATE as f64
}

/// Ask source `source` (an index into the scheduler's sources) for `object`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Assignment {
    pub object: ObjectName,
    pub source: usize,
}

/// How one request ended, as far as scheduling cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Verified and stored.
    Stored,
    /// Another request brought the same object and is storing it; its result decides.
    Duplicate,
    /// The source does not have the object (rule 5).
    NotFound,
    /// The source sent something that failed verification (rule 9).
    Bad,
    /// The request failed; `source_gone` when the source as a whole is (rule 3).
    Failed { source_gone: bool },
}

/// What the engine does after a result.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Settled {
    /// Sources whose requests for the same object are let go (it is stored).
    pub let_go: Vec<usize>,
    /// The source was dropped by this result (it was in until now).
    pub dropped: bool,
}

/// Why an object can be asked of no source: the pull fails.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NoCandidate {
    /// Live sources remain, but each has failed this object (`tried`).
    ObjectUnavailable {
        object: ObjectName,
        tried: Vec<usize>,
    },
    /// Every source was dropped.
    AllSourcesDropped,
}

/// The scheduling of one ref's pull.
pub(super) struct Scheduler {
    sources: Vec<SourceSchedule>,
    ranks: Vec<SourceRank>,
    /// Objects waiting for a source, metadata first.
    queue: VecDeque<ObjectName>,
    /// Which sources are asked for each object in flight: one, or two once the
    /// first was slow.
    asked: HashMap<ObjectName, Vec<usize>>,
    /// Which sources failed each object (rule 5: it moves on to the others).
    failed_on: HashMap<ObjectName, Vec<usize>>,
    rng: StdRng,
    /// Queued objects `pick` looked at, all told (tests: how much a round costs).
    #[cfg(test)]
    scans: u64,
}

impl Scheduler {
    /// `sources[i]` ranks `ranks[i]` for this ref; `rng` breaks ties (rule 6).
    pub(super) fn new(sources: Vec<SourceSchedule>, ranks: Vec<SourceRank>, rng: StdRng) -> Self {
        assert_eq!(sources.len(), ranks.len());
        Self {
            sources,
            ranks,
            queue: VecDeque::new(),
            asked: HashMap::new(),
            failed_on: HashMap::new(),
            rng,
            #[cfg(test)]
            scans: 0,
        }
    }

    pub(super) fn sources(&self) -> &[SourceSchedule] {
        &self.sources
    }

    /// The sources' state to carry to the next ref. Requests still in flight are
    /// let go with this pull, so they hold no slot any more.
    pub(super) fn into_sources(mut self) -> Vec<SourceSchedule> {
        for (_, holders) in self.asked.drain() {
            for source in holders {
                self.sources[source].in_flight -= 1;
            }
        }
        self.sources
    }

    /// Queues objects not stored yet. Metadata goes first: it reveals the rest of
    /// the tree sooner.
    pub(super) fn need(&mut self, objects: impl IntoIterator<Item = ObjectName>) {
        for name in objects {
            if name.kind == ObjectType::File {
                self.queue.push_back(name);
            } else {
                self.queue.push_front(name);
            }
        }
    }

    /// Nothing queued and nothing in flight: the closure is stored.
    pub(super) fn is_done(&self) -> bool {
        self.queue.is_empty() && self.asked.is_empty()
    }

    /// Whether `source` is still asked for `object` (else its result is stale: the
    /// request was let go after another copy won).
    pub(super) fn is_asked(&self, object: &ObjectName, source: usize) -> bool {
        self.asked
            .get(object)
            .is_some_and(|holders| holders.contains(&source))
    }

    /// Takes `source` out of this update; whether that is news.
    pub(super) fn drop_source(&mut self, source: usize) -> bool {
        self.sources[source].drop_out()
    }

    /// Sources with requests in flight every one of which is slow (`slow` holds
    /// the slow requests).
    pub(super) fn stalled_sources(&self, slow: &HashSet<(ObjectName, usize)>) -> Vec<usize> {
        let mut busy = vec![false; self.sources.len()];
        let mut fast = vec![false; self.sources.len()];
        for (name, holders) in &self.asked {
            for &source in holders {
                busy[source] = true;
                if !slow.contains(&(*name, source)) {
                    fast[source] = true;
                }
            }
        }
        (0..self.sources.len())
            .filter(|&i| busy[i] && !fast[i])
            .collect()
    }

    /// Stall penalty: a source whose every request crawls is passed over for
    /// `STALL_PENALTY`, so lower-ranked sources take the work.
    pub(super) fn pass_over_stalled(&mut self, slow: &HashSet<(ObjectName, usize)>, now: Instant) {
        for source in self.stalled_sources(slow) {
            self.sources[source].passed_over_until = Some(now + STALL_PENALTY);
        }
    }

    /// Hands out work: each queued object goes to the best-ranked live source that
    /// has not failed it, at random among equals; a busy best source keeps it (the
    /// object waits). Looks at most `PICK_SCAN_LIMIT` queued objects, and stops as
    /// soon as the rest must wait too: when no live source has a free slot, or when
    /// the best sources are busy and no object has failed anywhere (every object
    /// then has the same candidates). So a result costs a look at the queue's front,
    /// not at 512 objects. Fails when an object has no candidate left.
    pub(super) fn pick(&mut self, now: Instant) -> Result<Vec<Assignment>, NoCandidate> {
        let mut assignments = Vec::new();
        let mut scanned = 0;
        let mut index = 0;
        // The best sources for an object no source has failed are busy (until the
        // next assignment): such objects wait, without a look at their candidates.
        let mut unfailed_wait = false;
        while index < self.queue.len() && scanned < PICK_SCAN_LIMIT {
            let object = self.queue[index];
            let unfailed = !self.failed_on.contains_key(&object);
            let all_full = !self.sources.iter().any(|s| s.alive && s.has_free_slot());
            if all_full || (unfailed_wait && self.failed_on.is_empty()) {
                // An object nobody can serve any more still fails the pull.
                if self.candidates(&object).is_empty() {
                    return Err(self.no_candidate(object));
                }
                break;
            }
            scanned += 1;
            #[cfg(test)]
            {
                self.scans += 1;
            }
            if unfailed && unfailed_wait {
                index += 1;
                continue;
            }
            let candidates = self.candidates(&object);
            if candidates.is_empty() {
                return Err(self.no_candidate(object));
            }
            let Some(source) = self.choose_source(&candidates, now) else {
                unfailed_wait |= unfailed;
                index += 1;
                continue;
            };
            unfailed_wait = false;
            self.queue.remove(index);
            assignments.push(self.assign(object, source));
        }
        Ok(assignments)
    }

    /// Live sources that have not failed `object`.
    fn candidates(&self, object: &ObjectName) -> Vec<usize> {
        let failed = self.failed_on.get(object);
        (0..self.sources.len())
            .filter(|&i| self.sources[i].alive && !failed.is_some_and(|f| f.contains(&i)))
            .collect()
    }

    /// Why no source is left for `object`: it failed everywhere still alive, or
    /// every source is gone.
    fn no_candidate(&self, object: ObjectName) -> NoCandidate {
        if self.sources.iter().any(|s| s.alive) {
            NoCandidate::ObjectUnavailable {
                object,
                tried: self.failed_on.get(&object).cloned().unwrap_or_default(),
            }
        } else {
            NoCandidate::AllSourcesDropped
        }
    }

    /// The source for an object among `candidates` (rules 1, 2, 6, 7): the best
    /// rank, passing over stalled sources while others remain; random among equals.
    /// `None` when every best source is busy.
    fn choose_source(&mut self, candidates: &[usize], now: Instant) -> Option<usize> {
        let lively: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| !self.sources[i].is_passed_over(now))
            .collect();
        let pool = if lively.is_empty() {
            candidates
        } else {
            &lively
        };
        let best = pool.iter().map(|&i| self.ranks[i]).min()?;
        let free: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|&i| self.ranks[i] == best && self.sources[i].has_free_slot())
            .collect();
        free.choose(&mut self.rng).copied()
    }

    /// Hedging: each object whose only request is slow is asked of the best free
    /// live source that neither holds it, nor is passed over, nor failed it; the
    /// first verified copy wins and the other request is let go.
    pub(super) fn hedge(
        &mut self,
        slow: &HashSet<(ObjectName, usize)>,
        now: Instant,
    ) -> Vec<Assignment> {
        let crawling: Vec<(ObjectName, usize)> = self
            .asked
            .iter()
            .filter(|(name, holders)| holders.len() == 1 && slow.contains(&(**name, holders[0])))
            .map(|(name, holders)| (*name, holders[0]))
            .collect();
        let mut assignments = Vec::new();
        for (object, holder) in crawling {
            let failed = self.failed_on.get(&object);
            let candidates: Vec<usize> = (0..self.sources.len())
                .filter(|&i| {
                    let s = &self.sources[i];
                    s.alive
                        && i != holder
                        && !s.is_passed_over(now)
                        && !failed.is_some_and(|f| f.contains(&i))
                })
                .collect();
            if let Some(source) = self.best_free(&candidates) {
                assignments.push(self.assign(object, source));
            }
        }
        assignments
    }

    /// The best-ranked of `candidates` with a free slot, random among equals (rule 6).
    fn best_free(&mut self, candidates: &[usize]) -> Option<usize> {
        let free: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.sources[i].has_free_slot())
            .collect();
        let best = free.iter().map(|&i| self.ranks[i]).min()?;
        let equal: Vec<usize> = free
            .into_iter()
            .filter(|&i| self.ranks[i] == best)
            .collect();
        equal.choose(&mut self.rng).copied()
    }

    fn assign(&mut self, object: ObjectName, source: usize) -> Assignment {
        self.sources[source].in_flight += 1;
        self.asked.entry(object).or_default().push(source);
        Assignment { object, source }
    }

    /// Books the result of `source`'s request for `object`. `None` when that
    /// request is no longer asked (let go after another copy won): nothing changes.
    pub(super) fn on_result(
        &mut self,
        object: ObjectName,
        source: usize,
        outcome: Outcome,
    ) -> Option<Settled> {
        let others_in_flight = self.finish(&object, source)?;
        let mut settled = Settled::default();
        match outcome {
            Outcome::Stored => {
                settled.let_go = self.asked.remove(&object).unwrap_or_default();
                for &other in &settled.let_go {
                    self.sources[other].in_flight -= 1;
                }
                let state = &mut self.sources[source];
                state.successes += 1;
                state.additive_increase();
            }
            // The other copy is being stored; its result decides.
            Outcome::Duplicate => {}
            // Rule 5: a 404 only moves this object on to the other sources.
            Outcome::NotFound => self.move_on(object, source, others_in_flight),
            // Rule 9: a source that sends a bad object is dropped, and the object
            // is fetched elsewhere.
            Outcome::Bad => {
                settled.dropped = self.drop_source(source);
                self.move_on(object, source, others_in_flight);
            }
            // Rule 3: a source that is gone is dropped.
            Outcome::Failed { source_gone: true } => {
                settled.dropped = self.drop_source(source);
                self.requeue(object, others_in_flight);
            }
            Outcome::Failed { source_gone: false } => {
                self.sources[source].halve_limit();
                self.move_on(object, source, others_in_flight);
            }
        }
        Some(settled)
    }

    /// Removes `source`'s request for `object`; `None` when there is none, else
    /// whether another request for it is still in flight.
    fn finish(&mut self, object: &ObjectName, source: usize) -> Option<bool> {
        let holders = self.asked.get_mut(object)?;
        let at = holders.iter().position(|&s| s == source)?;
        holders.remove(at);
        self.sources[source].in_flight -= 1;
        let others = !holders.is_empty();
        if !others {
            self.asked.remove(object);
        }
        Some(others)
    }

    /// `source` failed `object`: it is not asked of that source again, and waits
    /// at the front of the queue for another one (unless a request for it is
    /// still running elsewhere).
    fn move_on(&mut self, object: ObjectName, source: usize, others_in_flight: bool) {
        self.failed_on.entry(object).or_default().push(source);
        self.requeue(object, others_in_flight);
    }

    fn requeue(&mut self, object: ObjectName, others_in_flight: bool) {
        if !others_in_flight {
            self.queue.push_front(object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Checksum;
    use rand::SeedableRng;

    fn object(n: u8, kind: ObjectType) -> ObjectName {
        ObjectName::new(Checksum::digest(&[n]), kind)
    }

    fn file(n: u8) -> ObjectName {
        object(n, ObjectType::File)
    }

    /// A nearby HTTP source holding the commit.
    fn peer() -> SourceRank {
        SourceRank::of(false, true, false, None)
    }

    fn http(limit: usize) -> SourceSchedule {
        SourceSchedule::new(limit, true)
    }

    fn scheduler(sources: Vec<(SourceSchedule, SourceRank)>) -> Scheduler {
        let (states, ranks) = sources.into_iter().unzip();
        Scheduler::new(states, ranks, StdRng::seed_from_u64(7))
    }

    fn sources_of(assignments: &[Assignment]) -> Vec<usize> {
        assignments.iter().map(|a| a.source).collect()
    }

    #[test]
    fn rule_1_file_sources_rank_first() {
        let drive = SourceRank::of(true, false, false, Some(1));
        let peer_with_commit = SourceRank::of(false, true, false, Some(1_000));
        assert!(drive < peer_with_commit);
        let mut s = scheduler(vec![(http(4), peer_with_commit), (http(4), drive)]);
        s.need([file(1), file(2), file(3)]);
        assert_eq!(sources_of(&s.pick(Instant::now()).unwrap()), [1, 1, 1]);
    }

    #[test]
    fn rule_2_holders_of_the_commit_before_stale_and_fresher_stale_first() {
        let holder = SourceRank::of(false, true, false, Some(10));
        let fresh_stale = SourceRank::of(false, false, false, Some(500));
        let old_stale = SourceRank::of(false, false, false, Some(100));
        assert!(holder < fresh_stale);
        assert!(fresh_stale < old_stale);
        // Nearby before the internet among holders.
        assert!(holder < SourceRank::of(false, true, true, Some(10)));
        let mut s = scheduler(vec![
            (http(4), old_stale),
            (http(4), fresh_stale),
            (http(1), holder),
        ]);
        s.need([file(1), file(2)]);
        // The holder takes what it has room for; the object waits for it rather
        // than going to a worse source (a busy best source keeps it).
        assert_eq!(sources_of(&s.pick(Instant::now()).unwrap()), [2]);
        assert_eq!(s.queue.len(), 1);
    }

    #[test]
    fn metadata_is_queued_before_files() {
        let mut s = scheduler(vec![(http(8), peer())]);
        let tree = object(9, ObjectType::DirTree);
        let meta = object(8, ObjectType::DirMeta);
        s.need([file(1), tree, file(2), meta]);
        let order: Vec<ObjectName> = s
            .pick(Instant::now())
            .unwrap()
            .iter()
            .map(|a| a.object)
            .collect();
        assert_eq!(order, [meta, tree, file(1), file(2)]);
    }

    #[test]
    fn pick_looks_at_most_pick_scan_limit_objects_per_round() {
        // The best source is full: nothing is handed out, and the scan stops.
        let mut s = scheduler(vec![(http(0), peer())]);
        s.need(
            (0..=255u8)
                .chain(0..=255)
                .map(|n| object(n, ObjectType::File)),
        );
        s.need([object(1, ObjectType::DirMeta)]);
        assert!(s.pick(Instant::now()).unwrap().is_empty());
        s.sources[0].limit = 1000;
        assert_eq!(s.pick(Instant::now()).unwrap().len(), PICK_SCAN_LIMIT);
    }

    #[test]
    fn pick_stops_looking_once_every_live_source_is_full() {
        // Two slots: two objects are handed out and the rest of the queue is not
        // walked; the source is full.
        let mut s = scheduler(vec![(http(2), peer())]);
        s.need((0..=255u8).map(file));
        assert_eq!(s.pick(Instant::now()).unwrap().len(), 2);
        let scans_before = s.scans;
        assert!(s.pick(Instant::now()).unwrap().is_empty());
        assert_eq!(
            s.scans - scans_before,
            0,
            "a full source's queue was walked"
        );
        // A dropped source's slots do not count.
        let mut s = scheduler(vec![(http(2), peer()), (http(8), peer())]);
        s.drop_source(1);
        s.need((0..=255u8).map(file));
        assert_eq!(sources_of(&s.pick(Instant::now()).unwrap()), [0, 0]);
        let scans_before = s.scans;
        assert!(s.pick(Instant::now()).unwrap().is_empty());
        assert_eq!(s.scans - scans_before, 0);
    }

    #[test]
    fn pick_stops_looking_once_the_best_source_is_full() {
        // A drive (full) beside an upstream with room: objects wait for the drive
        // (rule 1), and one look at the queue says so.
        let drive = SourceRank::of(true, true, false, None);
        let mut s = scheduler(vec![
            (SourceSchedule::new(2, false), drive),
            (http(8), peer()),
        ]);
        s.need((0..=255u8).map(file));
        assert_eq!(sources_of(&s.pick(Instant::now()).unwrap()), [0, 0]);
        let scans_before = s.scans;
        assert!(s.pick(Instant::now()).unwrap().is_empty());
        assert_eq!(s.scans - scans_before, 1, "the queue was walked");
        // An object the drive failed still goes to the upstream, found past the
        // objects waiting for the drive.
        s.on_result(file(0), 0, Outcome::NotFound);
        s.queue.retain(|o| *o != file(0));
        s.queue.push_back(file(0));
        assert_eq!(
            s.pick(Instant::now()).unwrap(),
            [
                Assignment {
                    object: file(2),
                    source: 0
                },
                Assignment {
                    object: file(0),
                    source: 1
                }
            ]
        );
    }

    #[test]
    fn rule_5_a_404_moves_only_that_object_on() {
        let mut s = scheduler(vec![
            (http(1), SourceRank::of(false, true, false, None)),
            (http(1), SourceRank::of(false, false, false, Some(5))),
        ]);
        s.need([file(1)]);
        let now = Instant::now();
        assert_eq!(sources_of(&s.pick(now).unwrap()), [0]);
        let settled = s.on_result(file(1), 0, Outcome::NotFound).unwrap();
        assert_eq!(settled, Settled::default());
        assert!(s.sources[0].alive, "a 404 does not drop the source");
        assert_eq!(s.sources[0].limit, 1, "nor slow it down");
        // The object goes to the other source, though source 0 ranks better.
        assert_eq!(
            s.pick(now).unwrap(),
            [Assignment {
                object: file(1),
                source: 1
            }]
        );
        // Other objects still go to source 0.
        s.need([file(2)]);
        assert_eq!(
            s.pick(now).unwrap(),
            [Assignment {
                object: file(2),
                source: 0
            }]
        );
    }

    #[test]
    fn an_object_every_live_source_failed_is_unavailable() {
        let mut s = scheduler(vec![(http(4), peer()), (http(4), peer())]);
        s.need([file(1)]);
        let now = Instant::now();
        let first = s.pick(now).unwrap()[0].source;
        s.on_result(file(1), first, Outcome::NotFound);
        let second = s.pick(now).unwrap()[0].source;
        assert_ne!(first, second);
        s.on_result(file(1), second, Outcome::NotFound);
        let Err(NoCandidate::ObjectUnavailable { object, tried }) = s.pick(now) else {
            panic!("expected ObjectUnavailable");
        };
        assert_eq!(object, file(1));
        assert_eq!(tried, [first, second]);
    }

    #[test]
    fn when_every_source_is_dropped_all_sources_failed() {
        let mut s = scheduler(vec![(http(4), peer())]);
        s.need([file(1), file(2)]);
        s.pick(Instant::now()).unwrap();
        let settled = s
            .on_result(file(1), 0, Outcome::Failed { source_gone: true })
            .unwrap();
        assert!(settled.dropped);
        assert_eq!(s.pick(Instant::now()), Err(NoCandidate::AllSourcesDropped));
    }

    #[test]
    fn rule_6_equal_sources_share_the_load_at_random() {
        let mut s = scheduler(vec![(http(1000), peer()); 3]);
        s.need((0..=255).map(file));
        let mut counts = [0; 3];
        for a in s.pick(Instant::now()).unwrap() {
            counts[a.source] += 1;
        }
        // 256 objects over three equal sources: each gets a fair share (a seeded
        // generator, so this is deterministic; about 85 each).
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }

    #[test]
    fn rule_6_the_seed_decides_the_order() {
        let run = |seed| {
            let mut s = Scheduler::new(
                vec![http(1000); 4],
                vec![peer(); 4],
                StdRng::seed_from_u64(seed),
            );
            s.need((0..32).map(file));
            sources_of(&s.pick(Instant::now()).unwrap())
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn rule_7_stale_sources_serve_when_better_ones_lack_an_object() {
        let holder = SourceRank::of(false, true, false, None);
        let stale = SourceRank::of(false, false, false, Some(1));
        let mut s = scheduler(vec![(http(4), holder), (http(4), stale)]);
        s.need([file(1)]);
        let now = Instant::now();
        assert_eq!(sources_of(&s.pick(now).unwrap()), [0]);
        s.on_result(file(1), 0, Outcome::NotFound);
        assert_eq!(sources_of(&s.pick(now).unwrap()), [1]);
        let settled = s.on_result(file(1), 1, Outcome::Stored).unwrap();
        assert_eq!(settled, Settled::default());
        assert!(s.is_done());
    }

    #[test]
    fn rule_9_a_bad_object_drops_the_source_and_moves_on() {
        let mut s = scheduler(vec![
            (http(4), SourceRank::of(false, true, false, None)),
            (http(4), SourceRank::of(false, true, true, None)),
        ]);
        s.need([file(1), file(2)]);
        let now = Instant::now();
        assert_eq!(sources_of(&s.pick(now).unwrap()), [0, 0]);
        let settled = s.on_result(file(1), 0, Outcome::Bad).unwrap();
        assert!(settled.dropped);
        assert!(!s.sources[0].alive);
        // Dropped once: a second bad result is no news.
        assert!(!s.on_result(file(2), 0, Outcome::Bad).unwrap().dropped);
        let picks = s.pick(now).unwrap();
        assert_eq!(picks.len(), 2);
        assert!(picks.iter().all(|a| a.source == 1));
    }

    #[test]
    fn server_trouble_halves_the_limit_and_moves_the_object_on() {
        let mut s = scheduler(vec![(http(9), peer()), (http(9), peer())]);
        s.need([file(1)]);
        let now = Instant::now();
        let first = s.pick(now).unwrap()[0].source;
        let settled = s
            .on_result(file(1), first, Outcome::Failed { source_gone: false })
            .unwrap();
        assert!(!settled.dropped);
        assert!(s.sources[first].alive);
        assert_eq!(s.sources[first].limit, 4);
        assert_eq!(sources_of(&s.pick(now).unwrap()), [1 - first]);
        // Halving stops at one slot.
        for _ in 0..5 {
            s.sources[first].halve_limit();
        }
        assert_eq!(s.sources[first].limit, 1);
    }

    #[test]
    fn additive_increase_one_slot_per_limit_successes_up_to_the_maximum() {
        let mut s = scheduler(vec![
            (http(INITIAL_HTTP_IN_FLIGHT), peer()),
            (
                SourceSchedule::new(4, false),
                SourceRank::of(true, true, false, None),
            ),
        ]);
        let now = Instant::now();
        let mut n = 0u32;
        let mut store = |s: &mut Scheduler, source: usize| {
            n += 1;
            let name = ObjectName::new(Checksum::digest(&n.to_le_bytes()), ObjectType::File);
            s.assign(name, source);
            s.on_result(name, source, Outcome::Stored).unwrap();
        };
        for _ in 0..3 {
            store(&mut s, 0);
        }
        assert_eq!(s.sources[0].limit, 4, "no slot before `limit` successes");
        store(&mut s, 0);
        assert_eq!(
            s.sources[0].limit, 5,
            "the 4th success with 4 slots earns one"
        );
        store(&mut s, 0);
        assert_eq!(s.sources[0].limit, 6, "and from then on each success");
        // Halved, it climbs back only once the count is a multiple again.
        s.sources[0].halve_limit();
        assert_eq!(s.sources[0].limit, 3);
        store(&mut s, 0);
        assert_eq!((s.sources[0].successes, s.sources[0].limit), (6, 4));
        store(&mut s, 0);
        assert_eq!((s.sources[0].successes, s.sources[0].limit), (7, 4));
        store(&mut s, 0);
        assert_eq!((s.sources[0].successes, s.sources[0].limit), (8, 5));
        for _ in 0..2000 {
            store(&mut s, 0);
        }
        assert_eq!(s.sources[0].limit, MAX_HTTP_IN_FLIGHT);
        // A file source keeps its limit.
        for _ in 0..100 {
            store(&mut s, 1);
        }
        assert_eq!(s.sources[1].limit, 4);
        assert!(s.pick(now).unwrap().is_empty());
    }

    #[test]
    fn slow_means_after_hedge_after_below_hedge_rate() {
        assert!(!is_slow(HEDGE_AFTER - Duration::from_millis(1), 0));
        assert!(is_slow(HEDGE_AFTER, 0));
        assert!(is_slow(Duration::from_secs(4), 4 * HEDGE_RATE - 1));
        assert!(!is_slow(Duration::from_secs(4), 4 * HEDGE_RATE));
    }

    #[test]
    fn hedging_asks_a_slow_object_of_the_best_other_free_source() {
        let best = SourceRank::of(false, true, false, None);
        let mut s = scheduler(vec![
            (http(4), best),
            (http(4), SourceRank::of(false, true, true, None)),
            (http(4), SourceRank::of(false, false, false, Some(3))),
        ]);
        s.need([file(1), file(2)]);
        let now = Instant::now();
        assert_eq!(sources_of(&s.pick(now).unwrap()), [0, 0]);
        let slow = HashSet::from([(file(1), 0)]);
        assert_eq!(
            s.hedge(&slow, now),
            [Assignment {
                object: file(1),
                source: 1
            }]
        );
        // Hedged once only: it now has two requests.
        assert!(s.hedge(&slow, now).is_empty());
        // The first copy wins; the other request is let go.
        let settled = s.on_result(file(1), 1, Outcome::Stored).unwrap();
        assert_eq!(settled.let_go, [0]);
        assert_eq!(s.sources[0].in_flight, 1);
        assert!(!s.is_asked(&file(1), 0));
        // Its late result changes nothing.
        assert_eq!(s.on_result(file(1), 0, Outcome::Bad), None);
        assert!(s.sources[0].alive);
    }

    #[test]
    fn hedging_skips_sources_that_failed_the_object_or_are_full() {
        let mut s = scheduler(vec![
            (http(4), peer()),
            (http(4), peer()),
            (http(0), peer()),
        ]);
        s.need([file(1)]);
        let now = Instant::now();
        s.assign(file(1), 1);
        s.on_result(file(1), 1, Outcome::NotFound);
        s.queue.clear();
        s.assign(file(1), 0);
        let slow = HashSet::from([(file(1), 0)]);
        // Source 1 failed it, source 2 has no free slot.
        assert!(s.hedge(&slow, now).is_empty());
    }

    #[test]
    fn stall_penalty_passes_over_a_source_whose_every_request_is_slow() {
        let holder = SourceRank::of(false, true, false, None);
        let stale = SourceRank::of(false, false, false, Some(1));
        let mut s = scheduler(vec![(http(4), holder), (http(4), stale)]);
        s.need([file(1), file(2)]);
        let now = Instant::now();
        assert_eq!(sources_of(&s.pick(now).unwrap()), [0, 0]);
        // One slow request of two: not stalled.
        let one_slow = HashSet::from([(file(1), 0)]);
        assert!(s.stalled_sources(&one_slow).is_empty());
        let both_slow = HashSet::from([(file(1), 0), (file(2), 0)]);
        assert_eq!(s.stalled_sources(&both_slow), [0]);
        s.pass_over_stalled(&both_slow, now);
        // New work goes to the lower-ranked source while the penalty lasts...
        s.need([file(3)]);
        assert_eq!(sources_of(&s.pick(now).unwrap()), [1]);
        // ... and back to the best one after it.
        s.need([file(4)]);
        let later = now + STALL_PENALTY + Duration::from_millis(1);
        assert_eq!(sources_of(&s.pick(later).unwrap()), [0]);
    }

    #[test]
    fn a_passed_over_source_still_serves_when_it_is_the_only_candidate() {
        let mut s = scheduler(vec![(http(4), peer())]);
        let now = Instant::now();
        s.sources[0].passed_over_until = Some(now + STALL_PENALTY);
        s.need([file(1)]);
        assert_eq!(sources_of(&s.pick(now).unwrap()), [0]);
    }

    #[test]
    fn a_duplicate_leaves_the_decision_to_the_other_copy() {
        let mut s = scheduler(vec![(http(4), peer()), (http(4), peer())]);
        s.assign(file(1), 0);
        s.assign(file(1), 1);
        assert_eq!(
            s.on_result(file(1), 0, Outcome::Duplicate),
            Some(Settled::default())
        );
        assert!(!s.is_done());
        s.on_result(file(1), 1, Outcome::Stored);
        assert!(s.is_done());
    }

    #[test]
    fn requests_let_go_with_a_failed_pull_hold_no_slot_for_the_next_ref() {
        let mut s = scheduler(vec![(http(4), peer())]);
        s.need([file(1), file(2), file(3)]);
        assert_eq!(s.pick(Instant::now()).unwrap().len(), 3);
        let states = s.into_sources();
        assert_eq!(states[0].in_flight, 0);
    }
}
