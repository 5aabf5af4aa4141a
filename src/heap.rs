//! How the process heap treats the large, short-lived buffers of a forward
//! pass (a 512-token prefill of the Llama-3.2-1B shape allocates and frees
//! about 850 MB of activations and attention scores).
//!
//! glibc's malloc serves such buffers with fresh `mmap`s and returns them to
//! the kernel on free, so every pass faults in and zeroes its memory again:
//! a quarter of a prefill's time went to the kernel's page clearing. This
//! keeps freed memory in the heap for the next pass instead (as an engine
//! with preallocated buffers would), at the price of a resident size that
//! stays at its high-water mark.

/// Keeps freed memory up to glibc's largest `mmap` threshold (32 MiB a
/// buffer) in the heap for reuse and never trims the heap's top; returns
/// whether the allocator took the settings (always `false` off glibc).
pub fn reuse_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's `mallopt` parameters (malloc.h); std's libc has no binding.
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        /// glibc's ceiling for the mmap threshold on 64-bit targets.
        const MMAP_THRESHOLD_MAX: i32 = 32 << 20;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes malloc's tuning parameters; it is
        // called before the model's buffers exist and is thread-safe.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
                && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_settings() {
        assert_eq!(
            super::reuse_freed_memory(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }
}
