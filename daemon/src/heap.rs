//! The heap: glibc's allocator tuned for inference (large blocks kept for
//! reuse between forward passes), and freed memory given back when a model
//! is unloaded, or when the workers fall idle after a large request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Keeps large freed blocks (activations of tens of MB) in the heap for
/// reuse instead of unmapping them, so that every forward pass does not
/// page-fault its buffers in again: about 10% faster on a DistilBERT-base
/// batch, and 20% on a batch of four dpt-large images, whose 38 MB
/// activations are over the largest mmap threshold glibc allows (32 MiB),
/// so no block is mapped on its own. Every thread allocates from the one
/// main heap: a worker thread would otherwise get an arena of its own,
/// made of 64 MB heaps that blocks of hundreds of MB do not fit, so its
/// activations were mapped and faulted in afresh on every pass (a batch of
/// four 640x480 GLPN images: 5.1 s in the daemon against 3.9 s on a
/// program's main thread; 4.0 s with one arena). Small blocks stay in each
/// thread's cache, so threads rarely meet on the arena's lock. Memory
/// still goes back to the system when it matters (see
/// [`release_free_memory`]). Glibc's MALLOC_MMAP_THRESHOLD_,
/// MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_ and MALLOC_ARENA_MAX
/// variables, when set, win.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only changes allocator parameters; called
            // first thing in main, before other threads allocate.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt only changes allocator parameters; 32 MiB is
            // glibc's largest allowed mmap threshold on 64-bit.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) };
        }
        if std::env::var_os("MALLOC_MMAP_MAX_").is_none() {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) };
        }
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) };
        }
    }
}

/// Gives freed heap memory back to the system (the trim threshold above
/// keeps it otherwise), so that unloading a model, or the end of a request
/// that needed gigabytes for a moment, shows in the resident memory.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Batches running now, over every worker, and when the last one ended
/// (milliseconds since [`epoch`]).
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static LAST_END_MS: AtomicU64 = AtomicU64::new(0);

/// How long the workers must have been idle before freed memory is given
/// back: trimming between a model's back-to-back batches would only make
/// the next one fault its buffers in again (half a second of a DETR
/// image's 1.4 s).
const QUIET: Duration = Duration::from_secs(1);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// A batch running on a worker, counted until dropped.
pub struct Running(());

impl Running {
    pub fn start() -> Self {
        RUNNING.fetch_add(1, Ordering::AcqRel);
        Running(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        LAST_END_MS.store(now_ms(), Ordering::Release);
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether no batch has run for [`QUIET`].
fn quiet() -> bool {
    RUNNING.load(Ordering::Acquire) == 0
        && now_ms().saturating_sub(LAST_END_MS.load(Ordering::Acquire)) >= QUIET.as_millis() as u64
}

/// [`release_free_memory`] once the workers have been idle for [`QUIET`],
/// and again 4 seconds later (one such wait at a time), once the transport
/// has dropped its copies of the request that needed the memory: after a
/// large or long batch.
pub fn release_free_memory_soon() {
    static WAITING: AtomicBool = AtomicBool::new(false);
    if WAITING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new().name("heap-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(QUIET);
            if quiet() {
                break;
            }
        }
        release_free_memory();
        std::thread::sleep(Duration::from_secs(4));
        if RUNNING.load(Ordering::Acquire) == 0 {
            release_free_memory();
        }
        WAITING.store(false, Ordering::Release);
    });
    if spawned.is_err() {
        WAITING.store(false, Ordering::Release);
    }
}
