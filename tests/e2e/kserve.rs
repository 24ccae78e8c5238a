//! The Open Inference Protocol (KServe v2, `inference.GRPCInferenceService`)
//! on inferd's port: NVIDIA's tritonclient (in a virtualenv of its own)
//! reads the server's and the models' metadata and readiness, runs
//! inferences whose results equal the inferd.v1 answers, and loads and
//! unloads models through the repository RPCs; malformed tensors get
//! INVALID_ARGUMENT saying what is wrong.

use std::collections::BTreeMap;

use base64::Engine;
use inferd_proto::kserve::grpc_inference_service_client::GrpcInferenceServiceClient;
use inferd_proto::kserve::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use inferd_proto::kserve::{
    infer_parameter::ParameterChoice, InferParameter, InferTensorContents, ModelInferRequest, ModelReadyRequest,
    ServerLiveRequest,
};
use inferd_proto::v1::{
    AudioInput, ClassifyImageRequest, ClassifyRequest, EmbedRequest, GenerateRequest, ImageInput, TextInput,
    TranscribeRequest,
};
use inferd_tests::{assert_close_with, fixture_model, fixtures_dir, triton_calls, Daemon};
use serde_json::{json, Value};
use tonic::Code;

fn image(name: &str) -> String {
    fixtures_dir().join("images").join(name).display().to_string()
}

fn audio(name: &str) -> String {
    fixtures_dir().join("audio").join(name).display().to_string()
}

/// The one answer of a call that must succeed.
fn ok(answer: &Value) -> &Value {
    answer.get("ok").unwrap_or_else(|| panic!("the call failed: {answer}"))
}

fn output<'a>(answer: &'a Value, name: &str) -> &'a Value {
    &ok(answer)["outputs"][name]
}

async fn daemon_with(models: &[(&str, &str, &str)]) -> Daemon {
    let flags: Vec<String> = models
        .iter()
        .flat_map(|(name, task, fixture)| {
            [
                "--model".to_string(),
                format!("{name}:{task}={}", fixture_model(fixture)),
            ]
        })
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Daemon::start(&flags).await
}

#[tokio::test]
async fn tritonclient_reads_the_server_and_model_metadata_and_readiness() {
    let daemon = daemon_with(&[("cls", "text-classification", "bert-cls")]).await;
    let answers = triton_calls(
        &daemon,
        &json!([
            {"call": "server_live"},
            {"call": "server_ready"},
            {"call": "server_metadata"},
            {"call": "model_ready", "model": "cls"},
            {"call": "model_metadata", "model": "cls"},
            {"call": "model_ready", "model": "nothing-of-that-name"},
        ]),
    );
    assert_eq!(ok(&answers[0]), &json!(true));
    assert_eq!(ok(&answers[1]), &json!(true));
    let server = ok(&answers[2]);
    assert_eq!(server["name"], "inferd");
    assert_eq!(server["extensions"], json!(["model_repository"]));
    assert_eq!(ok(&answers[3]), &json!(true));
    let model = ok(&answers[4]);
    assert_eq!(model["platform"], "inferd/text-classification");
    assert_eq!(model["versions"], json!(["1"]));
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| format!("{}:{}", t["name"].as_str().unwrap(), t["datatype"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(names(&model["inputs"]), ["text:BYTES", "text_pair:BYTES"]);
    assert_eq!(names(&model["outputs"]), ["result:BYTES", "label:BYTES", "score:FP32"]);
    let missing = &answers[5]["error"];
    assert_eq!(missing["status"], "StatusCode.NOT_FOUND", "{missing}");
    // Open without a key: it names the model asked for, not the loaded ones.
    let message = missing["message"].as_str().unwrap();
    assert!(
        message.contains("nothing-of-that-name") && !message.contains("cls"),
        "{missing}"
    );
}

#[tokio::test]
async fn tritonclient_results_equal_the_inferd_v1_answers() {
    let daemon = daemon_with(&[
        ("cls", "text-classification", "bert-cls"),
        ("emb", "feature-extraction", "bert-base"),
        ("gen", "text-generation", "gpt2-gen"),
        ("img", "image-classification", "vit-cls"),
        ("asr", "automatic-speech-recognition", "whisper-tiny.en"),
    ])
    .await;
    let texts = ["a fine day at the seaside", "the worst film I have seen"];
    let images = [image("astronaut.png"), image("coffee.png")];
    let speech = audio("speech_16k.wav");
    let answers = triton_calls(
        &daemon,
        &json!([
            {"call": "infer", "model": "cls", "inputs": [{"name": "text", "texts": texts}],
             "parameters": {"top_k": 2}, "id": "request-7"},
            {"call": "infer", "model": "emb", "inputs": [{"name": "text", "texts": texts}]},
            {"call": "infer", "model": "gen", "inputs": [{"name": "text", "texts": ["Once upon a time"]}],
             "parameters": {"max_new_tokens": 8, "do_sample": false}},
            {"call": "infer", "model": "img", "inputs": [{"name": "image", "files": images}],
             "parameters": {"top_k": 3}},
            {"call": "infer", "model": "asr", "inputs": [{"name": "audio", "files": [speech]}],
             "outputs": ["text"]},
        ]),
    );
    let mut v1 = daemon.inference().await;

    // Classification: label and score tensors [inputs, top_k], and the JSON.
    let want = v1
        .classify(ClassifyRequest {
            model: "cls".into(),
            inputs: texts
                .iter()
                .map(|t| TextInput {
                    text: t.to_string(),
                    text_pair: None,
                })
                .collect(),
            top_k: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok(&answers[0])["id"], "request-7");
    assert_eq!(ok(&answers[0])["model_version"], "1");
    let (labels, scores) = (output(&answers[0], "label"), output(&answers[0], "score"));
    assert_eq!(labels["shape"], json!([2, 2]));
    assert_eq!(scores["datatype"], "FP32");
    for (i, result) in want.results.iter().enumerate() {
        let parsed: Value = serde_json::from_str(output(&answers[0], "result")["data"][i].as_str().unwrap()).unwrap();
        for (j, label) in result.labels.iter().enumerate() {
            assert_eq!(labels["data"][2 * i + j], label.label.as_str());
            assert_close_with(
                scores["data"][2 * i + j].as_f64().unwrap() as f32,
                label.score.into(),
                1e-6,
                "score",
            );
            assert_eq!(parsed["labels"][j]["label"], label.label.as_str());
        }
    }

    // Embeddings: [inputs, dimensions].
    let want = v1
        .embed(EmbedRequest {
            model: "emb".into(),
            inputs: texts.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let embedding = output(&answers[1], "embedding");
    let dims = want.results[0].embedding.len();
    assert_eq!(embedding["shape"], json!([2, dims]));
    for (i, result) in want.results.iter().enumerate() {
        for (j, value) in result.embedding.iter().enumerate() {
            assert_close_with(
                embedding["data"][i * dims + j].as_f64().unwrap() as f32,
                (*value).into(),
                1e-5,
                "embedding",
            );
        }
    }

    // Generation.
    let want = v1
        .generate(GenerateRequest {
            model: "gen".into(),
            inputs: vec!["Once upon a time".into()],
            max_new_tokens: Some(8),
            do_sample: Some(false),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let generated = output(&answers[2], "generated_text");
    assert_eq!(generated["shape"], json!([1, 1]));
    assert_eq!(
        generated["data"][0],
        want.results[0].sequences[0].generated_text.as_str()
    );

    // Image classification, the images sent as their files.
    let want = v1
        .classify_image(ClassifyImageRequest {
            model: "img".into(),
            inputs: images
                .iter()
                .map(|p| ImageInput {
                    data: std::fs::read(p).unwrap(),
                })
                .collect(),
            top_k: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (labels, scores) = (output(&answers[3], "label"), output(&answers[3], "score"));
    assert_eq!(labels["shape"], json!([2, 3]));
    for (i, result) in want.results.iter().enumerate() {
        for (j, label) in result.labels.iter().enumerate() {
            assert_eq!(labels["data"][3 * i + j], label.label.as_str());
            assert_close_with(
                scores["data"][3 * i + j].as_f64().unwrap() as f32,
                label.score.into(),
                1e-5,
                "score",
            );
        }
    }

    // Speech recognition (Whisper tiny.en, real weights), only the output
    // asked for.
    let want = v1
        .transcribe(TranscribeRequest {
            model: "asr".into(),
            inputs: vec![AudioInput {
                data: std::fs::read(&speech).unwrap(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let outputs = ok(&answers[4])["outputs"].as_object().unwrap();
    assert_eq!(outputs.keys().collect::<Vec<_>>(), ["text"]);
    assert!(!want.results[0].text.trim().is_empty());
    assert_eq!(outputs["text"]["data"][0], want.results[0].text.as_str());
}

#[tokio::test]
async fn tritonclient_loads_and_unloads_models_through_the_repository_rpcs() {
    let daemon = Daemon::start(&[]).await;
    let source = fixture_model("bert-cls");
    let answers = triton_calls(
        &daemon,
        &json!([
            {"call": "load", "model": "later", "config": {"task": "text-classification", "source": source}},
            {"call": "model_ready", "model": "later"},
            {"call": "infer", "model": "later", "inputs": [{"name": "text", "texts": ["loaded through v2"]}]},
            {"call": "unload", "model": "later"},
            {"call": "model_ready", "model": "later"},
            {"call": "load", "model": "broken", "config": {"task": "text-classification", "sauce": "x"}},
            {"call": "load", "model": "nowhere", "config": {"task": "text-classification",
                                                           "source": "/nonexistent/model"}},
        ]),
    );
    ok(&answers[0]);
    assert_eq!(ok(&answers[1]), &json!(true));
    assert_eq!(output(&answers[2], "label")["shape"], json!([1, 1]));
    ok(&answers[3]);
    assert_eq!(answers[4]["error"]["status"], "StatusCode.NOT_FOUND", "{}", answers[4]);
    let unknown = &answers[5]["error"];
    assert_eq!(unknown["status"], "StatusCode.INVALID_ARGUMENT", "{unknown}");
    assert!(unknown["message"].as_str().unwrap().contains("sauce"), "{unknown}");
    assert!(answers[6].get("error").is_some(), "{}", answers[6]);
}

fn text_tensor(name: &str, texts: &[&str]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![texts.len() as i64],
        contents: Some(InferTensorContents {
            bytes_contents: texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn raw_bytes(elements: &[&[u8]]) -> Vec<u8> {
    elements
        .iter()
        .flat_map(|e| (e.len() as u32).to_le_bytes().into_iter().chain(e.iter().copied()))
        .collect()
}

#[tokio::test]
async fn typed_and_raw_contents_both_work_and_the_answer_comes_back_the_same_way() {
    let daemon = daemon_with(&[("cls", "text-classification", "bert-cls")]).await;
    let mut v2 = GrpcInferenceServiceClient::new(daemon.channel().await);
    assert!(v2.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    let typed = v2
        .model_infer(ModelInferRequest {
            model_name: "cls".into(),
            inputs: vec![text_tensor("text", &["good", "bad"])],
            outputs: vec![InferRequestedOutputTensor {
                name: "score".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(typed.raw_output_contents.is_empty());
    assert_eq!(typed.outputs.len(), 1);
    let typed_scores = typed.outputs[0].contents.as_ref().unwrap().fp32_contents.clone();
    assert_eq!(typed.outputs[0].shape, [2, 1]);

    let mut raw_tensor = text_tensor("text", &["good", "bad"]);
    raw_tensor.contents = None;
    let raw = v2
        .model_infer(ModelInferRequest {
            model_name: "cls".into(),
            inputs: vec![raw_tensor],
            outputs: vec![InferRequestedOutputTensor {
                name: "score".into(),
                ..Default::default()
            }],
            raw_input_contents: vec![raw_bytes(&[b"good", b"bad"])],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(raw.outputs[0].contents.is_none());
    let raw_scores: Vec<f32> = raw.raw_output_contents[0]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(raw_scores, typed_scores);
}

#[tokio::test]
async fn malformed_v2_requests_are_refused_saying_what_is_wrong() {
    let daemon = daemon_with(&[("cls", "text-classification", "bert-cls")]).await;
    let mut v2 = GrpcInferenceServiceClient::new(daemon.channel().await);
    let request = |inputs: Vec<InferInputTensor>| ModelInferRequest {
        model_name: "cls".into(),
        inputs,
        ..Default::default()
    };
    let with_params = |params: &[(&str, ParameterChoice)]| {
        let mut r = request(vec![text_tensor("text", &["good"])]);
        r.parameters = params
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    InferParameter {
                        parameter_choice: Some(v.clone()),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        r
    };
    let mut fp32 = text_tensor("text", &[]);
    fp32.datatype = "FP32".into();
    fp32.shape = vec![1];
    fp32.contents = Some(InferTensorContents {
        fp32_contents: vec![1.0],
        ..Default::default()
    });
    let mut short = text_tensor("text", &["one", "two"]);
    short.shape = vec![3];
    let mut negative = text_tensor("text", &["one"]);
    negative.shape = vec![-1];
    let mut both = request(vec![text_tensor("text", &["good"])]);
    both.raw_input_contents = vec![raw_bytes(&[b"good"])];
    let mut not_prefixed = request(vec![InferInputTensor {
        contents: None,
        ..text_tensor("text", &["x"])
    }]);
    not_prefixed.raw_input_contents = vec![b"good".to_vec()];
    let mut unknown_output = request(vec![text_tensor("text", &["good"])]);
    unknown_output.outputs = vec![InferRequestedOutputTensor {
        name: "logits".into(),
        ..Default::default()
    }];
    let mut not_utf8 = text_tensor("text", &[]);
    not_utf8.shape = vec![1];
    not_utf8.contents = Some(InferTensorContents {
        bytes_contents: vec![vec![0xff, 0xfe]],
        ..Default::default()
    });
    let cases: Vec<(&str, ModelInferRequest, Code, &str)> = vec![
        (
            "wrong datatype",
            request(vec![fp32]),
            Code::InvalidArgument,
            "must be BYTES",
        ),
        (
            "shape not matching",
            request(vec![short]),
            Code::InvalidArgument,
            "shape [3]",
        ),
        (
            "negative dimension",
            request(vec![negative]),
            Code::InvalidArgument,
            "-1",
        ),
        (
            "unknown input",
            request(vec![text_tensor("sentence", &["good"])]),
            Code::InvalidArgument,
            "takes: text, text_pair",
        ),
        (
            "input twice",
            request(vec![text_tensor("text", &["a"]), text_tensor("text", &["b"])]),
            Code::InvalidArgument,
            "twice",
        ),
        ("no input", request(vec![]), Code::InvalidArgument, "`text` is missing"),
        (
            "inputs of different lengths",
            request(vec![text_tensor("text", &["a", "b"]), text_tensor("text_pair", &["c"])]),
            Code::InvalidArgument,
            "one element per item",
        ),
        ("raw and typed", both, Code::InvalidArgument, "every input one way"),
        (
            "raw not BYTES",
            not_prefixed,
            Code::InvalidArgument,
            "4-byte little-endian length",
        ),
        ("not UTF-8", request(vec![not_utf8]), Code::InvalidArgument, "not UTF-8"),
        (
            "unknown parameter",
            with_params(&[("temperature", ParameterChoice::DoubleParam(0.5))]),
            Code::InvalidArgument,
            "unknown parameter `temperature`",
        ),
        (
            "parameter of the wrong type",
            with_params(&[("top_k", ParameterChoice::StringParam("many".into()))]),
            Code::InvalidArgument,
            "top_k",
        ),
        (
            "option out of range",
            with_params(&[("function_to_apply", ParameterChoice::StringParam("cube".into()))]),
            Code::InvalidArgument,
            "cube",
        ),
        (
            "unknown output",
            unknown_output,
            Code::InvalidArgument,
            "unknown output `logits`",
        ),
        (
            "unknown model",
            ModelInferRequest {
                model_name: "nope".into(),
                ..request(vec![text_tensor("text", &["good"])])
            },
            Code::NotFound,
            "cls",
        ),
        (
            "unknown version",
            ModelInferRequest {
                model_version: "2".into(),
                ..request(vec![text_tensor("text", &["good"])])
            },
            Code::NotFound,
            "one version",
        ),
    ];
    for (what, request, code, says) in cases {
        let status = v2.model_infer(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(says),
            "{what}: {:?} does not say {says:?}",
            status.message()
        );
    }
    let missing = v2
        .model_ready(ModelReadyRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .expect_err("unknown model");
    assert_eq!(missing.code(), Code::NotFound);
    // The daemon is still fine.
    let fine = v2.model_infer(request(vec![text_tensor("text", &["good"])])).await;
    assert!(fine.is_ok(), "{fine:?}");
}

#[tokio::test]
async fn kserve_v2_over_http_answers_as_the_grpc_service_does() {
    let daemon = Daemon::start(&[
        "--http-listen",
        "127.0.0.1:0",
        "--model",
        &format!("cls:text-classification={}", fixture_model("bert-cls")),
        "--model",
        &format!("img:image-classification={}", fixture_model("vit-cls")),
    ])
    .await;
    let call = |method: &str, path: &str, body: Value| {
        let (status, body) = daemon.http_call(method, path, "application/json", body.to_string().as_bytes());
        (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
    };
    let (status, server) = call("GET", "/v2", Value::Null);
    assert_eq!((status, server["name"].as_str()), (200, Some("inferd")));
    let (status, metadata) = call("GET", "/v2/models/cls", Value::Null);
    assert_eq!(status, 200);
    assert_eq!(metadata["platform"], "inferd/text-classification");
    assert_eq!(call("GET", "/v2/models/cls/ready", Value::Null).0, 200);
    assert_eq!(call("GET", "/v2/models/cls/versions/1/ready", Value::Null).0, 200);
    let (status, missing) = call("GET", "/v2/models/nope/ready", Value::Null);
    assert_eq!(status, 404, "{missing}");

    // Text, against the gRPC service's answer.
    let (status, answer) = call(
        "POST",
        "/v2/models/cls/infer",
        json!({"id": "r1", "parameters": {"top_k": 2},
               "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], "r1");
    let mut v2 = GrpcInferenceServiceClient::new(daemon.channel().await);
    let mut request = ModelInferRequest {
        model_name: "cls".into(),
        inputs: vec![text_tensor("text", &["good", "bad"])],
        ..Default::default()
    };
    request.parameters.insert(
        "top_k".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(2)),
        },
    );
    let grpc = v2.model_infer(request).await.unwrap().into_inner();
    let score = |name: &str| {
        answer["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()
            .clone()
    };
    let grpc_scores = &grpc
        .outputs
        .iter()
        .find(|o| o.name == "score")
        .unwrap()
        .contents
        .as_ref()
        .unwrap()
        .fp32_contents;
    let rest_scores: Vec<f32> = score("score")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(&rest_scores, grpc_scores);
    assert_eq!(score("label")["shape"], json!([2, 2]));

    // An image, base64-encoded in the JSON.
    let png = std::fs::read(image("coffee.png")).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
    let (status, answer) = call(
        "POST",
        "/v2/models/img/infer",
        json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [encoded]}],
               "outputs": [{"name": "label"}]}),
    );
    assert_eq!(status, 200, "{answer}");
    let want = v1_image_label(&daemon, &png).await;
    assert_eq!(answer["outputs"][0]["data"][0], want.as_str());

    // Errors: the protocol's {"error": ...} with the status's code.
    let (status, error) = call(
        "POST",
        "/v2/models/cls/infer",
        json!({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}),
    );
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("shape [3]"), "{error}");
    let (status, _) = call("POST", "/v2/models/nope/infer", json!({"inputs": []}));
    assert_eq!(status, 404);
    // tritonclient.http adds the parameter binary_data_output; it is
    // accepted and changes nothing.
    let (status, answer) = call(
        "POST",
        "/v2/models/cls/infer",
        json!({"parameters": {"binary_data_output": true},
               "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["good"]}]}),
    );
    assert_eq!(status, 200, "{answer}");
}

async fn v1_image_label(daemon: &Daemon, png: &[u8]) -> String {
    daemon
        .inference()
        .await
        .classify_image(ClassifyImageRequest {
            model: "img".into(),
            inputs: vec![ImageInput { data: png.to_vec() }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results[0]
        .labels[0]
        .label
        .clone()
}
