//! The allocator policy shared by the `anyforge` binary and the benchmarks
//! that stand in for it (both use mimalloc as the global allocator).

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (mimalloc.h);
/// libmimalloc-sys names the options around it but not this one.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped for reuse instead of returning it to the OS a
/// second after it is freed (mimalloc's default). Decoders, the backbone
/// and training free large buffers and allocate them again a second or
/// more later; purged, each came back as fresh pages the kernel had to
/// zero: a quarter of a training step's profile, and 15-20% of a Janus VQ
/// decode (docs/codec-benchmarks.md). The process keeps its peak memory
/// mapped; an operator who wants it returned sets mimalloc's own
/// `MIMALLOC_PURGE_DELAY` (milliseconds), which this leaves alone.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a plain integer option; mimalloc reads options on use.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    };
}
