//! One plugin library: the unsafe calls across the C ABI, wrapped so the rest
//! of the daemon sees plain Rust values and `inferd_sdk::Error`s.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use inferd_sdk::abi::{ByteSlice, EntryPoint, HostCalls, OwnedBytes, PluginTable, ABI_VERSION, ENTRY_SYMBOL};
use inferd_sdk::proto::{
    load_result, task_response, Batch, BatchResult, LoadRequest, LoadResult, LoadedModel, Manifest, TaskRequest,
    TaskResponse,
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
        let bytes = unsafe { take_bytes(table, (table.manifest)()) };
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
        let out = unsafe { take_bytes(self.table, (self.table.load)(ByteSlice::new(&bytes), &mut instance)) };
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

    /// Runs a batch on an instance through `host`: partial responses and
    /// "still wanted?" (`emit`), requests that arrived meanwhile (`take`)
    /// and each request's answer as soon as it is ready (`finish`). Err
    /// when the run failed as a whole; the requests `host` has not had an
    /// answer for get it.
    pub fn run(&self, instance: &mut InstanceHandle, batch: &Batch, host: &mut dyn BatchHost) -> Result<(), Error> {
        /// The context behind the host calls: the host and the bytes of
        /// the last `take`, which the plugin borrows until the next.
        struct Ctx<'a> {
            host: &'a mut dyn BatchHost,
            taken: Vec<u8>,
        }
        unsafe extern "C" fn emit(ctx: *mut c_void, index: usize, chunk: ByteSlice) -> bool {
            // SAFETY: `ctx` points to the `Ctx` below, alive for the call.
            let ctx = unsafe { &mut *(ctx as *mut Ctx) };
            let bytes = unsafe { chunk.as_slice() };
            if bytes.is_empty() {
                return ctx.host.emit(index, None);
            }
            match TaskResponse::decode(bytes) {
                Ok(response) => ctx.host.emit(index, Some(response)),
                Err(_) => true,
            }
        }
        unsafe extern "C" fn take(ctx: *mut c_void, max: usize) -> ByteSlice {
            // SAFETY: as above.
            let ctx = unsafe { &mut *(ctx as *mut Ctx) };
            let requests = ctx.host.take(max);
            ctx.taken = Batch { requests }.encode_to_vec();
            ByteSlice::new(&ctx.taken)
        }
        unsafe extern "C" fn finish(ctx: *mut c_void, index: usize, response: ByteSlice) {
            // SAFETY: as above.
            let ctx = unsafe { &mut *(ctx as *mut Ctx) };
            let response = TaskResponse::decode(unsafe { response.as_slice() }).unwrap_or_else(|e| TaskResponse {
                body: Some(task_response::Body::Error(
                    Error::internal(format!("the plugin answered with undecodable bytes: {e}")).into(),
                )),
            });
            ctx.host.finish(index, response);
        }
        let calls = HostCalls { emit, take, finish };
        let bytes = batch.encode_to_vec();
        let mut ctx = Ctx { host, taken: vec![] };
        // SAFETY: `instance` came from this plugin's `load` and is not shared;
        // `calls` and `ctx` outlive the call.
        let out = unsafe {
            take_bytes(
                self.table,
                (self.table.run_joined)(
                    instance.0,
                    ByteSlice::new(&bytes),
                    &calls,
                    &mut ctx as *mut Ctx as *mut c_void,
                ),
            )
        };
        let result = BatchResult::decode(out.as_slice())
            .map_err(|e| Error::internal(format!("plugin {}: undecodable BatchResult: {e}", self.manifest.name)))?;
        match result.error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// Drops an instance and frees what it holds.
    pub fn unload(&self, instance: InstanceHandle) {
        // SAFETY: the handle came from `load` and is not used afterwards.
        unsafe { (self.table.unload)(instance.0) }
    }
}

/// Copies bytes returned by the plugin and gives them back to it.
unsafe fn take_bytes(table: &PluginTable, bytes: OwnedBytes) -> Vec<u8> {
    let copy = bytes.as_slice().to_vec();
    (table.free)(bytes);
    copy
}

/// The daemon's side of a running batch (see [`Plugin::run`]).
pub trait BatchHost {
    /// A partial response of request `index` (None only asks); false once
    /// its client no longer waits.
    fn emit(&mut self, index: usize, chunk: Option<TaskResponse>) -> bool;
    /// Up to `max` requests of the model that arrived meanwhile (none when
    /// joining is off).
    fn take(&mut self, max: usize) -> Vec<TaskRequest>;
    /// Request `index`'s final answer.
    fn finish(&mut self, index: usize, response: TaskResponse);
}
