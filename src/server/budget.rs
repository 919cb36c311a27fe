//! A server-wide budget for the bytes of unfinished requests held in memory.
//!
//! Each connection holds at most one message of input, bounded by the
//! content limit; but many slow clients each holding an almost-complete
//! 1 MiB message add up (10,000 of them are 10 GiB). So every connection
//! charges what its input buffer holds to one [`InputBudget`]. When a charge
//! takes the total past the limit, the connections holding the most are
//! chosen ("evicted"): each is told through its [`BudgetShare`], answers its
//! client with an error naming the limit, and closes, which gives its bytes
//! back. This is Redis's `maxmemory-clients` policy applied to input.
//!
//! The common case costs nothing: a connection whose requests arrive whole
//! holds no input between reads, so its charge stays zero, touches no
//! shared state and allocates nothing. Only holders of at least [`TRACKED_FROM`] bytes are kept in
//! the (locked) list of eviction candidates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Default server-wide limit on buffered unfinished-request bytes.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// Connections holding at least this many bytes are eviction candidates.
pub const TRACKED_FROM: usize = 64 * 1024;

/// The shared budget.
#[derive(Debug)]
pub struct InputBudget {
    max: usize,
    used: AtomicUsize,
    /// Bytes held by connections already told to close, not yet given back:
    /// not counted again when choosing whom else to evict.
    leaving: AtomicUsize,
    /// Keyed by the holder's address, unique while it is alive.
    candidates: Mutex<HashMap<usize, Arc<Holder>>>,
}

/// One connection's side of the budget, shared with the candidate list.
#[derive(Debug, Default)]
struct Holder {
    held: AtomicUsize,
    evicted: AtomicBool,
    /// What was added to `leaving` when chosen, taken back on drop.
    leaving: AtomicUsize,
    notify: Notify,
}

/// A connection's share of the budget. Dropping it gives its bytes back.
#[derive(Debug)]
pub struct BudgetShare {
    budget: Arc<InputBudget>,
    /// Made when the connection first holds input: one that never does
    /// (every request arriving whole) cannot be chosen, so needs none.
    holder: Option<Arc<Holder>>,
    held: usize,
    tracked: bool,
}

/// This connection was chosen to close because the budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// What this connection held when chosen.
    pub held: usize,
    /// The server-wide limit.
    pub limit: usize,
}

impl InputBudget {
    /// A budget of `max` bytes for the whole server.
    pub fn new(max: usize) -> Arc<InputBudget> {
        Arc::new(InputBudget {
            max,
            used: AtomicUsize::new(0),
            leaving: AtomicUsize::new(0),
            candidates: Mutex::new(HashMap::new()),
        })
    }

    /// A share for a new connection, holding nothing.
    pub fn share(self: &Arc<Self>) -> BudgetShare {
        BudgetShare {
            budget: Arc::clone(self),
            holder: None,
            held: 0,
            tracked: false,
        }
    }

    /// Bytes held right now across the server.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Chooses connections to close, largest first, until what is left
    /// fits. `asker` is the connection whose charge went over: if the
    /// candidates do not free enough, it is chosen too.
    fn evict_for(&self, asker: &Holder) {
        let candidates = self.lock_candidates();
        let mut excess = self
            .used()
            .saturating_sub(self.leaving.load(Ordering::Relaxed))
            .saturating_sub(self.max);
        if excess == 0 {
            return;
        }
        // Sizes are read once: other connections change theirs while we
        // sort, and a sort whose keys move under it may panic.
        let mut by_size: Vec<(usize, &Arc<Holder>)> = candidates
            .values()
            .filter(|holder| !holder.evicted.load(Ordering::Relaxed))
            .map(|holder| (holder.held.load(Ordering::Relaxed), holder))
            .collect();
        by_size.sort_unstable_by_key(|(held, _)| std::cmp::Reverse(*held));
        for (_, holder) in by_size {
            if excess == 0 {
                return;
            }
            excess = excess.saturating_sub(self.choose(holder));
        }
        if excess > 0 && !asker.evicted.load(Ordering::Relaxed) {
            self.choose(asker);
        }
    }

    /// The candidate list. A panic elsewhere while it was held leaves it
    /// consistent (every change to it is a single insert or remove), so a
    /// poisoned lock is used as it is rather than spreading the panic.
    fn lock_candidates(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Arc<Holder>>> {
        self.candidates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `holder` evicted and wakes it; returns the bytes it will give back.
    fn choose(&self, holder: &Holder) -> usize {
        holder.evicted.store(true, Ordering::Relaxed);
        let held = holder.held.load(Ordering::Relaxed);
        holder.leaving.store(held, Ordering::Relaxed);
        self.leaving.fetch_add(held, Ordering::Relaxed);
        holder.notify.notify_one();
        held
    }
}

impl BudgetShare {
    /// Records that the connection now holds `held` bytes of input.
    ///
    /// # Errors
    /// [`Evicted`] if this connection has been chosen to close (now, or
    /// earlier by another connection's charge).
    pub fn set(&mut self, held: usize) -> Result<(), Evicted> {
        if held != self.held {
            if held > self.held {
                self.budget.used.fetch_add(held - self.held, Ordering::Relaxed);
            } else {
                self.budget.used.fetch_sub(self.held - held, Ordering::Relaxed);
                self.release_leaving(self.held - held);
            }
            let grew = held > self.held;
            self.held = held;
            if held > 0 || self.holder.is_some() {
                let holder = self.holder.get_or_insert_with(Arc::default);
                holder.held.store(held, Ordering::Relaxed);
            }
            self.track(held >= TRACKED_FROM);
            if grew
                && let Some(holder) = &self.holder
                && self.budget.used() > self.budget.max
            {
                self.budget.evict_for(holder);
            }
        }
        self.check()
    }

    /// Charges `held` bytes only if the server-wide total stays within the
    /// limit, never evicting anyone: for memory that is an optimisation (the
    /// echo server's bulk buffer), not a necessity. Returns whether the share
    /// now holds `held`; giving bytes back always succeeds.
    pub fn try_set(&mut self, held: usize) -> bool {
        let budget = &self.budget;
        if held <= self.held {
            budget.used.fetch_sub(self.held - held, Ordering::Relaxed);
            self.release_leaving(self.held - held);
        } else {
            let added = held - self.held;
            let before = budget.used.fetch_add(added, Ordering::Relaxed);
            if before + added > budget.max {
                budget.used.fetch_sub(added, Ordering::Relaxed);
                return false;
            }
        }
        self.held = held;
        if let Some(holder) = &self.holder {
            holder.held.store(held, Ordering::Relaxed);
        }
        true
    }

    /// Whether this connection has been chosen to close.
    ///
    /// # Errors
    /// [`Evicted`] when it has.
    pub fn check(&self) -> Result<(), Evicted> {
        if self
            .holder
            .as_ref()
            .is_some_and(|holder| holder.evicted.load(Ordering::Relaxed))
        {
            Err(Evicted {
                held: self.held,
                limit: self.budget.max,
            })
        } else {
            Ok(())
        }
    }

    /// Resolves when this connection is chosen to close.
    ///
    /// # Cancel safety
    /// Cancel safe: a wake-up that arrives while nobody waits is kept.
    pub async fn evicted(&self) -> Evicted {
        loop {
            if let Err(evicted) = self.check() {
                return evicted;
            }
            match &self.holder {
                Some(holder) => holder.notify.notified().await,
                // Holding nothing, it cannot be chosen; and it cannot take
                // input while this borrow lasts.
                None => std::future::pending().await,
            }
        }
    }

    /// An evicted connection giving bytes back: they no longer count as leaving.
    fn release_leaving(&self, released: usize) {
        let Some(holder) = &self.holder else { return };
        let leaving = holder.leaving.load(Ordering::Relaxed);
        let taken = released.min(leaving);
        if taken > 0 {
            holder.leaving.store(leaving - taken, Ordering::Relaxed);
            self.budget.leaving.fetch_sub(taken, Ordering::Relaxed);
        }
    }

    fn track(&mut self, wanted: bool) {
        if wanted == self.tracked {
            return;
        }
        // Tracking starts at TRACKED_FROM bytes held, so there is a holder.
        let Some(holder) = &self.holder else { return };
        let key = Arc::as_ptr(holder) as usize;
        let mut candidates = self.budget.lock_candidates();
        if wanted {
            candidates.insert(key, Arc::clone(holder));
        } else {
            candidates.remove(&key);
        }
        self.tracked = wanted;
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
        if let Some(holder) = &self.holder {
            self.budget
                .leaving
                .fetch_sub(holder.leaving.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.track(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_limit_nobody_is_evicted() {
        let budget = InputBudget::new(1000);
        let mut a = budget.share();
        let mut b = budget.share();
        a.set(400).unwrap();
        b.set(500).unwrap();
        assert_eq!(budget.used(), 900);
        a.set(0).unwrap();
        assert_eq!(budget.used(), 500);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    /// Most connections never hold input between reads: their share costs
    /// no allocation, which every connection (and every one-shot) would pay.
    #[test]
    fn a_share_allocates_only_once_it_holds_input() {
        let budget = InputBudget::new(1000);
        let mut share = budget.share();
        share.set(0).unwrap();
        assert!(share.holder.is_none());
        share.set(10).unwrap();
        assert_eq!(
            share.holder.as_ref().map(|holder| holder.held.load(Ordering::Relaxed)),
            Some(10)
        );
        share.set(0).unwrap();
        assert_eq!(
            share.holder.as_ref().map(|holder| holder.held.load(Ordering::Relaxed)),
            Some(0)
        );
    }

    #[test]
    fn the_largest_holders_are_evicted_first() {
        let budget = InputBudget::new(3 * TRACKED_FROM);
        let mut big = budget.share();
        let mut middle = budget.share();
        let mut asker = budget.share();
        big.set(2 * TRACKED_FROM).unwrap();
        middle.set(TRACKED_FROM).unwrap();
        // Going over by a little evicts only the largest, not the asker.
        asker.set(1000).unwrap();
        assert_eq!(
            big.check(),
            Err(Evicted {
                held: 2 * TRACKED_FROM,
                limit: 3 * TRACKED_FROM
            })
        );
        assert!(middle.check().is_ok());
        // Until the evicted one leaves, its bytes are not counted against others.
        asker.set(2000).unwrap();
        assert!(middle.check().is_ok());
        // Giving its bytes back while it lingers does not count them twice:
        // the next charge over the limit evicts again.
        big.set(0).unwrap_err();
        assert_eq!(budget.used(), TRACKED_FROM + 2000);
        let mut newcomer = budget.share();
        assert!(
            newcomer.set(2 * TRACKED_FROM).is_err(),
            "over the limit again: the largest holder, the newcomer, is chosen"
        );
        assert!(middle.check().is_ok());
        drop(big);
    }

    #[test]
    fn with_no_large_holders_the_asker_is_evicted() {
        let budget = InputBudget::new(1000);
        let mut small = budget.share();
        let mut asker = budget.share();
        small.set(600).unwrap();
        assert!(asker.set(600).is_err());
        assert!(small.check().is_ok(), "small holders are not candidates");
    }

    #[test]
    fn optional_charges_fit_or_are_refused_without_evicting() {
        let budget = InputBudget::new(TRACKED_FROM);
        let mut holder = budget.share();
        holder.set(TRACKED_FROM - 100).unwrap();
        let mut echo = budget.share();
        assert!(echo.try_set(100));
        assert!(!echo.try_set(200), "would go over");
        assert!(holder.check().is_ok(), "nobody evicted");
        assert_eq!(budget.used(), TRACKED_FROM);
        assert!(echo.try_set(0));
        assert_eq!(budget.used(), TRACKED_FROM - 100);
    }

    /// Many threads charging and evicting at once (as server workers do):
    /// no panic, and every byte is given back in the end.
    #[test]
    fn concurrent_charges_and_evictions_stay_consistent() {
        let budget = InputBudget::new(8 * TRACKED_FROM);
        let threads: Vec<_> = (0..4)
            .map(|seed| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    let mut shares: Vec<BudgetShare> = (0..8).map(|_| budget.share()).collect();
                    let mut state = 0x9e37_79b9_u32 ^ seed;
                    for _ in 0..20_000 {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        let share = &mut shares[state as usize % 8];
                        let _ = share.set((state as usize >> 8) % (3 * TRACKED_FROM));
                        if share.check().is_err() {
                            *share = budget.share(); // an evicted connection closes; a new one comes
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no thread panicked");
        }
        assert_eq!(budget.used(), 0, "every share gave its bytes back");
        assert_eq!(budget.leaving.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn an_evicted_connection_is_woken() {
        let budget = InputBudget::new(TRACKED_FROM);
        let mut big = budget.share();
        big.set(TRACKED_FROM).unwrap();
        let mut asker = budget.share();
        let wait = tokio::spawn(async move { big.evicted().await });
        tokio::task::yield_now().await;
        asker.set(10).unwrap();
        let evicted = tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(evicted.held, TRACKED_FROM);
    }
}
