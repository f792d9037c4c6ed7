//! The allocation meter: how many bytes the current thread holds, so that an expression's memory
//! limit can be checked while it runs.
//!
//! [`Metered`] wraps the process's global allocator and keeps, per thread, the bytes allocated
//! minus the bytes freed there. [`live_bytes`] reads it; a [`super::Budget`] takes a reading when an
//! evaluation starts and compares at every checkpoint. The binary installs it around its allocator
//! (`crates/cli/src/main.rs`); where it is not installed (library tests) the reading never moves and
//! only the size checks made before large single operations hold.
//!
//! This is the one place in the workspace with `unsafe` code: a `GlobalAlloc` implementation must
//! be declared unsafe. It forwards every call unchanged and only adds to a thread-local counter,
//! which needs no allocation and has no destructor, so it is safe to touch from inside the
//! allocator, also while a thread is being torn down.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread since it started (negative when it frees
    /// memory that another thread allocated).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add(bytes: i64) {
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_add(bytes)));
}

/// Bytes allocated minus bytes freed on the current thread so far (see [`Metered`]); 0 when no
/// metered allocator is installed.
pub fn live_bytes() -> i64 {
    LIVE.try_with(Cell::get).unwrap_or(0)
}

/// A global allocator that counts, per thread, what it hands out and takes back; `A` does the work.
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: weft_core::expr::Metered<std::alloc::System> =
///     weft_core::expr::Metered(std::alloc::System);
/// ```
pub struct Metered<A>(pub A);

// SAFETY: every method forwards to `A` with the same arguments and returns what `A` returned, so
// `A`'s guarantees hold unchanged; the counter update neither allocates nor unwinds.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Metered<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: forwarded as received.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: forwarded as received.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        // SAFETY: forwarded as received.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded as received.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
