//! Asking the allocator to return freed memory to the operating system.

/// Returns the free pages of every allocator arena to the system (glibc's
/// `malloc_trim`); `true` when some were. Elsewhere, nothing to do.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own bookkeeping, under its locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
