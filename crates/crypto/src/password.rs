//! argon2id password hashing, off the async runtime.
//!
//! Each hash takes ~19 MiB and tens of milliseconds of one core. Hashes run on
//! threads of their own behind a semaphore, so a login flood queues here
//! instead of exhausting memory; and those threads run at a lower scheduling
//! priority (nice +10 on Linux), so while they are busy the runtime's
//! threads — `Verify`, every other request, the database's own processes —
//! are scheduled first. A flood of logins slows logins, not the rest.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::CryptoError;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
fn argon2() -> Result<Argon2<'static>, CryptoError> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The nice value of the hashing threads (0 is the default, 19 the lowest).
const HASHING_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on a bounded pool.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// The hashing threads' queue; they stop when the last clone is dropped.
    jobs: Arc<std::sync::mpsc::Sender<Job>>,
    /// Verified against when the user does not exist, so "unknown user" costs
    /// the same as "wrong password" and the two cannot be told apart by timing.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher running at most `max_parallel` hashes at once. Computes the
    /// dummy hash (blocking, once, at start-up).
    pub fn new(max_parallel: usize) -> Result<Self, CryptoError> {
        let random: [u8; 16] = crate::random::bytes()?;
        let dummy = hash_blocking(&format!("{random:?}"))?;
        let threads = max_parallel.max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hashing_thread(&queue))
                .map_err(|e| {
                    CryptoError::PasswordHash(format!("cannot start a hashing thread: {e}"))
                })?;
        }
        Ok(Self {
            jobs: Arc::new(jobs),
            permits: Arc::new(Semaphore::new(threads)),
            dummy_hash: dummy.into(),
        })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: String) -> Result<String, CryptoError> {
        self.run(move || hash_blocking(&password)).await?
    }

    /// Whether `password` matches `phc`; with `None` (no such user) it verifies
    /// against the dummy hash and answers `false`, taking the same time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, CryptoError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.to_string());
        let matched = self.run(move || verify_blocking(&password, &phc)).await??;
        Ok(known && matched)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CryptoError> {
        // The permit moves into the blocking task: a caller that gives up
        // (cancelled request) does not free a slot while its hash still runs.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CryptoError::PoolClosed)?;
        let span = tracing::Span::current();
        let (done, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _permit = permit;
                let _ = done.send(span.in_scope(work));
            }))
            .map_err(|_| CryptoError::PoolClosed)?;
        answer
            .instrument(tracing::Span::current())
            .await
            .map_err(|_| CryptoError::PoolClosed)
    }
}

/// Runs hashing jobs until the queue closes, at a lower priority.
fn hashing_thread(queue: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for a job, not while it runs.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A job that panics answers nothing (its caller sees `PoolClosed`)
        // and leaves the thread to take the next one.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Lowers the calling thread's scheduling priority to [`HASHING_NICE`]:
/// on Linux the nice value is per thread, so the runtime's threads keep
/// theirs. Elsewhere hashing runs at the default priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `setpriority` reads three integers and changes only the
        // calling thread (who = 0); its failure leaves the priority as it was.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICE) };
        if result != 0 {
            tracing::debug!("could not lower the hashing thread's priority");
        }
    }
}

fn hash_blocking(password: &str) -> Result<String, CryptoError> {
    let salt_bytes: [u8; 16] = crate::random::bytes()?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::PasswordHash(e.to_string()))
}

fn verify_blocking(password: &str, phc: &str) -> Result<bool, CryptoError> {
    let parsed = PasswordHash::new(phc).map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    // Parameters come from the stored hash, so old hashes keep verifying after
    // the defaults are raised.
    Ok(argon2()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2).unwrap();
        let hash = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct horse"));
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
    }

    /// The nice value of the calling thread (field 19 of its `stat`).
    #[cfg(target_os = "linux")]
    fn nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let fields = stat.rsplit(')').next().unwrap();
        fields.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_below_the_runtimes_priority() {
        let hasher = PasswordHasher::new(1).unwrap();
        let runtime = nice();
        let hashing = hasher.run(nice).await.unwrap();
        assert_eq!(hashing, HASHING_NICE.max(runtime));
        assert_eq!(nice(), runtime, "the runtime's thread keeps its priority");
    }
}
