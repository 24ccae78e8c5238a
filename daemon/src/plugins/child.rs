//! Process isolation: a model instance whose plugin runs in a child process
//! (`isolation = "process"`), so that a segfault, an abort or the OOM
//! killer ends only the child. The child is this same executable started as
//! `inferd __plugin-child LIBRARY`; it loads the plugin and serves one
//! instance, speaking the plugin ABI's own protobuf payloads over its stdin
//! and stdout (the plugin's own writes to stdout go to stderr).
//!
//! Frames are a kind byte, a little-endian u32 length and that many bytes.
//! The daemon sends `LOAD` (a `LoadRequest`; answered by `LOADED`, a
//! `LoadResult`) and `RUN` (a `Batch`). While a batch runs the child calls
//! back as the ABI's host calls do, each waiting for its answer where it
//! has one: `EMIT` (index, chunk; answered by `WANTED`), `TAKE` (max;
//! answered by `TAKEN`, a `Batch`) and `FINISH` (index, `TaskResponse`),
//! then `DONE` (a `BatchResult`). Closing stdin unloads and ends it.
//!
//! When the child dies, the batch it was running fails with UNAVAILABLE
//! (the worker then runs its unanswered requests again one at a time, so
//! the request that kills it is the one that keeps failing), and the next
//! run starts a new child and loads the model again, after a pause that
//! doubles with each crash in a row (0.25 s up to 10 s).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use inferd_sdk::proto::{load_result, Batch, BatchResult, LoadRequest, LoadResult, LoadedModel, TaskResponse};
use prost::Message;

use super::library::{BatchHost, Plugin};
use crate::error::DaemonError;

/// The first argument that makes `inferd` a plugin child.
pub const CHILD_ARG: &str = "__plugin-child";

const LOAD: u8 = 1;
const RUN: u8 = 2;
const WANTED: u8 = 3;
const TAKEN: u8 = 4;
const LOADED: u8 = 11;
const EMIT: u8 = 12;
const TAKE: u8 = 13;
const FINISH: u8 = 14;
const DONE: u8 = 15;

const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(10);

fn write_frame<W: Write + ?Sized>(out: &mut W, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a frame over 4 GiB"))?;
    out.write_all(&[kind])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn read_frame<R: Read + ?Sized>(input: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    input.read_exact(&mut head)?;
    let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    Ok((head[0], body))
}

/// An index (u64, little-endian) and the bytes after it.
fn indexed(index: usize, bytes: &[u8]) -> Vec<u8> {
    let mut body = (index as u64).to_le_bytes().to_vec();
    body.extend_from_slice(bytes);
    body
}

fn split_index(body: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = body.split_at_checked(8)?;
    Some((u64::from_le_bytes(head.try_into().ok()?) as usize, rest))
}

/// A model instance in a child process, started again when it dies.
pub struct ChildInstance {
    library: std::path::PathBuf,
    request: LoadRequest,
    threads: Option<usize>,
    running: Option<Running>,
    /// Crashes since the last batch that ran to its end.
    crashes: u32,
    /// Called after each restart (the model's restart counter).
    on_restart: Box<dyn Fn() + Send>,
}

struct Running {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
}

impl Running {
    /// Ends the child: given `grace` to finish (its stdin closed, it
    /// unloads and exits), then killed; always waited for (no zombie).
    fn end(self, grace: Duration) -> std::io::Result<ExitStatus> {
        let Running { mut child, to, from } = self;
        drop(to);
        drop(from);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait()
    }
}

/// How long an unloaded child may take to exit before it is killed.
const UNLOAD_GRACE: Duration = Duration::from_secs(30);

impl ChildInstance {
    /// Starts a child for `plugin` and loads `request` in it (LibTorch
    /// there uses `threads` per operation, when set).
    pub fn load(
        plugin: &Plugin,
        request: LoadRequest,
        threads: Option<usize>,
        on_restart: Box<dyn Fn() + Send>,
    ) -> Result<(ChildInstance, LoadedModel), inferd_sdk::Error> {
        let mut instance = ChildInstance {
            library: plugin.path.clone(),
            request,
            threads,
            running: None,
            crashes: 0,
            on_restart,
        };
        let loaded = instance.start()?;
        Ok((instance, loaded))
    }

    /// A new child with the model loaded in it.
    fn start(&mut self) -> Result<LoadedModel, inferd_sdk::Error> {
        use inferd_sdk::Error;
        let exe = std::env::current_exe()
            .map_err(|e| Error::internal(format!("cannot find the inferd executable to start a child: {e}")))?;
        let mut command = Command::new(exe);
        command.arg(CHILD_ARG).arg(&self.library);
        if let Some(threads) = self.threads {
            command.arg(threads.to_string());
        }
        // The plugin has no business with the daemon's keys.
        for var in ["INFERD_API_KEY", "INFERD_ADMIN_KEY"] {
            command.env_remove(var);
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; the child dies with the
            // daemon's thread that started it (no orphan holding memory).
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::internal(format!("cannot start the model's process: {e}")))?;
        let mut running = Running {
            to: BufWriter::new(child.stdin.take().expect("piped")),
            from: BufReader::new(child.stdout.take().expect("piped")),
            child,
        };
        let answer = write_frame(&mut running.to, LOAD, &self.request.encode_to_vec())
            .and_then(|()| read_frame(&mut running.from));
        let result = match answer {
            Ok((LOADED, body)) => match LoadResult::decode(body.as_slice()) {
                Ok(result) => result,
                Err(e) => {
                    let _ = running.end(Duration::ZERO);
                    return Err(Error::internal(format!(
                        "the model's process answered its load with undecodable bytes: {e}"
                    )));
                }
            },
            Ok((kind, _)) => {
                let _ = running.end(Duration::ZERO);
                return Err(Error::internal(format!(
                    "the model's process answered its load with a frame of kind {kind}"
                )));
            }
            Err(_) => {
                let status = running.end(Duration::ZERO);
                return Err(Error::internal(died("while loading the model", status).to_string()));
            }
        };
        match result.result {
            Some(load_result::Result::Ok(loaded)) => {
                tracing::info!(model = %self.request.model_name, pid = running.child.id(), "model's process started");
                self.running = Some(running);
                Ok(loaded)
            }
            Some(load_result::Result::Error(e)) => {
                let _ = running.end(UNLOAD_GRACE);
                Err(e.into())
            }
            None => {
                let _ = running.end(Duration::ZERO);
                Err(Error::internal("the model's process returned no load result"))
            }
        }
    }

    /// Runs a batch in the child, relaying its host calls to `host`.
    pub fn run(&mut self, batch: &Batch, host: &mut dyn BatchHost) -> Result<(), DaemonError> {
        if self.running.is_none() {
            self.restart()?;
        }
        let running = self.running.as_mut().expect("started");
        match exchange(running, batch, host) {
            Ok(outcome) => {
                self.crashes = 0;
                outcome
            }
            Err(_) => {
                // Dead, or speaking out of turn: either way it goes.
                let gone = self.running.take().expect("started");
                let status = gone.end(Duration::ZERO);
                self.crashes += 1;
                let error = died("while it ran this batch; it is being restarted", status);
                tracing::error!(model = %self.request.model_name, "{error}");
                Err(error)
            }
        }
    }

    /// After a pause that grows with crashes in a row, a new child with the
    /// model loaded again.
    fn restart(&mut self) -> Result<(), DaemonError> {
        let pause = FIRST_PAUSE
            .saturating_mul(1 << self.crashes.saturating_sub(1).min(6))
            .min(LONGEST_PAUSE);
        std::thread::sleep(pause);
        match self.start() {
            Ok(_) => {
                (self.on_restart)();
                tracing::info!(model = %self.request.model_name, "model's process restarted and the model loaded again");
                Ok(())
            }
            Err(e) => {
                self.crashes += 1;
                Err(DaemonError::Unavailable(format!(
                    "the model's process could not be restarted ({e}); it is tried again with the next request"
                )))
            }
        }
    }

    /// Ends the child (it unloads the model when its stdin closes; one that
    /// takes longer than UNLOAD_GRACE is killed).
    pub fn unload(mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.end(UNLOAD_GRACE);
        }
    }
}

/// One batch's frames. Err when the child is gone (its pipes broke).
fn exchange(
    running: &mut Running,
    batch: &Batch,
    host: &mut dyn BatchHost,
) -> std::io::Result<Result<(), DaemonError>> {
    write_frame(&mut running.to, RUN, &batch.encode_to_vec())?;
    let broken = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    loop {
        let (kind, body) = read_frame(&mut running.from)?;
        match kind {
            EMIT => {
                let (index, chunk) = split_index(&body).ok_or_else(|| broken("short EMIT"))?;
                let chunk = (!chunk.is_empty()).then(|| TaskResponse::decode(chunk).ok()).flatten();
                let wanted = host.emit(index, chunk);
                write_frame(&mut running.to, WANTED, &[wanted as u8])?;
            }
            TAKE => {
                let (max, _) = split_index(&body).ok_or_else(|| broken("short TAKE"))?;
                let requests = host.take(max);
                write_frame(&mut running.to, TAKEN, &Batch { requests }.encode_to_vec())?;
            }
            FINISH => {
                let (index, bytes) = split_index(&body).ok_or_else(|| broken("short FINISH"))?;
                let response = TaskResponse::decode(bytes).map_err(|_| broken("undecodable FINISH"))?;
                host.finish(index, response);
            }
            DONE => {
                let result = BatchResult::decode(body.as_slice()).map_err(|_| broken("undecodable DONE"))?;
                return Ok(match result.error {
                    Some(error) => Err(inferd_sdk::Error::from(error).into()),
                    None => Ok(()),
                });
            }
            other => return Err(broken(&format!("unexpected frame kind {other}"))),
        }
    }
}

/// UNAVAILABLE: the child ended `when`, with how it ended.
fn died(when: &str, status: std::io::Result<ExitStatus>) -> DaemonError {
    let how = match status {
        Ok(status) => describe(status),
        Err(e) => format!("it could not be waited for: {e}"),
    };
    DaemonError::Unavailable(format!("the model's process ended ({how}) {when}"))
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                libc::SIGSEGV => "SIGSEGV, a segmentation fault",
                libc::SIGABRT => "SIGABRT, an abort",
                libc::SIGKILL => "SIGKILL, perhaps the out-of-memory killer",
                libc::SIGBUS => "SIGBUS",
                libc::SIGILL => "SIGILL",
                libc::SIGFPE => "SIGFPE",
                _ => "a signal",
            };
            return format!("signal {signal}: {name}");
        }
    }
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "no exit code".into(),
    }
}

/// The child's side of a running batch: each host call is a frame to the
/// daemon, answered where it has an answer.
struct Relay<'a> {
    to: &'a mut dyn Write,
    from: &'a mut dyn Read,
}

impl Relay<'_> {
    fn ask(&mut self, kind: u8, body: &[u8], answer: u8) -> Vec<u8> {
        let reply = write_frame(self.to, kind, body).and_then(|()| read_frame(self.from));
        match reply {
            Ok((kind, body)) if kind == answer => body,
            // The daemon is gone or confused: nothing left to serve.
            _ => std::process::exit(3),
        }
    }
}

impl BatchHost for Relay<'_> {
    fn emit(&mut self, index: usize, chunk: Option<TaskResponse>) -> bool {
        let chunk = chunk.map(|c| c.encode_to_vec()).unwrap_or_default();
        self.ask(EMIT, &indexed(index, &chunk), WANTED).first() == Some(&1)
    }

    fn take(&mut self, max: usize) -> Vec<inferd_sdk::proto::TaskRequest> {
        let body = self.ask(TAKE, &indexed(max, &[]), TAKEN);
        Batch::decode(body.as_slice()).map(|b| b.requests).unwrap_or_default()
    }

    fn finish(&mut self, index: usize, response: TaskResponse) {
        if write_frame(self.to, FINISH, &indexed(index, &response.encode_to_vec())).is_err() {
            std::process::exit(3);
        }
    }
}

/// `inferd __plugin-child LIBRARY [THREADS]`: serves one instance of the
/// plugin at LIBRARY over stdin and stdout until stdin closes.
pub fn child_main(args: &[String]) -> ExitCode {
    let Some(library) = args.first() else {
        eprintln!("inferd {CHILD_ARG}: the plugin library is missing");
        return ExitCode::from(2);
    };
    // The protocol moves to descriptors that the plugin's own processes do
    // not inherit; what the plugin prints goes to stderr, and it reads
    // nothing from stdin. Ctrl-C and SIGTERM are the daemon's to handle:
    // the child ends when its stdin closes (or with the daemon).
    // SAFETY: plain descriptor and signal calls on this process's own.
    let (protocol_in, protocol_out) = unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        let protocol_in = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        let protocol_out = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if protocol_in < 0 || protocol_out < 0 || null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(2, 1) < 0 {
            eprintln!("inferd {CHILD_ARG}: cannot set up its descriptors");
            return ExitCode::FAILURE;
        }
        libc::close(null);
        (protocol_in, protocol_out)
    };
    use std::os::fd::FromRawFd;
    // SAFETY: both are fresh descriptors owned from here on.
    let mut to = BufWriter::new(unsafe { std::fs::File::from_raw_fd(protocol_out) });
    let mut from = BufReader::new(unsafe { std::fs::File::from_raw_fd(protocol_in) });
    if let Some(threads) = args.get(1).and_then(|t| t.parse().ok()) {
        crate::torch::set_intra_op_threads(threads);
    }
    let plugin = match Plugin::open(Path::new(library)) {
        Ok(Some(plugin)) => plugin,
        Ok(None) => {
            eprintln!("inferd {CHILD_ARG}: {library} is not an inferd plugin");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("inferd {CHILD_ARG}: {library}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut instance = None;
    while let Ok((kind, body)) = read_frame(&mut from) {
        let written = match kind {
            LOAD => {
                let result = LoadRequest::decode(body.as_slice())
                    .map_err(|e| inferd_sdk::Error::internal(format!("undecodable LoadRequest: {e}")))
                    .and_then(|request| plugin.load(&request));
                let result = match result {
                    Ok((handle, loaded)) => {
                        instance = Some(handle);
                        load_result::Result::Ok(loaded)
                    }
                    Err(e) => load_result::Result::Error(e.into()),
                };
                let encoded = LoadResult { result: Some(result) }.encode_to_vec();
                write_frame(&mut to, LOADED, &encoded)
            }
            RUN => {
                let outcome = match (instance.as_mut(), Batch::decode(body.as_slice())) {
                    (Some(handle), Ok(batch)) => {
                        let mut relay = Relay {
                            to: &mut to,
                            from: &mut from,
                        };
                        plugin.run(handle, &batch, &mut relay)
                    }
                    (None, _) => Err(inferd_sdk::Error::internal("no model loaded in this process")),
                    (_, Err(e)) => Err(inferd_sdk::Error::internal(format!("undecodable Batch: {e}"))),
                };
                let result = BatchResult {
                    error: outcome.err().map(Into::into),
                    ..Default::default()
                };
                write_frame(&mut to, DONE, &result.encode_to_vec())
            }
            _ => break,
        };
        if written.is_err() {
            break;
        }
    }
    if let Some(handle) = instance {
        plugin.unload(handle);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, EMIT, &indexed(7, b"chunk")).unwrap();
        write_frame(&mut buffer, DONE, &[]).unwrap();
        let mut input = buffer.as_slice();
        let (kind, body) = read_frame(&mut input).unwrap();
        assert_eq!(kind, EMIT);
        assert_eq!(split_index(&body), Some((7, &b"chunk"[..])));
        assert_eq!(read_frame(&mut input).unwrap(), (DONE, vec![]));
        assert!(read_frame(&mut input).is_err());
        assert_eq!(split_index(&[1, 2, 3]), None);
    }

    #[cfg(unix)]
    #[test]
    fn deaths_are_described() {
        use std::os::unix::process::ExitStatusExt;
        let segv = describe(ExitStatus::from_raw(libc::SIGSEGV));
        assert!(segv.contains("segmentation fault"), "{segv}");
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit code 3");
    }
}
