//! inferctl: the command-line client of inferd. One subcommand per task,
//! plus model and plugin management; tables for people, `--json` for scripts.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use inferd_proto::prost_types::{value::Kind, Struct, Value};
use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::models_client::ModelsClient;
use inferd_proto::v1::{
    AnswerQuestionRequest, AudioInput, ClassifyImageRequest, ClassifyRequest, ClassifyTokensRequest, EmbedRequest,
    FillMaskRequest, GenerateRequest, GetModelRequest, ImageInput, ListModelsRequest, ListPluginsRequest,
    LoadModelRequest, ModelInfo, ModelOptions, ModelState, QuestionInput, RunInput, RunRequest, StringList,
    SummarizeRequest, TextInput, TranscribeRequest, TranslateRequest, UnloadModelRequest, ZeroShotClassifyRequest,
};
use serde_json::{json, Value as Json};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "inferctl",
    version,
    about = "Command-line client for the inferd inference daemon"
)]
struct Cli {
    /// Address of the daemon.
    #[arg(long, global = true, env = "INFERD_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Generation settings of `summarize` and `translate`; each one absent
/// takes the model's own, as pipeline() resolves them.
#[derive(clap::Args)]
struct Seq2SeqArgs {
    /// Shortest output, in tokens (counting the decoder's start token).
    #[arg(long)]
    min_length: Option<u32>,
    /// Longest output, in tokens (counting the decoder's start token).
    #[arg(long)]
    max_length: Option<u32>,
    /// Instead of --max-length: at most this many new tokens.
    #[arg(long)]
    max_new_tokens: Option<u32>,
    /// Beams of the beam search (1: greedy).
    #[arg(long)]
    num_beams: Option<u32>,
    /// Exponent of the length in the beam score (above 1 favours longer outputs).
    #[arg(long)]
    length_penalty: Option<f32>,
    /// true, false or never.
    #[arg(long)]
    early_stopping: Option<String>,
    /// Never repeat an n-gram of this size.
    #[arg(long)]
    no_repeat_ngram_size: Option<u32>,
    /// Outputs per input, best first (at most --num-beams).
    #[arg(long)]
    num_return_sequences: Option<u32>,
}

/// A SummarizeRequest or TranslateRequest with the given fields and the
/// generation settings of a `Seq2SeqArgs` (both messages name them alike).
macro_rules! with_settings {
    ($message:ident { $($field:ident: $value:expr),* $(,)? }, $settings:expr) => {{
        let s: Seq2SeqArgs = $settings;
        $message {
            $($field: $value,)*
            min_length: s.min_length,
            max_length: s.max_length,
            max_new_tokens: s.max_new_tokens,
            num_beams: s.num_beams,
            length_penalty: s.length_penalty,
            early_stopping: s.early_stopping.unwrap_or_default(),
            no_repeat_ngram_size: s.no_repeat_ngram_size,
            num_return_sequences: s.num_return_sequences,
        }
    }};
}

#[derive(Subcommand)]
enum Command {
    /// Text classification / sentiment analysis.
    Classify {
        /// Texts to classify (each is one input).
        #[arg(required = true)]
        texts: Vec<String>,
        /// Second text of a pair; give one per text.
        #[arg(long)]
        pair: Vec<String>,
        /// Labels to return per text (0 = all; default 1).
        #[arg(long)]
        top_k: Option<u32>,
        /// softmax, sigmoid or none (default: as pipeline() picks).
        #[arg(long = "function")]
        function_to_apply: Option<String>,
        /// Model name (default: the task's default model).
        #[arg(long)]
        model: Option<String>,
    },
    /// Zero-shot classification against candidate labels.
    ZeroShot {
        #[arg(required = true)]
        texts: Vec<String>,
        /// Candidate labels (repeat, or separate with commas).
        #[arg(long = "labels", required = true, value_delimiter = ',')]
        labels: Vec<String>,
        /// Hypothesis template with {} for the label.
        #[arg(long)]
        template: Option<String>,
        /// Score each label independently.
        #[arg(long)]
        multi_label: bool,
        #[arg(long)]
        model: Option<String>,
    },
    /// Fill the mask token ([MASK], <mask>, ...) in texts.
    FillMask {
        #[arg(required = true)]
        texts: Vec<String>,
        #[arg(long)]
        top_k: Option<u32>,
        /// Only consider these words (repeatable).
        #[arg(long = "target")]
        targets: Vec<String>,
        #[arg(long)]
        model: Option<String>,
    },
    /// Named entities (token classification).
    Ner {
        #[arg(required = true)]
        texts: Vec<String>,
        /// none, simple, first, average or max.
        #[arg(long, default_value = "none")]
        aggregation: String,
        /// Labels to leave out (default O); give --ignore-label "" to keep all.
        #[arg(long = "ignore-label")]
        ignore_labels: Option<Vec<String>>,
        #[arg(long)]
        model: Option<String>,
    },
    /// Extractive question answering.
    Qa {
        #[arg(long)]
        question: String,
        #[arg(long)]
        context: String,
        #[arg(long)]
        top_k: Option<u32>,
        #[arg(long)]
        handle_impossible_answer: bool,
        #[arg(long)]
        model: Option<String>,
    },
    /// Sentence embeddings (feature extraction).
    Embed {
        #[arg(required = true)]
        texts: Vec<String>,
        /// mean, cls, max or none (default: the checkpoint's pooling).
        #[arg(long)]
        pooling: Option<String>,
        /// L2-normalise (default: as the checkpoint says).
        #[arg(long)]
        normalize: Option<bool>,
        /// Also print every token's vector.
        #[arg(long)]
        tokens: bool,
        #[arg(long)]
        model: Option<String>,
    },
    /// Text generation: continue prompts (greedy by default here; --sample to sample).
    Generate {
        #[arg(required = true)]
        prompts: Vec<String>,
        #[arg(long)]
        max_new_tokens: Option<u32>,
        /// Sample instead of greedy decoding.
        #[arg(long)]
        sample: bool,
        #[arg(long)]
        temperature: Option<f32>,
        #[arg(long)]
        top_k: Option<u32>,
        #[arg(long)]
        top_p: Option<f32>,
        #[arg(long)]
        repetition_penalty: Option<f32>,
        #[arg(long)]
        no_repeat_ngram_size: Option<u32>,
        #[arg(long)]
        seed: Option<u64>,
        /// Stop sequence (repeatable).
        #[arg(long = "stop")]
        stop: Vec<String>,
        /// Print tokens as they arrive (one prompt).
        #[arg(long)]
        stream: bool,
        #[arg(long)]
        model: Option<String>,
    },
    /// Image classification of image files.
    ClassifyImage {
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Labels per image (default 5; 0 = all).
        #[arg(long)]
        top_k: Option<u32>,
        #[arg(long = "function")]
        function_to_apply: Option<String>,
        #[arg(long)]
        model: Option<String>,
    },
    /// Summarize texts (each argument is a file path or the text itself).
    Summarize {
        #[arg(required = true)]
        inputs: Vec<String>,
        #[command(flatten)]
        settings: Seq2SeqArgs,
        #[arg(long)]
        model: Option<String>,
    },
    /// Translate texts, e.g. `inferctl translate "How are you?" --from en --to fr`.
    Translate {
        #[arg(required = true)]
        texts: Vec<String>,
        /// Source language (e.g. en); with --to. Default: the model's.
        #[arg(long = "from")]
        src_lang: Option<String>,
        /// Target language (e.g. fr).
        #[arg(long = "to")]
        tgt_lang: Option<String>,
        #[command(flatten)]
        settings: Seq2SeqArgs,
        #[arg(long)]
        model: Option<String>,
    },
    /// Speech recognition of audio files (WAV, FLAC, MP3, OGG/Vorbis).
    Transcribe {
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Also print the words (or characters) with their times.
        #[arg(long, value_parser = ["char", "word"])]
        timestamps: Option<String>,
        /// Transcribe in chunks of this many seconds (for long audio).
        #[arg(long)]
        chunk_length_s: Option<f64>,
        /// Overlap of the chunks: one value, or LEFT,RIGHT (default chunk/6).
        #[arg(long, value_delimiter = ',')]
        stride_length_s: Vec<f64>,
        #[arg(long)]
        model: Option<String>,
    },
    /// Run a custom plugin task, e.g. `inferctl run word-count "some text" --param top=2`.
    Run {
        task: String,
        texts: Vec<String>,
        /// Parameter as KEY=VALUE (VALUE parsed as JSON when it can be).
        #[arg(long = "param")]
        params: Vec<String>,
        #[arg(long)]
        model: Option<String>,
    },
    /// Manage models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// List loaded plugins and their tasks.
    Plugins,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List loaded models.
    List,
    /// Show one model.
    Get { name: String },
    /// Load a model from a hub id or a local directory.
    Load {
        /// Hub id (org/name) or local directory.
        source: String,
        /// pipeline() task, e.g. text-classification.
        #[arg(long)]
        task: String,
        /// Name for requests (default: the source).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        revision: Option<String>,
        /// Device(s): cpu, cuda, cuda:N.
        #[arg(long = "device")]
        devices: Vec<String>,
        #[arg(long, default_value_t = 1)]
        instances: u32,
        /// Make it the default model of its task.
        #[arg(long)]
        default: bool,
        /// Most requests one instance runs together (default: the daemon's).
        #[arg(long)]
        max_batch_size: Option<u32>,
        /// Milliseconds a request may wait for others to join its batch.
        #[arg(long)]
        max_queue_delay_ms: Option<u32>,
        /// Requests waiting before new ones are refused.
        #[arg(long)]
        queue_size: Option<u32>,
        /// LibTorch threads per operation on each instance.
        #[arg(long)]
        intra_op_threads: Option<u32>,
    },
    /// Unload a model and free its memory.
    Unload { name: String },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("inferctl: {e:#}");
        std::process::exit(1);
    }
}

async fn connect(addr: &str) -> Result<Channel> {
    let addr = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Channel::from_shared(addr.clone())
        .context("invalid --addr")?
        .connect()
        .await
        .with_context(|| format!("cannot connect to inferd at {addr} (is it running?)"))
}

/// A gRPC error as the daemon phrased it.
fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

async fn run(cli: Cli) -> Result<()> {
    let channel = connect(&cli.addr).await?;
    match cli.command {
        Command::Classify {
            texts,
            pair,
            top_k,
            function_to_apply,
            model,
        } => {
            if !pair.is_empty() && pair.len() != texts.len() {
                bail!("give one --pair per text ({} texts, {} pairs)", texts.len(), pair.len());
            }
            let inputs = texts
                .iter()
                .enumerate()
                .map(|(i, text)| TextInput {
                    text: text.clone(),
                    text_pair: pair.get(i).cloned(),
                })
                .collect();
            let request = ClassifyRequest {
                model: model.unwrap_or_default(),
                inputs,
                top_k,
                function_to_apply: function_to_apply.unwrap_or_default(),
            };
            let response = InferenceClient::new(channel)
                .classify(request)
                .await
                .map_err(status)?
                .into_inner();
            print_classifications(texts.iter().map(String::as_str), &response.results, cli.json)?;
        }
        Command::ZeroShot {
            texts,
            labels,
            template,
            multi_label,
            model,
        } => {
            let request = ZeroShotClassifyRequest {
                model: model.unwrap_or_default(),
                inputs: texts,
                candidate_labels: labels,
                hypothesis_template: template.unwrap_or_default(),
                multi_label,
            };
            let response = InferenceClient::new(channel)
                .zero_shot_classify(request)
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                let out: Vec<Json> = response
                    .results
                    .iter()
                    .map(|r| json!({"sequence": r.sequence, "labels": r.labels, "scores": r.scores}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for r in &response.results {
                    println!("{}", r.sequence);
                    for (label, score) in r.labels.iter().zip(&r.scores) {
                        println!("  {label:<24} {score:.4}");
                    }
                }
            }
        }
        Command::FillMask {
            texts,
            top_k,
            targets,
            model,
        } => {
            let request = FillMaskRequest {
                model: model.unwrap_or_default(),
                inputs: texts.clone(),
                top_k,
                targets,
            };
            let response = InferenceClient::new(channel)
                .fill_mask(request)
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                let out: Vec<Json> = response
                    .results
                    .iter()
                    .map(|r| {
                        let masks = r.masks.iter().map(|m| {
                            let candidates = m.candidates.iter().map(|c| {
                                json!({"score": c.score, "token": c.token, "token_str": c.token_str, "sequence": c.sequence})
                            });
                            Json::Array(candidates.collect())
                        });
                        Json::Array(masks.collect())
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for (text, r) in texts.iter().zip(&response.results) {
                    println!("{text}");
                    for (i, m) in r.masks.iter().enumerate() {
                        if r.masks.len() > 1 {
                            println!("  mask {}:", i + 1);
                        }
                        for c in &m.candidates {
                            println!("  {:<16} {:.4}  {}", c.token_str, c.score, c.sequence);
                        }
                    }
                }
            }
        }
        Command::Ner {
            texts,
            aggregation,
            ignore_labels,
            model,
        } => {
            let request = ClassifyTokensRequest {
                model: model.unwrap_or_default(),
                inputs: texts.clone(),
                aggregation_strategy: aggregation,
                ignore_labels: ignore_labels.map(|labels| StringList {
                    values: labels.into_iter().filter(|l| !l.is_empty()).collect(),
                }),
            };
            let response = InferenceClient::new(channel)
                .classify_tokens(request)
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                let out: Vec<Json> = response
                    .results
                    .iter()
                    .map(|r| Json::Array(r.entities.iter().map(entity_json).collect()))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for (text, r) in texts.iter().zip(&response.results) {
                    println!("{text}");
                    println!(
                        "  {:<10} {:<24} {:>6} {:>5} {:>5}",
                        "ENTITY", "WORD", "SCORE", "START", "END"
                    );
                    for e in &r.entities {
                        let label = if e.entity_group.is_empty() {
                            &e.entity
                        } else {
                            &e.entity_group
                        };
                        println!(
                            "  {:<10} {:<24} {:>6.4} {:>5} {:>5}",
                            label, e.word, e.score, e.start, e.end
                        );
                    }
                }
            }
        }
        Command::Qa {
            question,
            context,
            top_k,
            handle_impossible_answer,
            model,
        } => {
            let request = AnswerQuestionRequest {
                model: model.unwrap_or_default(),
                inputs: vec![QuestionInput { question, context }],
                top_k,
                handle_impossible_answer,
                ..Default::default()
            };
            let response = InferenceClient::new(channel)
                .answer_question(request)
                .await
                .map_err(status)?
                .into_inner();
            let answers = &response.results[0].answers;
            if cli.json {
                let out: Vec<Json> = answers
                    .iter()
                    .map(|a| json!({"score": a.score, "start": a.start, "end": a.end, "answer": a.answer}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for a in answers {
                    println!("{:.4}  [{}..{}]  {}", a.score, a.start, a.end, a.answer);
                }
            }
        }
        Command::Embed {
            texts,
            pooling,
            normalize,
            tokens,
            model,
        } => {
            let request = EmbedRequest {
                model: model.unwrap_or_default(),
                inputs: texts.clone(),
                pooling: pooling.unwrap_or_default(),
                normalize,
                return_token_embeddings: tokens,
            };
            let response = InferenceClient::new(channel)
                .embed(request)
                .await
                .map_err(status)?
                .into_inner();
            if cli.json || tokens {
                let out: Vec<Json> = response
                    .results
                    .iter()
                    .map(|r| {
                        let tokens: Vec<Vec<f32>> = r.token_embeddings.iter().map(|t| t.values.clone()).collect();
                        json!({"embedding": r.embedding, "token_embeddings": tokens})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for (text, r) in texts.iter().zip(&response.results) {
                    let head: Vec<String> = r.embedding.iter().take(6).map(|v| format!("{v:.4}")).collect();
                    println!(
                        "{text}\n  [{}, ...] ({} dimensions)",
                        head.join(", "),
                        r.embedding.len()
                    );
                }
            }
        }
        Command::Generate {
            prompts,
            max_new_tokens,
            sample,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            no_repeat_ngram_size,
            seed,
            stop,
            stream,
            model,
        } => {
            let request = GenerateRequest {
                model: model.unwrap_or_default(),
                inputs: prompts,
                max_new_tokens,
                do_sample: Some(sample),
                temperature,
                top_k,
                top_p,
                repetition_penalty,
                no_repeat_ngram_size,
                seed,
                stop,
                ..Default::default()
            };
            let mut client = InferenceClient::new(channel);
            if stream {
                use std::io::Write;
                let mut messages = client.generate_stream(request).await.map_err(status)?.into_inner();
                let mut out = std::io::stdout();
                while let Some(message) = messages.message().await.map_err(status)? {
                    if cli.json {
                        println!(
                            "{}",
                            json!({"token_ids": message.token_ids, "text": message.text,
                                   "finish_reason": message.finish_reason, "generated_tokens": message.generated_tokens})
                        );
                    } else if message.finish_reason.is_empty() {
                        write!(out, "{}", message.text)?;
                        out.flush()?;
                    } else {
                        writeln!(out)?;
                        eprintln!("[{} after {} tokens]", message.finish_reason, message.generated_tokens);
                    }
                }
            } else {
                let response = client.generate(request).await.map_err(status)?.into_inner();
                if cli.json {
                    let out: Vec<Json> = response
                        .results
                        .iter()
                        .map(|r| {
                            Json::Array(
                                r.sequences
                                    .iter()
                                    .map(|s| json!({"generated_text": s.generated_text, "finish_reason": s.finish_reason}))
                                    .collect(),
                            )
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    for r in &response.results {
                        for s in &r.sequences {
                            println!(
                                "{}\n  [{} after {} tokens]",
                                s.generated_text, s.finish_reason, s.generated_tokens
                            );
                        }
                    }
                }
            }
        }
        Command::Summarize {
            inputs,
            settings,
            model,
        } => {
            let texts = inputs
                .iter()
                .map(|i| {
                    let path = std::path::Path::new(i);
                    if path.is_file() {
                        std::fs::read_to_string(path).with_context(|| format!("read {i}"))
                    } else {
                        Ok(i.clone())
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let request = with_settings!(
                SummarizeRequest {
                    model: model.unwrap_or_default(),
                    inputs: texts,
                },
                settings
            );
            let response = InferenceClient::new(channel)
                .summarize(request)
                .await
                .map_err(status)?
                .into_inner();
            let texts = response
                .results
                .iter()
                .map(|r| r.summaries.iter().map(|s| s.summary_text.as_str()).collect())
                .collect();
            print_texts(cli.json, "summary_text", texts)?;
        }
        Command::Translate {
            texts,
            src_lang,
            tgt_lang,
            settings,
            model,
        } => {
            let request = with_settings!(
                TranslateRequest {
                    model: model.unwrap_or_default(),
                    inputs: texts,
                    src_lang: src_lang.unwrap_or_default(),
                    tgt_lang: tgt_lang.unwrap_or_default(),
                },
                settings
            );
            let response = InferenceClient::new(channel)
                .translate(request)
                .await
                .map_err(status)?
                .into_inner();
            let texts = response
                .results
                .iter()
                .map(|r| r.translations.iter().map(|t| t.translation_text.as_str()).collect())
                .collect();
            print_texts(cli.json, "translation_text", texts)?;
        }
        Command::Transcribe {
            paths,
            timestamps,
            chunk_length_s,
            stride_length_s,
            model,
        } => {
            let inputs = paths
                .iter()
                .map(|p| {
                    std::fs::read(p)
                        .map(|data| AudioInput { data })
                        .with_context(|| format!("read {}", p.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let request = TranscribeRequest {
                model: model.unwrap_or_default(),
                inputs,
                return_timestamps: timestamps.unwrap_or_default(),
                chunk_length_s,
                stride_length_s,
            };
            let response = InferenceClient::new(channel)
                .transcribe(request)
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                let out: Vec<Json> = response
                    .results
                    .iter()
                    .map(|r| {
                        let mut o = json!({"text": r.text});
                        if !r.chunks.is_empty() {
                            o["chunks"] = r
                                .chunks
                                .iter()
                                .map(|c| json!({"text": c.text, "timestamp": c.timestamp}))
                                .collect();
                        }
                        o
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for (path, result) in paths.iter().zip(&response.results) {
                    println!("{}\n  {}", path.display(), result.text);
                    for c in &result.chunks {
                        let (start, end) = (c.timestamp.first().copied(), c.timestamp.get(1).copied());
                        println!(
                            "  {:>8.2} {:>8.2}  {}",
                            start.unwrap_or(0.0),
                            end.unwrap_or(0.0),
                            c.text
                        );
                    }
                }
            }
        }
        Command::ClassifyImage {
            paths,
            top_k,
            function_to_apply,
            model,
        } => {
            let inputs = paths
                .iter()
                .map(|p| {
                    std::fs::read(p)
                        .map(|data| ImageInput { data })
                        .with_context(|| format!("read {}", p.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let request = ClassifyImageRequest {
                model: model.unwrap_or_default(),
                inputs,
                top_k,
                function_to_apply: function_to_apply.unwrap_or_default(),
            };
            let response = InferenceClient::new(channel)
                .classify_image(request)
                .await
                .map_err(status)?
                .into_inner();
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            print_classifications(names.iter().map(String::as_str), &response.results, cli.json)?;
        }
        Command::Run {
            task,
            texts,
            params,
            model,
        } => {
            let mut fields = std::collections::BTreeMap::new();
            for p in params {
                let (k, v) = p
                    .split_once('=')
                    .with_context(|| format!("--param {p}: expected KEY=VALUE"))?;
                let json: Json = serde_json::from_str(v).unwrap_or_else(|_| Json::String(v.to_string()));
                fields.insert(k.to_string(), to_value(&json));
            }
            let request = RunRequest {
                model: model.unwrap_or_default(),
                task,
                parameters: Some(Struct { fields }),
                inputs: texts.into_iter().map(|text| RunInput { text, data: vec![] }).collect(),
            };
            let response = InferenceClient::new(channel)
                .run(request)
                .await
                .map_err(status)?
                .into_inner();
            let out: Vec<Json> = response
                .results
                .iter()
                .map(|r| r.output.as_ref().map(struct_to_json).unwrap_or(Json::Null))
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Models { command } => models(ModelsClient::new(channel), command, cli.json).await?,
        Command::Plugins => {
            let plugins = ModelsClient::new(channel)
                .list_plugins(ListPluginsRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .plugins;
            if cli.json {
                let out: Vec<Json> = plugins
                    .iter()
                    .map(|p| {
                        json!({"name": p.name, "version": p.version, "path": p.path, "abi_version": p.abi_version,
                            "tasks": p.tasks.iter().map(|t| json!({"name": t.name, "aliases": t.aliases,
                                "default_model": t.default_model, "architectures": t.architectures})).collect::<Vec<_>>()})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<10} {:<8} {:<22} {:<20} DEFAULT MODEL",
                    "PLUGIN", "VERSION", "TASK", "ALIASES"
                );
                for p in &plugins {
                    for t in &p.tasks {
                        println!(
                            "{:<10} {:<8} {:<22} {:<20} {}",
                            p.name,
                            p.version,
                            t.name,
                            t.aliases.join(","),
                            t.default_model
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

async fn models(mut client: ModelsClient<Channel>, command: ModelsCommand, as_json: bool) -> Result<()> {
    let print = |models: &[ModelInfo]| {
        if as_json {
            let out: Vec<Json> = models.iter().map(model_json).collect();
            println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        } else {
            println!(
                "{:<28} {:<26} {:<8} {:<10} {:>9} {:>5} {:>9}  SOURCE",
                "NAME", "TASK", "STATE", "DEVICES", "MEMORY", "BATCH", "QUEUED"
            );
            for m in models {
                let default = if m.is_default { "*" } else { "" };
                let options = m.options.unwrap_or_default();
                println!(
                    "{:<28} {:<26} {:<8} {:<10} {:>7.1}MB {:>5} {:>9}  {}{}",
                    format!("{}{default}", m.name),
                    m.task,
                    state_name(m.state),
                    m.instances
                        .iter()
                        .map(|i| i.device.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    m.memory_bytes as f64 / 1e6,
                    options.max_batch_size.map_or("-".into(), |n| n.to_string()),
                    options
                        .queue_size
                        .map_or("-".into(), |n| format!("{}/{n}", m.queue_depth)),
                    m.source,
                    if m.error.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", m.error)
                    }
                );
            }
        }
    };
    match command {
        ModelsCommand::List => {
            let models = client
                .list_models(ListModelsRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .models;
            print(&models);
        }
        ModelsCommand::Get { name } => {
            let model = client
                .get_model(GetModelRequest { name })
                .await
                .map_err(status)?
                .into_inner();
            print(&[model]);
        }
        ModelsCommand::Load {
            source,
            task,
            name,
            revision,
            devices,
            instances,
            default,
            max_batch_size,
            max_queue_delay_ms,
            queue_size,
            intra_op_threads,
        } => {
            let request = LoadModelRequest {
                name: name.unwrap_or_default(),
                source,
                revision: revision.unwrap_or_default(),
                task,
                devices,
                instances,
                make_default: default,
                options: Some(ModelOptions {
                    max_batch_size,
                    max_queue_delay_ms,
                    queue_size,
                    intra_op_threads,
                }),
            };
            let model = client.load_model(request).await.map_err(status)?.into_inner();
            print(&[model]);
        }
        ModelsCommand::Unload { name } => {
            client
                .unload_model(UnloadModelRequest { name: name.clone() })
                .await
                .map_err(status)?;
            if !as_json {
                println!("unloaded {name}");
            }
        }
    }
    Ok(())
}

/// Label/score lists, one per input: a table under each input's name, or JSON.
fn print_classifications<'a>(
    names: impl Iterator<Item = &'a str>,
    results: &[inferd_proto::v1::Classification],
    as_json: bool,
) -> Result<()> {
    if as_json {
        let out: Vec<Json> = results
            .iter()
            .map(|r| {
                Json::Array(
                    r.labels
                        .iter()
                        .map(|l| json!({"label": l.label, "score": l.score}))
                        .collect(),
                )
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (name, result) in names.zip(results) {
            println!("{name}");
            for l in &result.labels {
                println!("  {:<24} {:.4}", l.label, l.score);
            }
        }
    }
    Ok(())
}

/// Prints each input's generated texts: one per line, or with --json
/// pipeline()'s list of `{key: text}` records per input.
fn print_texts(as_json: bool, key: &str, per_input: Vec<Vec<&str>>) -> Result<()> {
    if as_json {
        let record = |text: &str| Json::Object([(key.to_string(), Json::from(text))].into_iter().collect());
        let out: Vec<Json> = per_input
            .iter()
            .map(|texts| Json::Array(texts.iter().map(|t| record(t)).collect()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for text in per_input.iter().flatten() {
            println!("{}", text.trim());
        }
    }
    Ok(())
}

fn entity_json(e: &inferd_proto::v1::TokenEntity) -> Json {
    let mut o = json!({"score": e.score, "word": e.word, "start": e.start, "end": e.end});
    if e.entity_group.is_empty() {
        o["entity"] = json!(e.entity);
        o["index"] = json!(e.index);
    } else {
        o["entity_group"] = json!(e.entity_group);
    }
    o
}

fn state_name(state: i32) -> &'static str {
    match ModelState::try_from(state) {
        Ok(ModelState::Loading) => "loading",
        Ok(ModelState::Ready) => "ready",
        Ok(ModelState::Failed) => "failed",
        _ => "unknown",
    }
}

fn model_json(m: &ModelInfo) -> Json {
    json!({
        "name": m.name, "task": m.task, "source": m.source, "path": m.path,
        "architecture": m.architecture, "plugin": m.plugin, "state": state_name(m.state),
        "devices": m.instances.iter().map(|i| i.device.clone()).collect::<Vec<_>>(),
        "memory_bytes": m.memory_bytes, "is_default": m.is_default, "labels": m.labels, "error": m.error,
        "queue_depth": m.queue_depth,
        "options": m.options.as_ref().map(|o| json!({
            "max_batch_size": o.max_batch_size, "max_queue_delay_ms": o.max_queue_delay_ms,
            "queue_size": o.queue_size, "intra_op_threads": o.intra_op_threads,
        })),
    })
}

fn to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(inferd_proto::prost_types::ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

fn value_to_json(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        // Struct numbers are doubles; show whole ones as integers.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => json!(*n as i64),
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

fn struct_to_json(s: &Struct) -> Json {
    Json::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}
