//! A one-way switch that every in-flight request races against (the run's
//! hard stop), cheap to poll again and again.
//!
//! A request's race is polled at every wake-up of its stream, once per
//! token event. A cancellation token's waiter takes two locks on each of
//! those polls; a [`Wait`] takes the lock once, when it first registers its
//! task, and afterwards reads one atomic for as long as the same task polls
//! it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Off until [`Switch::flip`]; then on for good, and every waiter is woken.
#[derive(Debug, Default)]
pub struct Switch {
    on: AtomicBool,
    /// Registered waiters' tasks; a freed slot is `None` and used again.
    waiters: Mutex<Vec<Option<Waker>>>,
}

impl Switch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Turn it on and wake everyone waiting.
    pub fn flip(&self) {
        self.on.store(true, Ordering::Release);
        let wakers: Vec<Waker> = match self.waiters.lock() {
            Ok(mut w) => w.iter_mut().filter_map(Option::take).collect(),
            Err(_) => Vec::new(),
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// A future that completes once the switch is on.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            switch: self,
            slot: None,
            waker: None,
        }
    }
}

/// Completes when its switch is on.
#[derive(Debug)]
pub struct Wait<'a> {
    switch: &'a Switch,
    /// Where this waiter's task is registered.
    slot: Option<usize>,
    /// The task registered there, to tell whether a poll comes from it.
    waker: Option<Waker>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.switch.is_on() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        if let Ok(mut waiters) = self.switch.waiters.lock() {
            let slot = match self.slot {
                Some(i) => i,
                None => match waiters.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        waiters.push(None);
                        waiters.len() - 1
                    }
                },
            };
            waiters[slot] = Some(waker.clone());
            self.slot = Some(slot);
        }
        self.waker = Some(waker);
        // Flipped between the first check and the registration.
        if self.switch.is_on() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let (Some(i), Ok(mut waiters)) = (self.slot, self.switch.waiters.lock()) {
            if let Some(w) = waiters.get_mut(i) {
                *w = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiter_wakes_when_it_flips_and_slots_are_reused() {
        let switch = Arc::new(Switch::new());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = switch.clone();
                tokio::spawn(async move { s.wait().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!switch.is_on());
        assert_eq!(
            switch
                .waiters
                .lock()
                .expect("lock")
                .iter()
                .flatten()
                .count(),
            8
        );
        let mut cx = Context::from_waker(Waker::noop());
        {
            // A waiter that goes away frees its slot for the next one.
            let gone = switch.wait();
            tokio::pin!(gone);
            assert!(gone.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(switch.waiters.lock().expect("lock").len(), 9);
        let again = switch.wait();
        tokio::pin!(again);
        assert!(again.as_mut().poll(&mut cx).is_pending());
        assert_eq!(switch.waiters.lock().expect("lock").len(), 9);
        switch.flip();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("woken")
                .expect("joined");
        }
        assert!(again.as_mut().poll(&mut cx).is_ready());
        // Once on, a new waiter is ready at once.
        tokio::time::timeout(Duration::from_millis(100), switch.wait())
            .await
            .expect("ready");
    }
}
