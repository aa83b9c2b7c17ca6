//! A counting global allocator.
//!
//! A bench binary installs it with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;`. It counts
//! allocations and allocated bytes per thread role (see
//! [`super::threads::Role`]) and the live heap bytes of the whole process.
//! Binaries that do not install it read zeros; [`is_installed`] tells.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

use super::threads::{current_role, Role};

pub struct CountingAlloc;

// Each role's counters sit on their own cache line, so that the server and
// the client threads do not fight over one line on every allocation.
#[repr(align(128))]
struct RoleCounters {
    allocs: AtomicU64,
    bytes: AtomicU64,
    /// Bytes allocated minus bytes freed by threads of this role. Memory is
    /// charged to whoever frees it; in this suite server memory is freed by
    /// server threads (client and server share no heap objects), so this is
    /// the role's live heap while a server runs.
    live: AtomicI64,
}

#[allow(clippy::declare_interior_mutable_const)] // Only used to initialise the static array.
const ZERO: RoleCounters = RoleCounters {
    allocs: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    live: AtomicI64::new(0),
};
static PER_ROLE: [RoleCounters; Role::COUNT] = [ZERO; Role::COUNT];

#[repr(align(128))]
struct Live(AtomicI64);
static LIVE_BYTES: Live = Live(AtomicI64::new(0));
static PEAK_LIVE_BYTES: Live = Live(AtomicI64::new(0));
static PEAK_SERVER_LIVE_BYTES: Live = Live(AtomicI64::new(0));
static INSTALLED: AtomicBool = AtomicBool::new(false);

#[inline]
fn on_alloc(size: usize) {
    let role = current_role();
    let c = &PER_ROLE[role as usize];
    c.allocs.fetch_add(1, Relaxed);
    c.bytes.fetch_add(size as u64, Relaxed);
    let role_live = c.live.fetch_add(size as i64, Relaxed) + size as i64;
    if role == Role::Server && role_live > PEAK_SERVER_LIVE_BYTES.0.load(Relaxed) {
        PEAK_SERVER_LIVE_BYTES.0.fetch_max(role_live, Relaxed);
    }
    let live = LIVE_BYTES.0.fetch_add(size as i64, Relaxed) + size as i64;
    if live > PEAK_LIVE_BYTES.0.load(Relaxed) {
        PEAK_LIVE_BYTES.0.fetch_max(live, Relaxed);
    }
}

#[inline]
fn on_dealloc(size: usize) {
    PER_ROLE[current_role() as usize]
        .live
        .fetch_sub(size as i64, Relaxed);
    LIVE_BYTES.0.fetch_sub(size as i64, Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        on_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // A realloc is one allocation of the new size and the release of
            // the old block, as far as the live-heap count is concerned.
            on_dealloc(layout.size());
            on_alloc(new_size);
        }
        p
    }
}

impl CountingAlloc {
    /// Call once from the binary that installs the allocator, so that
    /// readers know the counters are real.
    pub fn mark_installed() {
        INSTALLED.store(true, Relaxed);
    }
}

/// Whether the running binary counts allocations.
pub fn is_installed() -> bool {
    INSTALLED.load(Relaxed)
}

/// Counters at one instant; subtract two with [`AllocSample::since`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocSample {
    pub server_allocs: u64,
    pub server_bytes: u64,
    pub client_allocs: u64,
    pub client_bytes: u64,
    /// Live heap charged to server threads (see `RoleCounters::live`).
    pub server_live_bytes: i64,
    /// Live heap of the whole process.
    pub live_bytes: i64,
}

impl AllocSample {
    pub fn now() -> AllocSample {
        let s = &PER_ROLE[Role::Server as usize];
        let c = &PER_ROLE[Role::Client as usize];
        AllocSample {
            server_allocs: s.allocs.load(Relaxed),
            server_bytes: s.bytes.load(Relaxed),
            client_allocs: c.allocs.load(Relaxed),
            client_bytes: c.bytes.load(Relaxed),
            server_live_bytes: s.live.load(Relaxed),
            live_bytes: LIVE_BYTES.0.load(Relaxed),
        }
    }

    /// Allocation counts since `earlier`; the live figures become changes
    /// in live heap (negative when memory was released).
    pub fn since(self, earlier: AllocSample) -> AllocSample {
        AllocSample {
            server_allocs: self.server_allocs - earlier.server_allocs,
            server_bytes: self.server_bytes - earlier.server_bytes,
            client_allocs: self.client_allocs - earlier.client_allocs,
            client_bytes: self.client_bytes - earlier.client_bytes,
            server_live_bytes: self.server_live_bytes - earlier.server_live_bytes,
            live_bytes: self.live_bytes - earlier.live_bytes,
        }
    }
}

/// Restarts the peak-live-bytes watermarks at the current live bytes.
pub fn reset_peak_live_bytes() {
    PEAK_LIVE_BYTES.0.store(LIVE_BYTES.0.load(Relaxed), Relaxed);
    let server = PER_ROLE[Role::Server as usize].live.load(Relaxed);
    PEAK_SERVER_LIVE_BYTES.0.store(server, Relaxed);
}

/// The highest live heap charged to server threads since the last
/// [`reset_peak_live_bytes`].
pub fn peak_server_live_bytes() -> i64 {
    PEAK_SERVER_LIVE_BYTES.0.load(Relaxed)
}

/// The highest live heap seen since the last [`reset_peak_live_bytes`].
pub fn peak_live_bytes() -> i64 {
    PEAK_LIVE_BYTES.0.load(Relaxed)
}
