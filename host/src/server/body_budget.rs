//! The budget of request-body bytes in flight (`server.body_budget_bytes`).
//!
//! A body holds its share of the budget from the moment it starts being read
//! until the route is done with it (the provider path: the upstream has its
//! answer; a plugin route: the plugin answered). A request whose body does not
//! fit gets 503 with `Retry-After`, unread when it announced its length; one
//! without a length grows its share as it arrives and is refused when the
//! budget runs out.
//!
//! Shares are counted in KiB on a semaphore, so a permit is an RAII guard:
//! dropped, however the request ends (answer, error, client gone), its bytes
//! are back. A body larger than the whole budget (but under
//! `server.max_request_body_bytes`) takes the whole budget: it is accepted
//! when nothing else is in flight, and nothing else is while it is. Nothing
//! ever waits for the budget, so nothing can deadlock on it.
//!
//! When the last large body in flight is done, its memory is given back to
//! the OS a moment later ([`crate::memory`]).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The unit of the budget's accounting.
const UNIT: u64 = 1024;

/// The bytes of request bodies in flight, bounded.
#[derive(Debug)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    /// The whole budget, in units.
    total: u32,
    /// Bodies of at least [`crate::memory::LARGE_BODY_BYTES`] in flight.
    large: Arc<AtomicUsize>,
}

/// One body's share of the budget; returned when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    units: Arc<Semaphore>,
    total: u32,
    held: Option<OwnedSemaphorePermit>,
    /// The budget's count of large bodies, once this one is large.
    large: Option<Arc<AtomicUsize>>,
    large_count: Arc<AtomicUsize>,
}

/// The budget has no room for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetFull;

impl BodyBudget {
    /// A budget of `bytes` (at least one KiB, at most what a semaphore counts).
    pub fn new(bytes: u64) -> Self {
        let total = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            units: Arc::new(Semaphore::new(total as usize)),
            total,
            large: Arc::default(),
        }
    }

    /// A share for a body of `bytes` (0 when its length is not known yet),
    /// or [`BudgetFull`] at once when the budget has no room for it.
    pub fn try_reserve(&self, bytes: u64) -> Result<BodyPermit, BudgetFull> {
        let mut permit = BodyPermit {
            units: self.units.clone(),
            total: self.total,
            held: None,
            large: None,
            large_count: self.large.clone(),
        };
        permit.grow_to(bytes)?;
        Ok(permit)
    }

    /// The bytes reserved by bodies in flight now (in whole KiB).
    pub fn in_flight_bytes(&self) -> u64 {
        u64::from(self.total).saturating_sub(self.units.available_permits() as u64) * UNIT
    }
}

impl BodyPermit {
    /// Grows the share to cover a body of `bytes` (a share never shrinks);
    /// [`BudgetFull`] when the budget has no room for the difference (the
    /// share is then unchanged).
    pub fn grow_to(&mut self, bytes: u64) -> Result<(), BudgetFull> {
        let wanted = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .min(self.total);
        let held = self.held_units();
        if wanted <= held {
            return Ok(());
        }
        let more = self
            .units
            .clone()
            .try_acquire_many_owned(wanted - held)
            .map_err(|_| BudgetFull)?;
        match &mut self.held {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        if self.large.is_none() && bytes >= crate::memory::LARGE_BODY_BYTES {
            self.large_count.fetch_add(1, Ordering::AcqRel);
            self.large = Some(self.large_count.clone());
        }
        Ok(())
    }

    fn held_units(&self) -> u32 {
        self.held.as_ref().map_or(0, |held| {
            u32::try_from(held.num_permits()).unwrap_or(u32::MAX)
        })
    }

    /// The bytes this share covers (in whole KiB).
    pub fn bytes(&self) -> u64 {
        u64::from(self.held_units()) * UNIT
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let Some(large) = self.large.take() else {
            return;
        };
        if large.fetch_sub(1, Ordering::AcqRel) == 1 {
            crate::memory::release_after_large_bodies(move || large.load(Ordering::Acquire) > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn bodies_share_the_budget_and_give_it_back_when_dropped() {
        let budget = BodyBudget::new(4 * MIB);
        let first = budget.try_reserve(3 * MIB).expect("3 MiB fit in 4");
        assert_eq!(budget.in_flight_bytes(), 3 * MIB);
        assert_eq!(budget.try_reserve(3 * MIB).err(), Some(BudgetFull));
        // A refusal takes nothing.
        assert_eq!(budget.in_flight_bytes(), 3 * MIB);
        let second = budget.try_reserve(MIB).expect("the last MiB fits");
        assert_eq!(budget.try_reserve(1).err(), Some(BudgetFull));
        drop(first);
        assert_eq!(budget.in_flight_bytes(), MIB);
        let third = budget.try_reserve(3 * MIB).expect("room again");
        drop((second, third));
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn shares_are_counted_in_whole_kib() {
        let budget = BodyBudget::new(10 * UNIT);
        let permit = budget.try_reserve(1).expect("one byte fits");
        assert_eq!(permit.bytes(), UNIT);
        let empty = budget.try_reserve(0).expect("an empty body always fits");
        assert_eq!(empty.bytes(), 0);
        assert_eq!(budget.in_flight_bytes(), UNIT);
        // A budget of a few bytes is one unit, never none.
        assert_eq!(BodyBudget::new(1).total, 1);
    }

    #[test]
    fn a_share_grows_as_a_body_of_unknown_length_arrives() {
        let budget = BodyBudget::new(4 * MIB);
        let mut growing = budget.try_reserve(0).expect("nothing reserved yet");
        growing.grow_to(MIB).expect("1 MiB fits");
        growing.grow_to(MIB / 2).expect("a share never shrinks");
        assert_eq!(growing.bytes(), MIB);
        let other = budget.try_reserve(2 * MIB).expect("2 MiB more fit");
        growing
            .grow_to(2 * MIB)
            .expect("up to the last byte of the budget");
        assert_eq!(growing.grow_to(2 * MIB + 1), Err(BudgetFull));
        // Refused growth keeps what was held.
        assert_eq!(growing.bytes(), 2 * MIB);
        assert_eq!(budget.in_flight_bytes(), 4 * MIB);
        drop(other);
        growing
            .grow_to(3 * MIB)
            .expect("room after the other body went");
        drop(growing);
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn a_body_larger_than_the_budget_takes_all_of_it_only_when_alone() {
        let budget = BodyBudget::new(4 * MIB);
        let small = budget.try_reserve(MIB).expect("fits");
        assert_eq!(budget.try_reserve(10 * MIB).err(), Some(BudgetFull));
        drop(small);
        let large = budget
            .try_reserve(10 * MIB)
            .expect("alone, it may take all");
        assert_eq!(large.bytes(), 4 * MIB);
        assert_eq!(budget.try_reserve(1).err(), Some(BudgetFull));
        assert_eq!(budget.large.load(Ordering::SeqCst), 1);
        drop(large);
        assert_eq!(budget.large.load(Ordering::SeqCst), 0);
        // A growing body past the budget stops growing at the whole budget.
        let mut growing = budget.try_reserve(0).expect("fits");
        growing.grow_to(64 * MIB).expect("alone");
        assert_eq!(growing.bytes(), 4 * MIB);
        drop(growing);
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn permits_are_returned_across_threads() {
        let budget = Arc::new(BodyBudget::new(64 * UNIT));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0;
                    for size in 1..200u64 {
                        if let Ok(permit) = budget.try_reserve(size * 97) {
                            accepted += 1;
                            drop(permit);
                        }
                    }
                    accepted
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(accepted > 0);
        assert_eq!(budget.in_flight_bytes(), 0);
    }
}
