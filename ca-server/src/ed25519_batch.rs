//! Ed25519 signature checks batched across concurrent requests.
//!
//! Under load many requests each need one Ed25519 verification (their proof
//! of possession) at nearly the same moment. Checking them together costs
//! about half as much per signature from a batch of eight on (measured in
//! docs/benchmarks.md). The first request to arrive while no batch is running
//! leads: it lets the other requests ready on its worker reach the queue,
//! checks everything queued, and answers each waiter; no thread is handed
//! anything. A failed batch is checked again one signature at a time, so one
//! bad signature never fails its neighbours. An idle CA checks batches of one.

use std::sync::Mutex;

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use tokio::sync::oneshot;

/// One signature to check: `signature` by `key` over `message`.
#[derive(Debug)]
pub struct Ed25519Check {
    /// The signer's public key (never a small-order point: see
    /// `SubjectKey::parse`).
    pub key: VerifyingKey,
    /// The exact signed bytes.
    pub message: Vec<u8>,
    /// The signature.
    pub signature: Signature,
}

impl Ed25519Check {
    /// Checks this one signature on its own.
    pub fn verify(&self) -> bool {
        self.key.verify(&self.message, &self.signature).is_ok()
    }
}

/// Batches [`Ed25519Check`]s; shared by all requests.
#[derive(Debug, Default)]
pub struct Ed25519Batcher {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<(Ed25519Check, oneshot::Sender<bool>)>,
    /// A request is checking batches and will check whatever is queued.
    leader: bool,
}

/// Larger batches gain little (12.5 µs per signature at 64 against 14.9 µs
/// at 8) and keep their leader's request waiting longer.
const MAX_BATCH: usize = 64;

impl Ed25519Batcher {
    /// Whether `check` holds, checked in a batch with the checks of
    /// concurrent requests.
    pub async fn verify(&self, check: Ed25519Check) -> bool {
        let (done, verdict) = oneshot::channel();
        let leads = {
            let mut queue = self.lock();
            queue.waiting.push((check, done));
            !std::mem::replace(&mut queue.leader, true)
        };
        if leads {
            let leadership = Leadership(self);
            // Lets the requests that are ready on this worker queue their
            // checks before the batch is taken.
            tokio::task::yield_now().await;
            // Checks everything queued, also if this request is dropped
            // while yielding: the waiters are never left without a leader.
            drop(leadership);
        }
        verdict.await.unwrap_or(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-changed.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Held by the leading request; checks batches until the queue is empty.
struct Leadership<'a>(&'a Ed25519Batcher);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        loop {
            let batch = {
                let mut queue = self.0.lock();
                if queue.waiting.is_empty() {
                    queue.leader = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            let verdicts = verify_all(batch.iter().map(|(check, _)| check));
            for ((_, done), verdict) in batch.into_iter().zip(verdicts) {
                // The requester may have gone (timed out); nothing to tell.
                let _ = done.send(verdict);
            }
        }
    }
}

/// The verdict for each check, in order.
fn verify_all<'a>(checks: impl ExactSizeIterator<Item = &'a Ed25519Check> + Clone) -> Vec<bool> {
    if checks.len() > 1 {
        let messages: Vec<&[u8]> = checks.clone().map(|c| c.message.as_slice()).collect();
        let signatures: Vec<Signature> = checks.clone().map(|c| c.signature).collect();
        let keys: Vec<VerifyingKey> = checks.clone().map(|c| c.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return vec![true; checks.len()];
        }
    }
    checks.map(Ed25519Check::verify).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use std::sync::Arc;

    fn check(good: bool, i: usize) -> Ed25519Check {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let message = format!("message {i}").into_bytes();
        let signature = if good {
            key.sign(&message)
        } else {
            key.sign(b"something else")
        };
        Ed25519Check {
            key: key.verifying_key(),
            message,
            signature,
        }
    }

    #[test]
    fn one_bad_signature_fails_alone() {
        let checks: Vec<_> = (0..10).map(|i| check(i != 3, i)).collect();
        let verdicts = verify_all(checks.iter());
        let expected: Vec<bool> = (0..10).map(|i| i != 3).collect();
        assert_eq!(verdicts, expected);
        assert_eq!(verify_all(checks[..1].iter()), vec![true]);
        assert_eq!(verify_all(checks[3..4].iter()), vec![false]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_get_their_own_verdicts() {
        let batcher = Arc::new(Ed25519Batcher::default());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (i, batcher.verify(check(i % 7 != 0, i)).await) })
            })
            .collect();
        for task in tasks {
            let (i, verdict) = task.await.expect("task");
            assert_eq!(verdict, i % 7 != 0, "check {i}");
        }
        assert!(!batcher.lock().leader, "leadership released");
    }

    #[tokio::test]
    async fn a_leader_dropped_while_yielding_still_answers_the_others() {
        let batcher = Arc::new(Ed25519Batcher::default());
        let mut leader = Box::pin(batcher.verify(check(true, 0)));
        // Polled once: it leads and yields.
        assert!(futures_poll_once(leader.as_mut()).await.is_none());
        let follower = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.verify(check(true, 1)).await }
        });
        tokio::task::yield_now().await;
        drop(leader);
        let verdict = tokio::time::timeout(std::time::Duration::from_secs(5), follower)
            .await
            .expect("answered")
            .expect("task");
        assert!(verdict);
        assert!(!batcher.lock().leader);
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
