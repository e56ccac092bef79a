//! A node's slots (requests in flight to it, each on one connection) and the queue of requests
//! waiting for one: at once while one is free, and in turn by account while none is.
//!
//! First come, first served lets one account that floods take every slot and every place in
//! the queue. Here the waiting requests are served by deficit round robin over accounts
//! ("lanes"): each lane in turn gets as many slots as its weight, so a flood gets its share
//! of a contended node and all of it when nobody else waits. The queue's bound is shared the
//! same way: when it is full, a newcomer below its lane's share takes the place of the newest
//! waiter of the longest lane, which is refused.
//!
//! The uncontended path is two atomic operations and no lock: a slot is taken from `free`
//! while nobody waits. The lock guards only the queue, and is never held across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::limits::Lane;

/// What the queue bounds and how it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Slots: requests in flight to the node at once.
    pub max: usize,
    /// Requests that may wait for a slot.
    pub max_pending: usize,
    /// Serve waiters by lane in turn; `false`: in arrival order, as one lane.
    pub fair: bool,
}

/// Why no slot was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// The queue was full (or its lane's part of it was, or a lane below its share took the
    /// place).
    QueueFull,
    /// No slot came free within the wait.
    TimedOut,
}

/// A node's slots.
pub struct Slots {
    limits: SlotLimits,
    /// Slots not held and not handed to a waiter.
    free: AtomicUsize,
    /// Requests in the queue; a newcomer queues behind them rather than take a freed slot.
    waiting: AtomicUsize,
    queue: Mutex<Queue>,
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Slots {
        Slots {
            limits,
            free: AtomicUsize::new(limits.max),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Queue::default()),
        }
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.limits
            .max
            .saturating_sub(self.free.load(Ordering::Relaxed))
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A slot at once, when one is free and nobody waits for it.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        if self.waiting.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.take_free().then(|| Slot(Arc::clone(self)))
    }

    /// A slot for a request of `lane`: at once when one is free, else after its turn in the
    /// queue, within `wait`. A request dropped while it waits leaves the queue (or gives back
    /// the slot it was just handed).
    pub async fn acquire(self: &Arc<Self>, lane: Lane, wait: Duration) -> Result<Slot, NoSlot> {
        if let Some(slot) = self.try_acquire() {
            return Ok(slot);
        }
        let mut place = match self.enqueue(lane) {
            Enqueued::Granted => return Ok(Slot(Arc::clone(self))),
            Enqueued::Full => return Err(NoSlot::QueueFull),
            Enqueued::Waiting(place) => place,
        };
        match tokio::time::timeout(wait, &mut place.grant).await {
            Ok(Ok(())) => {
                place.granted = true;
                Ok(Slot(Arc::clone(self)))
            }
            // Its place was given to a request of a lane below its share.
            Ok(Err(_)) => Err(NoSlot::QueueFull),
            Err(_) => Err(NoSlot::TimedOut),
        }
    }

    fn take_free(&self) -> bool {
        self.free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue's invariants hold between statements that cannot panic; a poisoned lock
        // still guards a consistent queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(self: &Arc<Self>, lane: Lane) -> Enqueued<'_> {
        let lane = if self.limits.fair { lane } else { Lane::SHARED };
        let mut queue = self.lock();
        if queue.total == 0 && self.take_free() {
            return Enqueued::Granted;
        }
        if queue.total >= self.limits.max_pending && !self.make_room(&mut queue, lane) {
            return Enqueued::Full;
        }
        let (sender, grant) = oneshot::channel();
        let ticket = queue.push(lane, sender);
        self.waiting.store(queue.total, Ordering::SeqCst);
        // A slot freed between the failed take and the count above went to nobody: hand it
        // out now (the releaser may have seen no waiter).
        self.dispatch(&mut queue);
        Enqueued::Waiting(Place {
            slots: self,
            lane: lane.id,
            ticket,
            grant,
            granted: false,
        })
    }

    /// Whether a request of `lane` may wait although the queue is full: only when its lane
    /// holds less than an equal share and the longest lane holds more, whose newest waiter
    /// then gives up its place.
    fn make_room(&self, queue: &mut Queue, lane: Lane) -> bool {
        if !self.limits.fair || self.limits.max_pending == 0 {
            return false;
        }
        let mine = queue.lane_len(lane.id);
        let lanes = queue.lanes.len() + usize::from(mine == 0);
        let share = (self.limits.max_pending / lanes).max(1);
        if mine >= share {
            return false;
        }
        let evicted = queue.evict_longest(share);
        if evicted {
            self.waiting.store(queue.total, Ordering::SeqCst);
        }
        evicted
    }

    /// Hands free slots to waiters, lane by lane.
    fn dispatch(&self, queue: &mut Queue) {
        while queue.total > 0 && self.take_free() {
            let mut handed = false;
            while let Some(waiter) = queue.next() {
                if waiter.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            self.waiting.store(queue.total, Ordering::SeqCst);
            if !handed {
                self.free.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn release(&self) {
        self.free.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) != 0 {
            self.dispatch(&mut self.lock());
        }
    }

    /// Takes a waiter that stopped waiting out of the queue.
    fn leave(&self, lane: usize, ticket: u64) -> bool {
        let mut queue = self.lock();
        let left = queue.remove(lane, ticket);
        if left {
            self.waiting.store(queue.total, Ordering::SeqCst);
        }
        left
    }
}

/// One slot, held until dropped (with the response body, when a request got one).
pub struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

enum Enqueued<'a> {
    Granted,
    Full,
    Waiting(Place<'a>),
}

/// A request's place in the queue. Dropped while waiting (its client left, its wait ended),
/// it leaves the queue; dropped just after a slot was handed to it, it hands the slot on.
struct Place<'a> {
    slots: &'a Slots,
    lane: usize,
    ticket: u64,
    grant: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.granted || self.slots.leave(self.lane, self.ticket) {
            return;
        }
        // Not in the queue any more: evicted, or handed a slot it will not use.
        self.grant.close();
        if self.grant.try_recv().is_ok() {
            self.slots.release();
        }
    }
}

/// The waiting requests, by lane, in the lanes' turn order.
#[derive(Default)]
struct Queue {
    /// Lanes with waiters; the front one's turn now.
    lanes: VecDeque<LaneQueue>,
    total: usize,
    next_ticket: u64,
}

struct LaneQueue {
    id: usize,
    weight: u32,
    /// Slots left in this lane's current turn.
    deficit: u32,
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Queue {
    fn push(&mut self, lane: Lane, sender: oneshot::Sender<()>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        match self.lanes.iter_mut().find(|l| l.id == lane.id) {
            Some(queue) => queue.waiters.push_back((ticket, sender)),
            None => self.lanes.push_back(LaneQueue {
                id: lane.id,
                weight: lane.weight.max(1),
                deficit: 0,
                waiters: VecDeque::from([(ticket, sender)]),
            }),
        }
        self.total += 1;
        ticket
    }

    fn lane_len(&self, id: usize) -> usize {
        self.lanes
            .iter()
            .find(|l| l.id == id)
            .map_or(0, |l| l.waiters.len())
    }

    /// The next waiter by deficit round robin: the front lane is served up to its weight,
    /// then goes to the back; a lane that empties leaves (and starts afresh when it returns).
    fn next(&mut self) -> Option<oneshot::Sender<()>> {
        let front = self.lanes.front_mut()?;
        if front.deficit == 0 {
            front.deficit = front.weight;
        }
        front.deficit -= 1;
        let waiter = front.waiters.pop_front();
        if front.waiters.is_empty() {
            self.lanes.pop_front();
        } else if front.deficit == 0 {
            self.lanes.rotate_left(1);
        }
        let (_, sender) = waiter?;
        self.total -= 1;
        Some(sender)
    }

    /// Refuses the newest waiter of the longest lane, when that lane holds more than `share`.
    fn evict_longest(&mut self, share: usize) -> bool {
        let Some(i) = (0..self.lanes.len()).max_by_key(|&i| self.lanes[i].waiters.len()) else {
            return false;
        };
        let lane = &mut self.lanes[i];
        if lane.waiters.len() <= share {
            return false;
        }
        // Dropping its sender wakes it with the refusal.
        lane.waiters.pop_back();
        self.total -= 1;
        true
    }

    fn remove(&mut self, lane: usize, ticket: u64) -> bool {
        let Some(i) = self.lanes.iter().position(|l| l.id == lane) else {
            return false;
        };
        let queue = &mut self.lanes[i];
        let Some(at) = queue.waiters.iter().position(|(t, _)| *t == ticket) else {
            return false;
        };
        queue.waiters.remove(at);
        if queue.waiters.is_empty() {
            self.lanes.remove(i);
        }
        self.total -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Lane = Lane { id: 1, weight: 1 };
    const B: Lane = Lane { id: 2, weight: 1 };
    const LONG: Duration = Duration::from_secs(3600);

    fn slots(max: usize, max_pending: usize, fair: bool) -> Arc<Slots> {
        Arc::new(Slots::new(SlotLimits {
            max,
            max_pending,
            fair,
        }))
    }

    /// Starts a waiter of `lane` that, when granted, records its tag in `order` and hands its
    /// slot on.
    fn waiter(
        slots: &Arc<Slots>,
        lane: Lane,
        tag: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<Result<(), NoSlot>> {
        let (slots, order) = (Arc::clone(slots), Arc::clone(order));
        tokio::spawn(async move {
            let slot = slots.acquire(lane, LONG).await?;
            order.lock().unwrap().push(tag);
            drop(slot);
            Ok(())
        })
    }

    async fn settle(slots: &Slots, waiting: usize) {
        while slots.waiting() != waiting {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_gets_its_turn_not_every_slot() {
        let slots = slots(1, 100, true);
        let held = slots.try_acquire().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            tasks.push(waiter(&slots, A, "a", &order));
        }
        settle(&slots, 4).await;
        tasks.push(waiter(&slots, B, "b", &order));
        tasks.push(waiter(&slots, B, "b", &order));
        settle(&slots, 6).await;
        drop(held);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "a", "b", "a", "a"]);
        assert_eq!((slots.held(), slots.waiting()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn weights_give_turns_in_proportion() {
        let slots = slots(1, 100, true);
        let held = slots.try_acquire().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let heavy = Lane { id: 3, weight: 2 };
        let mut tasks = Vec::new();
        for _ in 0..4 {
            tasks.push(waiter(&slots, heavy, "h", &order));
        }
        for _ in 0..2 {
            tasks.push(waiter(&slots, A, "a", &order));
        }
        settle(&slots, 6).await;
        drop(held);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["h", "h", "a", "h", "h", "a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_fairness_arrival_order_is_kept() {
        let slots = slots(1, 100, false);
        let held = slots.try_acquire().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (lane, tag) in [(A, "a1"), (A, "a2"), (B, "b1"), (A, "a3")] {
            tasks.push(waiter(&slots, lane, tag, &order));
            settle(&slots, tasks.len()).await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a1", "a2", "b1", "a3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_makes_room_for_a_lane_below_its_share() {
        let slots = slots(1, 4, true);
        let held = slots.try_acquire().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut flood = Vec::new();
        for _ in 0..4 {
            flood.push(waiter(&slots, A, "a", &order));
        }
        settle(&slots, 4).await;
        // A fifth of the flood's is refused at once...
        assert_eq!(slots.acquire(A, LONG).await.err(), Some(NoSlot::QueueFull));
        // ...but B takes the place of the flood's newest waiter.
        let b = waiter(&slots, B, "b", &order);
        let evicted = flood.pop().unwrap().await.unwrap();
        assert_eq!(evicted.err(), Some(NoSlot::QueueFull));
        settle(&slots, 4).await;
        drop(held);
        flood.remove(0).await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        for task in flood {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "a", "a"]);
        assert_eq!((slots.held(), slots.waiting()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_gives_back_its_place_or_its_slot() {
        let slots = slots(1, 2, true);
        let held = slots.try_acquire().unwrap();
        // Its wait ends: the place is given back.
        assert_eq!(
            slots.acquire(A, Duration::from_millis(10)).await.err(),
            Some(NoSlot::TimedOut)
        );
        assert_eq!(slots.waiting(), 0);
        // Dropped while waiting.
        let mut waiting = Box::pin(slots.acquire(A, LONG));
        assert!(futures_poll(&mut waiting).is_none());
        assert_eq!(slots.waiting(), 1);
        drop(waiting);
        assert_eq!(slots.waiting(), 0);
        // Dropped after the slot was handed to it, before it ran again.
        let mut waiting = Box::pin(slots.acquire(A, LONG));
        assert!(futures_poll(&mut waiting).is_none());
        drop(held);
        assert_eq!((slots.held(), slots.waiting()), (1, 0));
        drop(waiting);
        assert_eq!((slots.held(), slots.waiting()), (0, 0));
        assert!(slots.try_acquire().is_some());
    }

    /// Polls `future` once.
    fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}
