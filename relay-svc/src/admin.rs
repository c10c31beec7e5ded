//! The admin secret that `AuthorizeReset` asks for: compared in constant
//! time, and guessed at most a few times a minute.

use crate::refusal::Refusal;
use sha2::{Digest, Sha512};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Wrong secrets allowed within [`FAILURE_WINDOW`] before every attempt is refused.
pub const MAX_FAILURES: usize = 5;
/// How long a wrong secret counts against [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Guards the relay's admin secret. Shared by all callers (`&self`), so the
/// limit on wrong guesses holds across members and connections.
#[derive(Debug)]
pub struct AdminGate {
    /// SHA-512 of the secret; `None` when resets are disabled.
    digest: Option<[u8; 64]>,
    /// When the latest wrong secrets came, oldest first, at most [`MAX_FAILURES`].
    failures: Mutex<VecDeque<Instant>>,
}

impl AdminGate {
    /// A gate for `secret`. `None` (or an empty secret, which anyone could
    /// give) disables resets.
    pub fn new(secret: Option<String>) -> Self {
        let digest = secret.filter(|s| !s.is_empty()).map(|s| sha512(&s));
        Self {
            digest,
            failures: Mutex::new(VecDeque::with_capacity(MAX_FAILURES)),
        }
    }

    /// Checks `given` at time `now`. Refuses with `FAILED_PRECONDITION` when
    /// resets are disabled, `RESOURCE_EXHAUSTED` (right secret or not) after
    /// [`MAX_FAILURES`] wrong ones within [`FAILURE_WINDOW`], and
    /// `PERMISSION_DENIED` for a wrong secret.
    pub fn check(&self, given: &str, now: Instant) -> Result<(), Refusal> {
        let Some(digest) = &self.digest else {
            return Err(Refusal::ResetsDisabled);
        };
        let mut failures = self.failures();
        if let Some(wait) = lockout_left(&failures, now) {
            return Err(too_many(wait));
        }
        if digests_equal(&sha512(given), digest) {
            return Ok(());
        }
        record_failure(&mut failures, now);
        tracing::warn!(recent = failures.len(), "reset refused: wrong admin secret");
        Err(Refusal::WrongSecret)
    }

    fn failures(&self) -> MutexGuard<'_, VecDeque<Instant>> {
        // The queue is valid after any panic (one push or pop at a time).
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long attempts stay refused at `now`, if [`MAX_FAILURES`] wrong
/// secrets came within the last [`FAILURE_WINDOW`].
fn lockout_left(failures: &VecDeque<Instant>, now: Instant) -> Option<Duration> {
    if failures.len() < MAX_FAILURES {
        return None;
    }
    let oldest = *failures.front()?;
    FAILURE_WINDOW
        .checked_sub(now.saturating_duration_since(oldest))
        .filter(|left| !left.is_zero())
}

/// Remembers a wrong secret at `now`, keeping only the latest [`MAX_FAILURES`].
fn record_failure(failures: &mut VecDeque<Instant>, now: Instant) {
    if failures.len() >= MAX_FAILURES {
        failures.pop_front();
    }
    failures.push_back(now);
}

/// The refusal while locked out, with whole seconds rounded up.
fn too_many(wait: Duration) -> Refusal {
    Refusal::LockedOut(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

fn sha512(text: &str) -> [u8; 64] {
    Sha512::digest(text.as_bytes()).into()
}

/// Compares all 64 bytes with no early exit, so timing tells nothing; the
/// digests have a fixed length, so neither does the secret's length.
fn digests_equal(a: &[u8; 64], b: &[u8; 64]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    fn gate() -> AdminGate {
        AdminGate::new(Some("s3cret".to_string()))
    }

    fn code(result: Result<(), Refusal>) -> Code {
        result.err().map_or(Code::Ok, |r| Status::from(r).code())
    }

    #[test]
    fn disabled_without_a_secret() {
        let now = Instant::now();
        for gate in [AdminGate::new(None), AdminGate::new(Some(String::new()))] {
            let err = Status::from(gate.check("", now).expect_err("disabled"));
            assert_eq!(err.code(), Code::FailedPrecondition);
            assert_eq!(
                err.message(),
                "resets are disabled: the relay was started without --admin-secret"
            );
        }
    }

    #[test]
    fn right_and_wrong_secrets() {
        let (gate, now) = (gate(), Instant::now());
        assert_eq!(code(gate.check("s3cret", now)), Code::Ok);
        let err = Status::from(gate.check("s3cre", now).expect_err("wrong"));
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.message(), "wrong admin secret");
        assert_eq!(code(gate.check("s3cretx", now)), Code::PermissionDenied);
        assert_eq!(code(gate.check("", now)), Code::PermissionDenied);
        assert_eq!(code(gate.check("s3cret", now)), Code::Ok);
    }

    #[test]
    fn five_wrong_lock_everyone_out_until_the_window_passes() {
        let (gate, t0) = (gate(), Instant::now());
        for i in 0..5 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(code(gate.check("guess", at)), Code::PermissionDenied);
        }
        let err = Status::from(
            gate.check("s3cret", t0 + Duration::from_millis(4500))
                .expect_err("locked out, right secret or not"),
        );
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(
            err.message(),
            "too many wrong admin secrets; try again in 56 s"
        );
        let just_before = t0 + FAILURE_WINDOW - Duration::from_millis(1);
        assert_eq!(
            code(gate.check("s3cret", just_before)),
            Code::ResourceExhausted
        );
        assert_eq!(code(gate.check("s3cret", t0 + FAILURE_WINDOW)), Code::Ok);
    }

    #[test]
    fn refused_attempts_do_not_extend_the_lockout() {
        let (gate, t0) = (gate(), Instant::now());
        for _ in 0..5 {
            let _ = gate.check("guess", t0);
        }
        for s in 1..60 {
            let at = t0 + Duration::from_secs(s);
            assert_eq!(code(gate.check("guess", at)), Code::ResourceExhausted);
        }
        assert_eq!(code(gate.check("s3cret", t0 + FAILURE_WINDOW)), Code::Ok);
    }

    #[test]
    fn wrong_secrets_spread_out_never_lock() {
        let (gate, t0) = (gate(), Instant::now());
        for i in 0..20 {
            let at = t0 + Duration::from_secs(i * 13);
            assert_eq!(code(gate.check("guess", at)), Code::PermissionDenied);
        }
    }

    #[test]
    fn after_a_lockout_guessing_stays_slow() {
        let (gate, t0) = (gate(), Instant::now());
        for i in 0..5 {
            let _ = gate.check("guess", t0 + Duration::from_secs(i));
        }
        // The window slides: at 60 s only the first wrong secret has aged out.
        let t60 = t0 + FAILURE_WINDOW;
        assert_eq!(code(gate.check("guess", t60)), Code::PermissionDenied);
        let err = Status::from(gate.check("s3cret", t60).expect_err("locked again"));
        assert_eq!(
            err.message(),
            "too many wrong admin secrets; try again in 1 s"
        );
    }

    #[test]
    fn digests_differ_in_any_byte() {
        let a = sha512("x");
        for i in 0..64 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!digests_equal(&a, &b));
        }
        assert!(digests_equal(&a, &sha512("x")));
    }
}
