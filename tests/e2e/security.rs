//! Keys and allowed model directories, through the real daemon: an API key
//! for inference and reading the model list, an admin key for loading and
//! unloading, health and metrics open; a client's LoadModel held to
//! `--allow-model-dir` and `--no-client-downloads` while the operator's
//! start-up models are not.

use inferd_proto::v1::{
    ClassifyRequest, GetModelRequest, ListModelsRequest, LoadModelRequest, ModelState, TextInput, UnloadModelRequest,
};
use inferd_tests::{fixture_model, fixtures_dir, release_dir, Daemon};
use tonic::{Code, Request};

const API_KEY: &str = "inference-key-7d41c2";
const ADMIN_KEY: &str = "admin-key-0b93fe";

/// `message` with `authorization: Bearer key` when a key is given.
fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

fn classify() -> ClassifyRequest {
    ClassifyRequest {
        model: "sst".into(),
        inputs: vec![TextInput {
            text: "what a wonderful day".into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

fn load(name: &str, source: &str) -> LoadModelRequest {
    LoadModelRequest {
        name: name.into(),
        task: "text-classification".into(),
        source: source.into(),
        ..Default::default()
    }
}

/// The code of a call's answer (Ok for success).
fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => {
            assert!(
                !status.message().contains(API_KEY) && !status.message().contains(ADMIN_KEY),
                "a key in {status:?}"
            );
            status.code()
        }
    }
}

#[tokio::test]
async fn keys_separate_using_from_managing_and_leave_health_and_metrics_open() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let flag = format!("sst:text-classification={}", fixture_model("distilbert-cls"));
    let daemon = Daemon::start_with_env(
        &[
            "--model",
            &flag,
            "--api-key-file",
            key_file.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[("INFERD_ADMIN_KEY", ADMIN_KEY)],
    )
    .await;
    let mut inference = daemon.inference().await;
    let mut models = daemon.models().await;

    // Inference: the API key (or the admin key), nothing else.
    assert_eq!(
        code(inference.classify(with_key(classify(), None)).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(inference.classify(with_key(classify(), Some("wrong"))).await),
        Code::Unauthenticated
    );
    let mut bad_scheme = Request::new(classify());
    bad_scheme
        .metadata_mut()
        .insert("authorization", format!("Basic {API_KEY}").parse().unwrap());
    assert_eq!(code(inference.classify(bad_scheme).await), Code::Unauthenticated);
    assert_eq!(
        code(inference.classify(with_key(classify(), Some(API_KEY))).await),
        Code::Ok
    );
    assert_eq!(
        code(inference.classify(with_key(classify(), Some(ADMIN_KEY))).await),
        Code::Ok
    );
    // Reading the model list: the API key.
    assert_eq!(
        code(models.list_models(with_key(ListModelsRequest {}, None)).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(models.list_models(with_key(ListModelsRequest {}, Some(API_KEY))).await),
        Code::Ok
    );
    // Managing: the admin key; the API key is refused as not enough.
    let source = fixture_model("distilbert-cls");
    let refused = models.load_model(with_key(load("other", &source), Some(API_KEY))).await;
    let status = refused.as_ref().unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("admin key"), "{status:?}");
    assert_eq!(
        code(models.load_model(with_key(load("other", &source), None)).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            models
                .load_model(with_key(load("other", &source), Some(ADMIN_KEY)))
                .await
        ),
        Code::Ok
    );
    let unload = || UnloadModelRequest { name: "other".into() };
    assert_eq!(
        code(models.unload_model(with_key(unload(), Some(API_KEY))).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(models.unload_model(with_key(unload(), Some(ADMIN_KEY))).await),
        Code::Ok
    );

    // Health (Daemon::start waited on it) and metrics need no key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert!(daemon.metrics().contains("inferd_requests_total"));

    // inferctl sends --api-key (or INFERD_API_KEY); without it, it is told why.
    let listed = daemon.inferctl(&["--api-key", API_KEY, "models", "list"]);
    assert!(listed.contains("sst"), "{listed}");
    let out = std::process::Command::new(release_dir().join("inferctl"))
        .args(["--addr", &daemon.url(), "models", "list"])
        .env_remove("INFERD_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unauthenticated") && stderr.contains("API key"),
        "{stderr}"
    );

    // The keys never reach the log.
    let log = daemon.log();
    assert!(
        !log.contains(API_KEY) && !log.contains(ADMIN_KEY),
        "a key in the log:\n{log}"
    );
    assert!(log.contains("refused"), "refusals are logged:\n{log}");
}

#[tokio::test]
async fn a_key_that_cannot_be_read_stops_the_start_with_a_clear_message() {
    let out = std::process::Command::new(release_dir().join("inferd"))
        .args(["--listen", "127.0.0.1:0", "--api-key-file", "/nonexistent/inferd-key"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the API key file /nonexistent/inferd-key"),
        "{stderr}"
    );
    let out = std::process::Command::new(release_dir().join("inferd"))
        .args(["--listen", "127.0.0.1:0"])
        .env("INFERD_API_KEY", "two words")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("printable ASCII without spaces") && !stderr.contains("two words"),
        "{stderr}"
    );
}

#[tokio::test]
async fn client_loads_stay_inside_the_allowed_directories() {
    let models_dir = fixtures_dir().join("models");
    // A second allowed directory whose only entry links out of it.
    let other = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let copy = outside.path().join("cls");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(models_dir.join("distilbert-cls")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    std::os::unix::fs::symlink(&copy, other.path().join("link")).unwrap();
    // The operator's start-up model comes from outside both.
    let flag = format!("operator:text-classification={}", copy.display());
    let daemon = Daemon::start(&[
        "--model",
        &flag,
        "--allow-model-dir",
        models_dir.to_str().unwrap(),
        "--allow-model-dir",
        other.path().to_str().unwrap(),
        "--no-client-downloads",
    ])
    .await;
    let mut models = daemon.models().await;
    let info = models
        .get_model(GetModelRequest {
            name: "operator".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, ModelState::Ready as i32, "{info:?}");

    let inside = fixture_model("distilbert-cls");
    assert_eq!(code(models.load_model(load("inside", &inside)).await), Code::Ok);
    let escapes = [
        "/etc".to_string(),
        copy.display().to_string(),
        format!("{}/../../../../etc", models_dir.display()),
        format!("{}/distilbert-cls/../../../..{}", models_dir.display(), copy.display()),
        other.path().join("link").display().to_string(),
        format!("{}/missing/../../etc", other.path().display()),
    ];
    for source in &escapes {
        let status = models.load_model(load("escape", source)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{source}: {status:?}");
        assert!(status.message().contains("--allow-model-dir"), "{source}: {status:?}");
    }
    // Not there yet but inside: the usual NOT_FOUND.
    let missing = models_dir.join("no-such-model").display().to_string();
    assert_eq!(code(models.load_model(load("missing", &missing)).await), Code::NotFound);
    // A hub id not in the cache is not downloaded for a client.
    let status = models.load_model(load("hub", "someone/some-model")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("--no-client-downloads"), "{status:?}");
    // A revision is a name in the cache, never a path out of it.
    for revision in ["/etc", "../../../../etc", "main/../../x"] {
        let mut request = load("hub", "someone/some-model");
        request.revision = revision.into();
        let status = models.load_model(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{revision}: {status:?}");
    }
}
