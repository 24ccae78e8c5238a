//! Test-only plugin built against the previous plugin ABI, version 1 (no
//! `run_joined`, so a shorter table). The daemon must refuse it with a log
//! line saying which versions differ and keep serving, without calling any
//! of its functions.

use std::ffi::c_void;

use inferd_sdk::abi::{ByteSlice, EmitFn, OwnedBytes};

unsafe extern "C" fn manifest() -> OwnedBytes {
    unreachable_call()
}
unsafe extern "C" fn load(_: ByteSlice, _: *mut *mut c_void) -> OwnedBytes {
    unreachable_call()
}
unsafe extern "C" fn run(_: *mut c_void, _: ByteSlice) -> OwnedBytes {
    unreachable_call()
}
unsafe extern "C" fn run_stream(_: *mut c_void, _: ByteSlice, _: EmitFn, _: *mut c_void) -> OwnedBytes {
    unreachable_call()
}
unsafe extern "C" fn unload(_: *mut c_void) {
    unreachable_call()
}
unsafe extern "C" fn free(_: OwnedBytes) {
    unreachable_call()
}

fn unreachable_call() -> ! {
    // Aborting (not panicking) makes any call from the daemon fail the test loudly.
    std::process::abort()
}

/// The table of plugin ABI version 1.
#[repr(C)]
pub struct TableV1 {
    pub abi_version: u32,
    pub manifest: unsafe extern "C" fn() -> OwnedBytes,
    pub load: unsafe extern "C" fn(ByteSlice, *mut *mut c_void) -> OwnedBytes,
    pub run: unsafe extern "C" fn(*mut c_void, ByteSlice) -> OwnedBytes,
    pub run_stream: unsafe extern "C" fn(*mut c_void, ByteSlice, EmitFn, *mut c_void) -> OwnedBytes,
    pub unload: unsafe extern "C" fn(*mut c_void),
    pub free: unsafe extern "C" fn(OwnedBytes),
}

#[no_mangle]
pub extern "C" fn inferd_plugin_v1() -> *const TableV1 {
    static TABLE: TableV1 = TableV1 {
        abi_version: 1,
        manifest,
        load,
        run,
        run_stream,
        unload,
        free,
    };
    &TABLE
}
