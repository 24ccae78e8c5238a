//! Test-only plugin built "against another ABI version": its table says
//! version 999. The daemon must refuse it with a log line and keep serving,
//! without calling any of its functions.

use std::ffi::c_void;

use inferd_sdk::abi::{ByteSlice, EmitFn, OwnedBytes, PluginTable};

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

#[no_mangle]
pub extern "C" fn inferd_plugin_v1() -> *const PluginTable {
    static TABLE: PluginTable = PluginTable {
        abi_version: 999,
        manifest,
        load,
        run,
        run_stream,
        unload,
        free,
    };
    &TABLE
}
