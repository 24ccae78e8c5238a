//! One plugin library: the unsafe calls across the C ABI, wrapped so the rest
//! of the daemon sees plain Rust values and `inferd_sdk::Error`s.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use inferd_sdk::abi::{ByteSlice, EntryPoint, OwnedBytes, PluginTable, ABI_VERSION, ENTRY_SYMBOL};
use inferd_sdk::proto::{
    load_result, Batch, BatchResult, LoadRequest, LoadResult, LoadedModel, Manifest, TaskResponse,
};
use inferd_sdk::Error;
use prost::Message;

pub struct Plugin {
    pub path: PathBuf,
    pub manifest: Manifest,
    table: &'static PluginTable,
    // Never unloaded: code from a plugin (and LibTorch's static state) may be
    // referenced until the process exits.
    _library: &'static libloading::Library,
}

/// An instance created by a plugin's `load`. It is only used from the worker
/// thread that owns it; the daemon never calls one instance concurrently.
pub struct InstanceHandle(*mut c_void);

// SAFETY: the handle is moved to its worker thread once and used there only.
unsafe impl Send for InstanceHandle {}

impl Plugin {
    /// Opens a library. `Ok(None)` when it has no inferd entry point;
    /// `Err` when it has one but cannot be used (wrong ABI, bad manifest).
    pub fn open(path: &Path) -> Result<Option<Plugin>, String> {
        // SAFETY: loading a library runs its initialisers; the directory and
        // file permissions were checked by the caller.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load: {e}"))?;
        // SAFETY: the symbol, if present, has the documented signature.
        let entry: EntryPoint = match unsafe { library.get::<EntryPoint>(ENTRY_SYMBOL) } {
            Ok(symbol) => *symbol,
            Err(_) => return Ok(None),
        };
        let library: &'static libloading::Library = Box::leak(Box::new(library));
        // SAFETY: the entry point returns a pointer to a static table. Only
        // its first field (the ABI version, a u32 in every version) is read
        // before the version is checked.
        let table_ptr = unsafe { entry() };
        if table_ptr.is_null() {
            return Err("its entry point returned no table".into());
        }
        let abi_version = unsafe { std::ptr::read(table_ptr as *const u32) };
        if abi_version != ABI_VERSION {
            return Err(format!(
                "it was built for plugin ABI version {abi_version}, this inferd speaks version {ABI_VERSION}; \
                 rebuild the plugin against inferd-sdk {}",
                env!("CARGO_PKG_VERSION")
            ));
        }
        // SAFETY: the version matches, so the table has this layout.
        let table: &'static PluginTable = unsafe { &*table_ptr };
        let bytes = unsafe { take(table, (table.manifest)()) };
        let manifest = Manifest::decode(bytes.as_slice()).map_err(|e| format!("undecodable manifest: {e}"))?;
        if manifest.name.is_empty() {
            return Err("its manifest has no name".into());
        }
        Ok(Some(Plugin {
            path: path.to_path_buf(),
            manifest,
            table,
            _library: library,
        }))
    }

    /// Creates an instance (runs on the calling thread: the worker's).
    pub fn load(&self, request: &LoadRequest) -> Result<(InstanceHandle, LoadedModel), Error> {
        let bytes = request.encode_to_vec();
        let mut instance: *mut c_void = std::ptr::null_mut();
        // SAFETY: arguments follow the ABI; the returned bytes are given back.
        let out = unsafe { take(self.table, (self.table.load)(ByteSlice::new(&bytes), &mut instance)) };
        let result = LoadResult::decode(out.as_slice())
            .map_err(|e| Error::internal(format!("plugin {}: undecodable LoadResult: {e}", self.manifest.name)))?;
        match result.result {
            Some(load_result::Result::Ok(loaded)) if !instance.is_null() => Ok((InstanceHandle(instance), loaded)),
            Some(load_result::Result::Error(e)) => Err(e.into()),
            _ => Err(Error::internal(format!(
                "plugin {} returned no instance",
                self.manifest.name
            ))),
        }
    }

    /// Runs a batch on an instance; one response per request, or an error
    /// for the whole batch.
    /// `emit(i, chunk)` receives partial responses of request `i` (`None`:
    /// "is it still wanted?") and answers whether its client is still there.
    pub fn run(
        &self,
        instance: &mut InstanceHandle,
        batch: &Batch,
        emit: &mut dyn FnMut(usize, Option<TaskResponse>) -> bool,
    ) -> Result<Vec<TaskResponse>, Error> {
        type Emit<'a> = &'a mut dyn FnMut(usize, Option<TaskResponse>) -> bool;
        unsafe extern "C" fn trampoline(ctx: *mut c_void, index: usize, chunk: ByteSlice) -> bool {
            // SAFETY: `ctx` points to the `Emit` below, alive for the call.
            let emit = unsafe { &mut *(ctx as *mut Emit) };
            let bytes = unsafe { chunk.as_slice() };
            if bytes.is_empty() {
                return emit(index, None);
            }
            match TaskResponse::decode(bytes) {
                Ok(response) => emit(index, Some(response)),
                Err(_) => true,
            }
        }
        let bytes = batch.encode_to_vec();
        let mut emit: Emit = emit;
        let ctx = &mut emit as *mut Emit as *mut c_void;
        // SAFETY: `instance` came from this plugin's `load` and is not shared;
        // `ctx` outlives the call.
        let out = unsafe {
            take(
                self.table,
                (self.table.run_stream)(instance.0, ByteSlice::new(&bytes), trampoline, ctx),
            )
        };
        let result = BatchResult::decode(out.as_slice())
            .map_err(|e| Error::internal(format!("plugin {}: undecodable BatchResult: {e}", self.manifest.name)))?;
        if let Some(error) = result.error {
            return Err(error.into());
        }
        if result.responses.len() != batch.requests.len() {
            return Err(Error::internal(format!(
                "plugin {} answered {} of {} requests",
                self.manifest.name,
                result.responses.len(),
                batch.requests.len()
            )));
        }
        Ok(result.responses)
    }

    /// Drops an instance and frees what it holds.
    pub fn unload(&self, instance: InstanceHandle) {
        // SAFETY: the handle came from `load` and is not used afterwards.
        unsafe { (self.table.unload)(instance.0) }
    }
}

/// Copies bytes returned by the plugin and gives them back to it.
unsafe fn take(table: &PluginTable, bytes: OwnedBytes) -> Vec<u8> {
    let copy = bytes.as_slice().to_vec();
    (table.free)(bytes);
    copy
}
