//! Model files that are not what they claim to be: a config.json, a
//! tokenizer.json or weights that are a symlink to /dev/zero, a FIFO or far
//! too large are refused at LoadModel with FAILED_PRECONDITION naming the
//! file, quickly, without growing the daemon; the name stays free, other
//! models keep answering, and SIGTERM still stops the daemon cleanly. The
//! good directory is made of symlinks to the fixture's files, as the
//! Hugging Face cache links snapshots into `blobs/`, so that layout is
//! checked to keep working too.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use inferd_proto::v1::{ClassifyRequest, LoadModelRequest, TextInput};
use inferd_tests::{fixture_model, Daemon};
use tonic::Code;

/// How long a refusal may take: it needs no model to be built.
const REFUSED_WITHIN: Duration = Duration::from_secs(5);

/// How much the daemon may grow over all the hostile loads together (a
/// symlink to /dev/zero used to grow it by 8 GB in 10 s).
const RSS_GROWTH_BOUND: u64 = 256 * 1024 * 1024;

/// A model directory of symlinks to the fixture `name`'s files.
fn linked_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_model(name)).unwrap() {
        let entry = entry.unwrap();
        symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

fn classify(model: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: model.into(),
        inputs: vec![TextInput {
            text: "still answering".into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

async fn load(daemon: &Daemon, dir: &Path, within: Duration) -> Result<(), tonic::Status> {
    let request = LoadModelRequest {
        name: "hostile".into(),
        task: "text-classification".into(),
        source: dir.display().to_string(),
        ..Default::default()
    };
    let started = Instant::now();
    let answer = tokio::time::timeout(within, async { daemon.models().await.load_model(request).await })
        .await
        .unwrap_or_else(|_| panic!("LoadModel of {} did not answer within {within:?}", dir.display()));
    assert!(started.elapsed() < within);
    answer.map(drop)
}

/// LoadModel of `dir` is refused with FAILED_PRECONDITION naming `file`
/// and saying `what` is wrong with it; the other model still answers.
async fn assert_refused(daemon: &Daemon, dir: &Path, file: &str, what: &str) {
    let status = load(daemon, dir, REFUSED_WITHIN).await.expect_err(file);
    let message = status.message();
    assert_eq!(status.code(), Code::FailedPrecondition, "{file}: {status:?}");
    assert!(
        message.contains(&dir.join(file).display().to_string()),
        "{message:?} names {file}"
    );
    assert!(message.contains(what), "{message:?} should say {what:?}");
    let answer = daemon.inference().await.classify(classify("bert")).await;
    assert!(answer.is_ok(), "the other model stopped answering: {answer:?}");
}

#[tokio::test]
async fn model_files_that_are_devices_fifos_or_too_large_are_refused_quickly_and_the_daemon_carries_on() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let rss_before = daemon.rss_bytes();

    let dir = linked_copy("bert-cls");
    let config = dir.path().join("config.json");
    let tokenizer = dir.path().join("tokenizer.json");
    let weights = dir.path().join("model.safetensors");
    let restore = |path: &Path| {
        std::fs::remove_file(path).unwrap();
        symlink(
            Path::new(&fixture_model("bert-cls")).join(path.file_name().unwrap()),
            path,
        )
        .unwrap();
    };

    std::fs::remove_file(&config).unwrap();
    symlink("/dev/zero", &config).unwrap();
    assert_refused(&daemon, dir.path(), "config.json", "character device").await;

    std::fs::remove_file(&config).unwrap();
    mkfifo(&config);
    assert_refused(&daemon, dir.path(), "config.json", "FIFO").await;
    restore(&config);

    std::fs::remove_file(&tokenizer).unwrap();
    symlink("/dev/zero", &tokenizer).unwrap();
    assert_refused(&daemon, dir.path(), "tokenizer.json", "character device").await;

    // A sparse file: 100 MiB long, no disk used, over the tokenizer limit.
    std::fs::remove_file(&tokenizer).unwrap();
    std::fs::File::create(&tokenizer).unwrap().set_len(100 << 20).unwrap();
    assert_refused(&daemon, dir.path(), "tokenizer.json", "limit").await;
    restore(&tokenizer);

    std::fs::remove_file(&weights).unwrap();
    mkfifo(&weights);
    assert_refused(&daemon, dir.path(), "model.safetensors", "FIFO").await;
    restore(&weights);

    let grown = daemon.rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < RSS_GROWTH_BOUND,
        "the daemon grew by {} MiB over the hostile loads",
        grown >> 20
    );

    // The name is free, and the directory of symlinks (the hub cache's
    // layout) loads once its files are good again.
    load(&daemon, dir.path(), Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", daemon.log()));
    let answer = daemon.inference().await.classify(classify("hostile")).await;
    assert!(answer.is_ok(), "{answer:?}");

    let status = daemon.terminate().await;
    assert!(status.success(), "exit status {status}");
}
