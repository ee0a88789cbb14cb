//! Ed25519 signature checks batched across concurrent requests.
//!
//! Under load many requests each need one Ed25519 verification (their proof
//! of possession) at nearly the same moment. Checking them together, in one
//! equation, costs much less per signature than checking each alone, and the
//! more so the larger the batch (docs/benchmarks.md has the figures). Each
//! core has a queue. The first request to arrive
//! at its core's queue while no batch of it is running leads: it lets the
//! other requests ready on its thread reach the queue, checks everything
//! queued, and answers each waiter; no thread is handed anything but half of
//! a large batch. A failed batch is checked again one signature at a time, so one
//! bad signature never fails its neighbours; and for
//! [`SINGLE_CHECKS_AFTER_FAILURE`] after it every signature is checked alone,
//! because ID tokens come from anyone: without the pause, each forged
//! signature would cost a failed batch plus one check per neighbour. A
//! flood of forgeries so costs what it cost before batching. An idle CA
//! checks batches of one.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint, VartimeEdwardsPrecomputation};
use curve25519_dalek::traits::{IsIdentity as _, VartimePrecomputedMultiscalarMul as _};
use curve25519_dalek::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::RngCore as _;
use sha2::{Digest as _, Sha512};
use tokio::sync::oneshot;

/// One signature to check: `signature` by `key` over `message`.
pub struct Ed25519Check {
    /// The signer's public key. A small-order or non-canonically encoded
    /// one fails every check; `SubjectKey::parse` and the JWKS parsing in
    /// [`crate::oidc`] refuse small-order keys before that, with reasons.
    pub key: VerifyingKey,
    /// The exact signed bytes.
    pub message: Vec<u8>,
    /// The signature.
    pub signature: Signature,
}

/// Shows the key and the message's length only: for an ID token the message
/// is its header and claims, which are not for logs.
impl std::fmt::Debug for Ed25519Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Check")
            .field("key", self.key.as_bytes())
            .field("message_len", &self.message.len())
            .finish_non_exhaustive()
    }
}

impl Ed25519Check {
    /// Checks this one signature on its own.
    pub fn verify(&self) -> bool {
        verify_one(&self.key, &self.message, &self.signature)
    }
}

/// Checks one signature on its own, by the rule of the batches ([`all_hold`]):
/// the same conditions on its encoding, then the cofactored equation
/// `[8]([s]B - R - [k]A) = 0` with `k = SHA-512(R || A || M)`. So a
/// signature is accepted alone exactly when it is accepted in a batch, and
/// acceptance never depends on load. (aws-lc's check, faster on one
/// signature, is cofactorless: no batch can agree with it on signatures whose
/// `R` or key carries a small-order component.)
pub fn verify_one(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    if !admissible_key(key) {
        return false;
    }
    let Some((r, s)) = admissible_signature(signature) else {
        return false;
    };
    let k = challenge(key, message, signature);
    let expected_r = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-key.to_edwards(), &s);
    (r - expected_r).mul_by_cofactor().is_identity()
}

/// Batches [`Ed25519Check`]s; shared by all requests.
#[derive(Debug)]
pub struct Ed25519Batcher {
    /// One queue per core. A request queues on its thread's, so that with
    /// per-core serving (`server::serve_router`) a check, its waiter and its
    /// answer stay on one core; only half of a large batch crosses to
    /// another thread. With one queue for all, a leader took, checked and
    /// answered the other core's checks, so each check's data and wake-up
    /// crossed between cores, which costs most where the cores share no
    /// cache (docs/benchmarks.md).
    queues: Box<[Arc<Mutex<Queue>>]>,
}

impl Default for Ed25519Batcher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ed25519Batcher {
            queues: (0..cores).map(|_| Arc::default()).collect(),
        }
    }
}

/// Threads take queues in the order they first check a signature. Only the
/// serving threads do, so each gets a queue of its own.
static NEXT_QUEUE: AtomicUsize = AtomicUsize::new(0);

type Waiting = (Ed25519Check, oneshot::Sender<bool>);

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Whether a request is checking batches; it checks until the queue is
    /// empty.
    leading: bool,
    /// Until then signatures are checked one at a time: a batch failed.
    single_until: Option<Instant>,
}

/// Beyond this a larger batch saves little more per signature
/// (docs/benchmarks.md) and keeps its leader's request waiting longer.
const MAX_BATCH: usize = 64;

/// Batches of this many checks or more are split between two cores.
const SPLIT_AT: usize = 16;

/// How long signatures are checked one at a time after a batch failed. Long
/// enough that a flood of forged signatures fails at most one batch per core
/// (at most `MAX_BATCH` extra checks) a second; short enough that honest load is back
/// to batches soon after an occasional bad proof.
pub const SINGLE_CHECKS_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl Ed25519Batcher {
    /// Whether `check` holds, checked in a batch with the checks of
    /// concurrent requests.
    pub async fn verify(&self, check: Ed25519Check) -> bool {
        self.verify_all(vec![check]).await == [true]
    }

    /// The verdict on each of `checks`, in order, checked in one batch with
    /// each other and with the checks of concurrent requests: one wait for
    /// all of them.
    pub async fn verify_all(&self, checks: Vec<Ed25519Check>) -> Vec<bool> {
        if checks.is_empty() {
            return Vec::new();
        }
        let mut verdicts = Vec::with_capacity(checks.len());
        let queue = self.queue();
        let leads = {
            let mut queue = lock(queue);
            for check in checks {
                let (done, verdict) = oneshot::channel();
                queue.waiting.push((check, done));
                verdicts.push(verdict);
            }
            !std::mem::replace(&mut queue.leading, true)
        };
        if leads {
            // Holds this queue, also if the task moves to another thread
            // (tests run on tokio's multi-threaded scheduler).
            let leadership = Leadership(queue);
            // Lets the requests that are ready on this worker queue their
            // checks before the batch is taken.
            tokio::task::yield_now().await;
            // Checks everything queued, also if this request is dropped
            // while yielding: the waiters are never left without a leader.
            drop(leadership);
        }
        let mut answers = Vec::with_capacity(verdicts.len());
        for verdict in verdicts {
            answers.push(verdict.await.unwrap_or(false));
        }
        answers
    }

    /// The queue of this thread.
    fn queue(&self) -> &Arc<Mutex<Queue>> {
        thread_local! {
            static QUEUE: usize = NEXT_QUEUE.fetch_add(1, Ordering::Relaxed);
        }
        &self.queues[QUEUE.with(|index| *index) % self.queues.len()]
    }
}

/// Held by the leading request; checks batches until its queue is empty.
struct Leadership<'a>(&'a Arc<Mutex<Queue>>);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        let _resign = ResignOnPanic(self.0);
        loop {
            let (mut batch, batching) = {
                let mut queue = lock(self.0);
                if queue.waiting.is_empty() {
                    queue.leading = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                let batching = queue.batching_at(Instant::now());
                (queue.waiting.drain(..take).collect::<Vec<_>>(), batching)
            };
            // Requests arrive in waves (a group commit answers many at
            // once), and a wave's checks all land in one batch: checked on
            // this core alone, the other sat idle. A thread of the blocking
            // pool takes half; a spawned task could not be stolen by the idle
            // worker (tokio keeps it in this worker's LIFO slot).
            if batching && batch.len() >= SPLIT_AT {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let half = batch.split_off(batch.len() / 2);
                    let queue = self.0.clone();
                    drop(runtime.spawn_blocking(move || check_and_answer(&queue, half, true)));
                }
            }
            check_and_answer(self.0, batch, batching);
        }
    }
}

/// Should a check panic, the queue's next request leads, instead of every
/// later request on that core waiting for this leader until it times out.
/// (The waiters of the batch that panicked see their answer dropped and are
/// refused.)
struct ResignOnPanic<'a>(&'a Mutex<Queue>);

impl Drop for ResignOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.0).leading = false;
        }
    }
}

/// Checks `batch` and answers each waiter.
fn check_and_answer(queue: &Mutex<Queue>, batch: Vec<Waiting>, batching: bool) {
    let (verdicts, batch_failed) = check_all(batch.iter().map(|(check, _)| check), batching);
    if batch_failed {
        lock(queue).batch_failed_at(Instant::now(), SINGLE_CHECKS_AFTER_FAILURE);
    }
    for ((_, done), verdict) in batch.into_iter().zip(verdicts) {
        // The requester may have gone (timed out); nothing to tell.
        let _ = done.send(verdict);
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // A panic while holding the lock cannot leave the queue half-changed.
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    /// Whether checks taken at `now` are batched.
    fn batching_at(&self, now: Instant) -> bool {
        self.single_until.is_none_or(|until| now >= until)
    }

    /// Checks one at a time for `pause` from `now`, when a batch failed.
    fn batch_failed_at(&mut self, now: Instant, pause: Duration) {
        self.single_until = Some(now + pause);
    }
}

/// The verdict for each check, in order, and whether a batch was tried and
/// failed. Without `batching`, each signature is checked alone.
fn check_all<'a>(
    checks: impl ExactSizeIterator<Item = &'a Ed25519Check> + Clone,
    batching: bool,
) -> (Vec<bool>, bool) {
    if !batching || checks.len() < 2 {
        return (checks.map(Ed25519Check::verify).collect(), false);
    }
    if all_hold(checks.clone()) {
        return (vec![true; checks.len()], false);
    }
    (checks.map(Ed25519Check::verify).collect(), true)
}

/// Whether every one of `checks` holds, in one batch equation: for random
/// 128-bit `z_i`, with `k_i = SHA-512(R_i || A_i || M_i)`,
///
/// `[8]([-Σ z_i·s_i]B + Σ [z_i]R_i + Σ_A [Σ_{i signed by A} z_i·k_i]A) = 0`,
///
/// after every check met the conditions of [`admissible_key`] and
/// [`admissible_signature`]. Exposed for the
/// differential tests, which hold it to [`verify_one`] on hostile inputs.
///
/// This is the cofactored equation of ed25519-zebra's batches (ZIP 215),
/// with the terms of the signatures made by one key summed into one scalar
/// for that key, as zebra does: every ID token in a batch is signed by the
/// same issuer key, so each certificate costs three terms instead of four.
/// (ed25519-zebra and ed25519-consensus would decompress every key again;
/// the keys here come decompressed.) The cofactor is what makes a batch agree
/// with the single check: multiplied by 8, each signature's error
/// `[s]B - R - [k]A` lands in the prime-order subgroup, where a nonzero error
/// survives any 128-bit weight, so random weights hide a bad signature only
/// with probability 2^-128 per batch. Without it, an error of small order (a
/// torsion component in `R` or in a mixed-order key) vanished whenever its
/// weight was a multiple of its order: refused alone, such a signature
/// passed one batch in eight, or one in two.
pub fn all_hold<'a>(checks: impl ExactSizeIterator<Item = &'a Ed25519Check>) -> bool {
    static BASEPOINT: LazyLock<VartimeEdwardsPrecomputation> =
        LazyLock::new(|| VartimeEdwardsPrecomputation::new([ED25519_BASEPOINT_POINT]));
    let count = checks.len();
    let mut randomness = vec![0u8; 16 * count];
    if rand_core::OsRng.try_fill_bytes(&mut randomness).is_err() {
        return false;
    }
    let mut basepoint_scalar = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * count);
    let mut points = Vec::with_capacity(2 * count);
    let mut key_scalars: Vec<Scalar> = Vec::new();
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut key_index: HashMap<[u8; 32], usize> = HashMap::with_capacity(count);
    for (check, z) in checks.zip(randomness.chunks_exact(16)) {
        let Some((r, s)) = admissible_signature(&check.signature) else {
            return false;
        };
        let k = challenge(&check.key, &check.message, &check.signature);
        let z = Scalar::from(u128::from_le_bytes(z.try_into().expect("16 bytes")));
        basepoint_scalar -= z * s;
        scalars.push(z);
        points.push(r);
        // Each key is checked once, as it joins the batch.
        let key = match key_index.entry(check.key.to_bytes()) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(new) => {
                if !admissible_key(&check.key) {
                    return false;
                }
                key_scalars.push(Scalar::ZERO);
                key_points.push(check.key.to_edwards());
                *new.insert(key_points.len() - 1)
            }
        };
        key_scalars[key] += z * k;
    }
    scalars.append(&mut key_scalars);
    points.append(&mut key_points);
    BASEPOINT
        .vartime_mixed_multiscalar_mul([basepoint_scalar], &scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// What both checks require of a key before their equation: the one
/// canonical encoding of a curve point, so that it has no second spelling,
/// and not of small order, for then anyone can make its signatures.
fn admissible_key(key: &VerifyingKey) -> bool {
    is_canonical_encoding(key.as_bytes()) && !key.is_weak()
}

/// What both checks require of a signature before their equation: `S`
/// reduced (below the group order), so that a signature has one form, and
/// `R` the one canonical encoding of a curve point, so that it has no second
/// spelling. Gives `R` decompressed and `S`.
fn admissible_signature(signature: &Signature) -> Option<(EdwardsPoint, Scalar)> {
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))?;
    let r_bytes = signature.r_bytes();
    if !is_canonical_encoding(r_bytes) {
        return None;
    }
    let r = CompressedEdwardsY(*r_bytes).decompress()?;
    Some((r, s))
}

/// Whether `bytes` are not a second spelling of a point: `y` below the field
/// prime `p = 2^255 - 19`, and no sign on an `x` of zero (the points with
/// `y = 1` or `y = p - 1`). curve25519-dalek reads `y` modulo `p` and
/// negates a zero `x` to zero, so it decompresses both kinds of second
/// spelling to the point of the first.
fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    // p, p - 1 and 1, little-endian, as 255-bit `y` values.
    const P: [u8; 32] = {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    };
    const P_MINUS_ONE: [u8; 32] = {
        let mut p = P;
        p[0] = 0xec;
        p
    };
    const ONE: [u8; 32] = {
        let mut one = [0; 32];
        one[0] = 1;
        one
    };
    let mut y = *bytes;
    y[31] &= 0x7f;
    let negative_x = bytes[31] >> 7 == 1;
    let below_p = y.iter().rev().lt(P.iter().rev());
    below_p && !(negative_x && (y == ONE || y == P_MINUS_ONE))
}

/// `k = SHA-512(R || A || M)`, reduced: the scalar that binds a signature to
/// its key and message.
fn challenge(key: &VerifyingKey, message: &[u8], signature: &Signature) -> Scalar {
    Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(signature.r_bytes())
            .chain_update(key.as_bytes())
            .chain_update(message)
            .finalize()
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use std::sync::Arc;

    impl Ed25519Batcher {
        fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
            lock(self.queue())
        }

        /// No queue has a leader or a waiting check.
        fn all_idle(&self) -> bool {
            self.queues.iter().all(|queue| {
                let queue = lock(queue);
                !queue.leading && queue.waiting.is_empty()
            })
        }
    }

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

    /// Checks as they come in a batch of issuances: a token signed by the
    /// one issuer key, then a proof by that request's own key.
    fn issuance_checks(issuer: &SigningKey, count: usize) -> Vec<Ed25519Check> {
        let mut checks = Vec::new();
        for i in 0..count {
            let token = format!("header.payload of token {i}").into_bytes();
            checks.push(Ed25519Check {
                key: issuer.verifying_key(),
                signature: issuer.sign(&token),
                message: token,
            });
            checks.push(check(true, i));
        }
        checks
    }

    #[test]
    fn the_batch_equation_holds_for_good_signatures_by_one_key_and_by_many() {
        let issuer = SigningKey::generate(&mut rand_core::OsRng);
        for count in [1, 2, 8, 32] {
            let checks = issuance_checks(&issuer, count);
            assert!(all_hold(checks.iter()), "{count} issuances");
            let by_one_key: Vec<_> = checks.into_iter().step_by(2).collect();
            assert!(all_hold(by_one_key.iter()), "{count} tokens");
        }
    }

    #[test]
    fn the_batch_equation_fails_for_any_bad_signature_in_any_place() {
        let issuer = SigningKey::generate(&mut rand_core::OsRng);
        let other = SigningKey::generate(&mut rand_core::OsRng);
        // The group order minus one, as bytes: with a carry of one, adds the order.
        let order_minus_one = (-Scalar::ONE).to_bytes();
        for place in 0..12 {
            let mut spoiled: Vec<(&str, Vec<Ed25519Check>)> = Vec::new();
            let mut edit = |what, change: &dyn Fn(&mut Ed25519Check)| {
                let mut checks = issuance_checks(&issuer, 6);
                change(&mut checks[place]);
                spoiled.push((what, checks));
            };
            edit("another message", &|c| c.message.push(b'!'));
            edit("signed by another key", &|c| {
                c.signature = other.sign(&c.message);
            });
            edit("S + the group order (the same S, not reduced)", &|c| {
                let mut bytes = c.signature.to_bytes();
                let mut carry = 1u16;
                for (s, l) in bytes[32..].iter_mut().zip(order_minus_one) {
                    let sum = u16::from(*s) + u16::from(l) + carry;
                    *s = sum as u8;
                    carry = sum >> 8;
                }
                c.signature = Signature::from_bytes(&bytes);
            });
            edit("R not a curve point", &|c| {
                let off_curve = (2u8..)
                    .map(|y| [[y].as_slice(), &[0; 31]].concat())
                    .find(|y| {
                        CompressedEdwardsY::from_slice(y)
                            .expect("32 bytes")
                            .decompress()
                            .is_none()
                    })
                    .expect("some y is off the curve");
                let mut bytes = c.signature.to_bytes();
                bytes[..32].copy_from_slice(&off_curve);
                c.signature = Signature::from_bytes(&bytes);
            });
            edit("R of another signature", &|c| {
                let mut bytes = c.signature.to_bytes();
                bytes[..32].copy_from_slice(&other.sign(b"x").to_bytes()[..32]);
                c.signature = Signature::from_bytes(&bytes);
            });
            for (what, checks) in spoiled {
                assert!(!checks[place].verify(), "{what} at {place}: alone");
                assert!(!all_hold(checks.iter()), "{what} at {place}: in the batch");
                let (verdicts, failed) = check_all(checks.iter(), true);
                assert!(failed);
                let expected: Vec<bool> = (0..checks.len()).map(|i| i != place).collect();
                assert_eq!(verdicts, expected, "{what} at {place}");
            }
        }
        // Two errors that cancel in a sum without the random weights.
        let mut checks = issuance_checks(&issuer, 6);
        for (place, delta) in [(1, Scalar::ONE), (3, -Scalar::ONE)] {
            let mut bytes = checks[place].signature.to_bytes();
            let s = Scalar::from_canonical_bytes(*checks[place].signature.s_bytes())
                .expect("a canonical S");
            bytes[32..].copy_from_slice((s + delta).as_bytes());
            checks[place].signature = Signature::from_bytes(&bytes);
        }
        assert!(!all_hold(checks.iter()));
        // Two good signatures of one key, each with the other's message: the
        // summed term of that key must not hide the swap.
        let mut checks = issuance_checks(&issuer, 6);
        let (first, second) = (checks[0].message.clone(), checks[4].message.clone());
        checks[0].message = second;
        checks[4].message = first;
        assert!(!all_hold(checks.iter()));
    }

    #[test]
    fn canonical_encodings_are_those_that_compress_back_to_themselves() {
        // Every `y` near 0 and near p, with and without the sign bit: the
        // only places where second spellings exist; then random bytes.
        let mut encodings = Vec::new();
        for low in 0u8..40 {
            let mut near_zero = [0u8; 32];
            near_zero[0] = low;
            let mut near_p = [0xffu8; 32];
            near_p[31] = 0x7f;
            near_p[0] = 0xff - low;
            encodings.extend([near_zero, near_p]);
        }
        for _ in 0..200 {
            let mut random = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut random);
            encodings.push(random);
        }
        let mut second_spellings = 0;
        for mut bytes in encodings {
            for sign in [0, 0x80] {
                bytes[31] = (bytes[31] & 0x7f) | sign;
                let Some(point) = CompressedEdwardsY(bytes).decompress() else {
                    continue;
                };
                let round_trip = point.compress().to_bytes() == bytes;
                assert_eq!(is_canonical_encoding(&bytes), round_trip, "{bytes:02x?}");
                second_spellings += usize::from(!round_trip);
            }
        }
        // y = p, p + 1 (with either sign), 1 and p - 1 with a sign, and the
        // y + p of each small y on the curve.
        assert!(second_spellings >= 6, "{second_spellings}");
    }

    #[test]
    fn one_bad_signature_fails_alone() {
        let checks: Vec<_> = (0..10).map(|i| check(i != 3, i)).collect();
        let expected: Vec<bool> = (0..10).map(|i| i != 3).collect();
        assert_eq!(check_all(checks.iter(), true), (expected.clone(), true));
        assert_eq!(check_all(checks.iter(), false), (expected, false));
        assert_eq!(check_all(checks[..1].iter(), true), (vec![true], false));
        assert_eq!(check_all(checks[3..4].iter(), true), (vec![false], false));
        assert_eq!(check_all(checks[4..].iter(), true), (vec![true; 6], false));
    }

    #[test]
    fn a_check_prints_no_message() {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let message = b"eyJhbGciOiJFZERTQSJ9.eyJlbWFpbCI6ImFsaWNlQGV4YW1wbGUuY29tIn0".to_vec();
        let length = message.len();
        let check = Ed25519Check {
            key: key.verifying_key(),
            signature: key.sign(&message),
            message,
        };
        let shown = format!("{check:?}");
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(shown.contains(&format!("message_len: {length}")), "{shown}");
    }

    #[test]
    fn a_leader_that_panics_resigns() {
        let queue = Mutex::new(Queue::default());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lock(&queue).leading = true;
            let _resign = ResignOnPanic(&queue);
            panic!("a check panicked");
        }));
        assert!(panicked.is_err());
        assert!(!lock(&queue).leading);
        // Without a panic, leadership is the loop's to give up.
        lock(&queue).leading = true;
        drop(ResignOnPanic(&queue));
        assert!(lock(&queue).leading);
    }

    #[test]
    fn a_failed_batch_pauses_batching_for_the_cool_down() {
        let mut queue = Queue::default();
        let start = Instant::now();
        assert!(queue.batching_at(start));
        queue.batch_failed_at(start, SINGLE_CHECKS_AFTER_FAILURE);
        assert!(!queue.batching_at(start));
        assert!(!queue.batching_at(start + SINGLE_CHECKS_AFTER_FAILURE / 2));
        assert!(queue.batching_at(start + SINGLE_CHECKS_AFTER_FAILURE));
    }

    #[tokio::test]
    async fn a_forged_signature_switches_to_single_checks_with_right_verdicts() {
        let batcher = Ed25519Batcher::default();
        let checks: Vec<_> = (0..8).map(|i| check(i != 5, i)).collect();
        let expected: Vec<bool> = (0..8).map(|i| i != 5).collect();
        assert_eq!(batcher.verify_all(checks).await, expected);
        let paused_until = batcher.lock().single_until.expect("batching paused");
        assert!(paused_until > Instant::now());
        // Checked one at a time while paused, with the same verdicts.
        let checks: Vec<_> = (0..8).map(|i| check(i % 3 != 0, i)).collect();
        let expected: Vec<bool> = (0..8).map(|i| i % 3 != 0).collect();
        assert_eq!(batcher.verify_all(checks).await, expected);
        // Single checks do not extend the pause.
        assert_eq!(batcher.lock().single_until, Some(paused_until));
        // Once it is over, a good batch passes as a batch and leaves it over.
        batcher.lock().single_until = Some(Instant::now());
        let checks: Vec<_> = (0..8).map(|i| check(true, i)).collect();
        assert_eq!(batcher.verify_all(checks).await, vec![true; 8]);
        assert!(batcher.lock().batching_at(Instant::now()));
        assert!(batcher.verify_all(Vec::new()).await.is_empty());
        assert!(!batcher.lock().leading);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_split_batch_answers_every_check_from_both_halves() {
        let batcher = Ed25519Batcher::default();
        let count = 2 * SPLIT_AT + 3;
        let checks: Vec<_> = (0..count).map(|i| check(i != count - 2, i)).collect();
        let expected: Vec<bool> = (0..count).map(|i| i != count - 2).collect();
        assert_eq!(batcher.verify_all(checks).await, expected);
        // The forged check was in the half checked on the blocking pool.
        assert!(batcher.lock().single_until.is_some());
        assert!(!batcher.lock().leading);
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
        assert!(batcher.all_idle(), "leadership released");
    }

    /// As `serve_router` serves: one single-threaded runtime per thread, one
    /// batcher for all.
    #[test]
    fn threads_with_runtimes_of_their_own_get_their_own_verdicts() {
        let batcher = Arc::new(Ed25519Batcher::default());
        let threads: Vec<_> = (0..3)
            .map(|thread| {
                let batcher = batcher.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("runtime");
                    runtime.block_on(async {
                        let tasks: Vec<_> = (0..60)
                            .map(|i| {
                                let batcher = batcher.clone();
                                let good = (i + thread) % 5 != 0;
                                tokio::spawn(
                                    async move { (good, batcher.verify(check(good, i)).await) },
                                )
                            })
                            .collect();
                        for task in tasks {
                            let (good, verdict) = task.await.expect("task");
                            assert_eq!(verdict, good);
                        }
                    });
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert!(batcher.all_idle());
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
        assert!(!batcher.lock().leading);
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
