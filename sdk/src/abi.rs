//! The C ABI between the daemon and a plugin.
//!
//! A plugin is a shared library exporting one symbol, [`ENTRY_SYMBOL`], a
//! function that returns a pointer to a static [`PluginTable`]. The table's
//! first field is the ABI version; the daemon reads it before anything else
//! and refuses the plugin when it differs from [`ABI_VERSION`]. Everything else
//! crosses as protobuf bytes (`inferd.plugin.v1`), so the two sides may be
//! built by different compilers, or written in different languages.
//!
//! Memory: bytes the plugin returns are owned by the plugin and handed back
//! through `free`; bytes the daemon passes in are borrowed for the call only.

use std::ffi::c_void;

/// Version of [`PluginTable`]'s layout and of the meaning of its functions.
/// Version 2 added `run_joined` (continuous batching); the daemon runs
/// every batch through it.
pub const ABI_VERSION: u32 = 2;

/// Name of the exported entry point (NUL-terminated, for `dlsym`).
pub const ENTRY_SYMBOL: &[u8] = b"inferd_plugin_v1\0";

/// Signature of the exported entry point.
pub type EntryPoint = unsafe extern "C" fn() -> *const PluginTable;

/// Bytes borrowed for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ByteSlice {
    pub ptr: *const u8,
    pub len: usize,
}

impl ByteSlice {
    pub fn new(bytes: &[u8]) -> Self {
        ByteSlice {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive the returned slice.
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

/// Bytes allocated by the plugin; the receiver gives them back with `free`.
#[repr(C)]
pub struct OwnedBytes {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl OwnedBytes {
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        OwnedBytes {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }

    /// # Safety
    /// Must come from [`OwnedBytes::from_vec`] in the same library.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        Vec::from_raw_parts(self.ptr, self.len, self.cap)
    }

    /// # Safety
    /// `ptr`/`len` must describe live bytes.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

/// Called by a plugin during `run_stream` with a partial response (an
/// encoded `TaskResponse`) for request `index` of the batch, or with an
/// empty chunk to ask whether that request is still wanted. Returns false
/// when its client has gone away: the plugin should stop working on it.
pub type EmitFn = unsafe extern "C" fn(ctx: *mut c_void, index: usize, chunk: ByteSlice) -> bool;

/// Called by a plugin during `run_joined` to take up to `max` requests that
/// arrived for its model since the batch started (continuous batching: they
/// join the running work). Returns an encoded `Batch`, empty when none
/// waits; the bytes stay valid until the next call of `take` or the end of
/// `run_joined`. Requests are numbered on from those already given: the
/// batch's are 0..n, the first taken is n, and so on.
pub type TakeFn = unsafe extern "C" fn(ctx: *mut c_void, max: usize) -> ByteSlice;

/// Called by a plugin during `run_joined` with the final answer (an encoded
/// `TaskResponse`) of request `index` as soon as it is done, so that its
/// client has it while the rest of the batch runs on. Each request is
/// finished once.
pub type FinishFn = unsafe extern "C" fn(ctx: *mut c_void, index: usize, response: ByteSlice);

/// What the daemon offers a plugin during `run_joined`, with one context.
#[repr(C)]
pub struct HostCalls {
    pub emit: EmitFn,
    pub take: TakeFn,
    pub finish: FinishFn,
}

/// The table a plugin exports. Field order is part of the ABI.
#[repr(C)]
pub struct PluginTable {
    /// Must be [`ABI_VERSION`].
    pub abi_version: u32,
    /// Returns an encoded `Manifest`.
    pub manifest: unsafe extern "C" fn() -> OwnedBytes,
    /// Takes an encoded `LoadRequest`, returns an encoded `LoadResult`; on
    /// success `*instance` is set to the new instance.
    pub load: unsafe extern "C" fn(request: ByteSlice, instance: *mut *mut c_void) -> OwnedBytes,
    /// Takes an encoded `Batch`, returns an encoded `BatchResult`.
    pub run: unsafe extern "C" fn(instance: *mut c_void, batch: ByteSlice) -> OwnedBytes,
    /// Like `run`, and may call `emit` with partial responses of the batch's
    /// requests (and to check that their clients are still there).
    pub run_stream: unsafe extern "C" fn(
        instance: *mut c_void,
        batch: ByteSlice,
        emit: EmitFn,
        emit_ctx: *mut c_void,
    ) -> OwnedBytes,
    /// Drops an instance and everything it holds.
    pub unload: unsafe extern "C" fn(instance: *mut c_void),
    /// Gives back bytes returned by the functions above.
    pub free: unsafe extern "C" fn(bytes: OwnedBytes),
    /// Like `run_stream`, and the batch may grow while it runs: the plugin
    /// may `take` requests that arrive meanwhile and `finish` each request
    /// as soon as it is done. Every request ends through `finish`; the
    /// returned `BatchResult` carries only an `error`, when the run failed
    /// as a whole (the requests not finished by then get it). What the
    /// daemon calls.
    pub run_joined: unsafe extern "C" fn(
        instance: *mut c_void,
        batch: ByteSlice,
        host: *const HostCalls,
        host_ctx: *mut c_void,
    ) -> OwnedBytes,
}
