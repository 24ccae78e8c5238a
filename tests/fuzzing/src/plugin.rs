//! A plugin loaded in-process through the functions `export_plugin!`
//! puts in its table (the SDK's glue), so that the daemon's side of the
//! ABI is played here: requests go in as encoded `Batch`es and answers come
//! back as encoded `BatchResult`s, panics caught at the boundary.

use std::ffi::c_void;
use std::path::Path;

use inferd_sdk::abi::{ByteSlice, OwnedBytes, PluginTable, ABI_VERSION};
use inferd_sdk::proto::{load_result, Batch, BatchResult, LoadRequest, LoadResult, LoadedModel, TaskResponse};
use inferd_sdk::{glue, Task};
use prost::Message;

/// The table `export_plugin!(T)` exports.
pub fn table<T: Task>() -> PluginTable {
    PluginTable {
        abi_version: ABI_VERSION,
        manifest: glue::manifest::<T>,
        load: glue::load::<T>,
        run: glue::run::<T>,
        run_stream: glue::run_stream::<T>,
        unload: glue::unload::<T>,
        free: glue::free,
        run_joined: glue::run_joined::<T>,
    }
}

/// One loaded instance of a plugin's task, unloaded when dropped.
pub struct Instance {
    table: PluginTable,
    instance: *mut c_void,
    loaded: LoadedModel,
}

impl Instance {
    /// Loads `task` from `model_dir` (None for a task without a model) on
    /// the CPU; the plugin's error when the load fails. Text to speech gets
    /// the fixtures' vocoder, as the daemon hands a text-to-speech model
    /// its vocoder.
    pub fn load(table: PluginTable, task: &str, model_dir: Option<&Path>) -> Result<Instance, inferd_sdk::Error> {
        let vocoder_dir = match task {
            "text-to-speech" => crate::fixtures::model_dir("hifigan-random").display().to_string(),
            _ => String::new(),
        };
        let request = LoadRequest {
            task: task.into(),
            model_name: task.into(),
            model_dir: model_dir.map(|d| d.display().to_string()).unwrap_or_default(),
            device: "cpu".into(),
            vocoder_dir,
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        let mut instance = std::ptr::null_mut();
        // SAFETY: the request bytes outlive the call; the answer is the
        // plugin's to free, which `take` does.
        let answer = unsafe { take(&table, (table.load)(ByteSlice::new(&bytes), &mut instance)) };
        let result = LoadResult::decode(answer.as_slice()).expect("the plugin's LoadResult decodes");
        match result.result {
            Some(load_result::Result::Ok(loaded)) if !instance.is_null() => Ok(Instance {
                table,
                instance,
                loaded,
            }),
            Some(load_result::Result::Error(error)) => Err(error.into()),
            other => panic!("a load answered {other:?} with instance {instance:?}"),
        }
    }

    /// The memory the plugin says the instance's weights take.
    pub fn memory_bytes(&self) -> u64 {
        self.loaded.memory_bytes
    }

    /// Runs encoded `batch` bytes through `run`, or through `run_stream`
    /// when `chunks` is given: each partial response is pushed there with
    /// its request's index.
    pub fn run(&mut self, batch: &[u8], chunks: Option<&mut Vec<(usize, TaskResponse)>>) -> BatchResult {
        // SAFETY: the instance is live (loaded, not yet unloaded) and used
        // from one thread; `chunks` outlives the call that emits into it.
        let answer = unsafe {
            match chunks {
                None => (self.table.run)(self.instance, ByteSlice::new(batch)),
                Some(chunks) => (self.table.run_stream)(
                    self.instance,
                    ByteSlice::new(batch),
                    collect_chunk,
                    chunks as *mut Vec<(usize, TaskResponse)> as *mut c_void,
                ),
            }
        };
        // SAFETY: `answer` came from this plugin's run.
        let answer = unsafe { take(&self.table, answer) };
        BatchResult::decode(answer.as_slice()).expect("the plugin's BatchResult decodes")
    }

    /// [`Instance::run`] for a batch not yet encoded.
    pub fn run_batch(&mut self, batch: &Batch, chunks: Option<&mut Vec<(usize, TaskResponse)>>) -> BatchResult {
        self.run(&batch.encode_to_vec(), chunks)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: loaded by this table, unloaded once.
        unsafe { (self.table.unload)(self.instance) }
    }
}

/// Copies bytes a plugin returned and gives them back to it.
///
/// # Safety
/// `bytes` must come from one of `table`'s functions, not yet freed.
unsafe fn take(table: &PluginTable, bytes: OwnedBytes) -> Vec<u8> {
    let copy = bytes.as_slice().to_vec();
    (table.free)(bytes);
    copy
}

/// The emit function handed to `run_stream`: records each partial response
/// (an empty chunk only asks whether the client still waits: it does).
unsafe extern "C" fn collect_chunk(ctx: *mut c_void, index: usize, chunk: ByteSlice) -> bool {
    let chunks = &mut *(ctx as *mut Vec<(usize, TaskResponse)>);
    let bytes = chunk.as_slice();
    if !bytes.is_empty() {
        let response = TaskResponse::decode(bytes).expect("a partial response decodes");
        chunks.push((index, response));
    }
    true
}
