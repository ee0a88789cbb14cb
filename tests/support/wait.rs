//! Waiting for something to become true, always with a deadline.
//!
//! A test that waits for the CA, a host or the clock polls a probe through
//! [`eventually`] (or [`eventually_async`] inside a tokio test) instead of a
//! hand-written loop or a guessed sleep. The wait is bounded: when the
//! deadline passes, the test fails with what the probe saw last, so a failure
//! says what never happened and what was there instead.

use std::fmt::Display;
use std::future::Future;
use std::panic::Location;
use std::time::{Duration, Instant};

/// The first pause between two probes; it doubles up to [`SLOWEST`], so a
/// quick condition is seen at once and a slow one is not probed in a spin.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause between two probes.
const SLOWEST: Duration = Duration::from_millis(500);

/// Runs `probe` until it returns `Ok`, and returns that value. The probe's
/// `Err` says what it saw instead; if `within` passes first, the test fails
/// with the last one.
#[track_caller]
pub fn eventually<T, E: Display>(within: Duration, probe: impl FnMut() -> Result<T, E>) -> T {
    poll_until(within, probe)
        .unwrap_or_else(|last| panic!("not the case within {within:?}; last seen: {last}"))
}

/// [`eventually`] for a probe that awaits (an HTTP request, a client call).
#[track_caller]
pub fn eventually_async<T, E, F>(
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> impl Future<Output = T>
where
    E: Display,
    F: Future<Output = Result<T, E>>,
{
    // An async fn cannot report its caller; this one captures it up front.
    let caller = Location::caller();
    async move {
        let deadline = Instant::now() + within;
        let mut pause = FIRST_PAUSE;
        loop {
            let last = match probe().await {
                Ok(value) => return value,
                Err(last) => last,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("{caller}: not the case within {within:?}; last seen: {last}");
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(SLOWEST);
        }
    }
}

/// The loop behind [`eventually`], for support code that reports a timeout
/// as an error instead of failing the test: `Err` is the probe's last answer.
pub(crate) fn poll_until<T, E>(
    within: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    loop {
        let last = match probe() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(SLOWEST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_success() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), || {
            calls += 1;
            if calls < 3 {
                Err(format!("call {calls}"))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(value, 3);
    }

    #[test]
    fn fails_with_what_it_last_saw() {
        let outcome = std::panic::catch_unwind(|| {
            eventually(Duration::from_millis(100), || Err::<(), _>("still pending"))
        });
        let message = *outcome.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("last seen: still pending"), "{message}");
    }

    #[test]
    fn probes_once_more_at_the_deadline() {
        let started = Instant::now();
        let last = poll_until(Duration::from_millis(200), || {
            Err::<(), _>(started.elapsed())
        })
        .unwrap_err();
        assert!(last >= Duration::from_millis(200), "{last:?}");
    }

    #[tokio::test]
    async fn the_async_form_returns_the_first_success() {
        let mut calls = 0;
        let value = eventually_async(Duration::from_secs(5), || {
            calls += 1;
            let seen = calls;
            async move {
                if seen < 2 {
                    Err("not yet")
                } else {
                    Ok(seen)
                }
            }
        })
        .await;
        assert_eq!(value, 2);
    }
}
