//! Everything inferctl prints: each kind of answer as a table for people or,
//! with `--json`, as pretty JSON in pipeline()'s shapes. Commands hand their
//! responses here and print nothing themselves.

mod table;

use std::io::Write;

use anyhow::Result;
use inferd_proto::prost_types::{value::Kind, Struct, Value};
use inferd_proto::v1::{
    Answer, Classification, DepthMap, DetectedObject, Detections, Embedding, FillMaskResult, GenerateResult,
    GenerateStreamResponse, ModelInfo, ModelState, PluginInfo, RunResult, Segment, Segmentation, Speech,
    TokenClassification, TokenEntity, TranscribeStreamResponse, Transcription, TranscriptionChunk, ZeroShotResult,
};
use serde_json::{json, Value as Json};

use table::{Column, Table};

/// Labels with their scores, under each input.
const LABEL_SCORES: Table = Table::indented(&[Column::left(24), Column::unpadded()]);
/// Fill-mask candidates: token, score and the filled-in text.
const CANDIDATES: Table = Table::indented(&[Column::left(16), Column::unpadded(), Column::unpadded().apart()]);
const ENTITIES: Table = Table::indented(&[
    Column::left(10),
    Column::left(24),
    Column::right(6),
    Column::right(5),
    Column::right(5),
]);
/// Question answering: score, character span, answer.
const ANSWERS: Table = Table::flush(&[
    Column::unpadded(),
    Column::unpadded().apart(),
    Column::unpadded().apart(),
]);
/// Detected objects: score, label, box corners.
const OBJECTS: Table = Table::indented(&[
    Column::left(8),
    Column::left(20),
    Column::right(6),
    Column::right(6),
    Column::right(6),
    Column::right(6),
]);
/// Segments: score (or -), label, pixels.
const SEGMENTS: Table = Table::indented(&[Column::left(8), Column::left(20), Column::right(8)]);
/// Transcription chunks: start and end in seconds, text.
const CHUNKS: Table = Table::indented(&[Column::right(8), Column::right(8), Column::unpadded().apart()]);
const MODELS: Table = Table::flush(&[
    Column::left(28),
    Column::left(26),
    Column::left(8),
    Column::left(10),
    Column::right(9),
    Column::right(5),
    Column::right(9),
    Column::unpadded().apart(),
]);
const PLUGINS: Table = Table::flush(&[
    Column::left(10),
    Column::left(8),
    Column::left(22),
    Column::left(20),
    Column::unpadded(),
]);

/// `--json`, and the printing it decides: each kind of answer has a method
/// here that prints it one way or the other.
#[derive(clap::Args)]
pub struct Output {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

impl Output {
    /// Prints `json()` with --json; otherwise `table` prints the table form.
    fn print(&self, json: impl FnOnce() -> Json, table: impl FnOnce()) -> Result<()> {
        if self.json {
            print_json(&json())
        } else {
            table();
            Ok(())
        }
    }

    /// Label/score lists, one per input: a table under each input's name.
    pub fn classifications(&self, names: &[String], results: &[Classification]) -> Result<()> {
        self.print(
            || {
                let labels = |r: &Classification| {
                    let labels = r.labels.iter().map(|l| json!({"label": l.label, "score": l.score}));
                    Json::Array(labels.collect())
                };
                Json::Array(results.iter().map(labels).collect())
            },
            || {
                for (name, result) in names.iter().zip(results) {
                    println!("{name}");
                    for l in &result.labels {
                        LABEL_SCORES.row(&[&l.label, &format!("{:.4}", l.score)]);
                    }
                }
            },
        )
    }

    /// Each image's objects, or with --json pipeline()'s records:
    /// `{score, label, box: {xmin, ymin, xmax, ymax}}` per object.
    pub fn detections(&self, names: &[String], results: &[Detections]) -> Result<()> {
        let corners = |o: &DetectedObject| o.r#box.unwrap_or_default();
        self.print(
            || {
                let record = |o: &DetectedObject| {
                    let b = corners(o);
                    json!({"score": o.score, "label": o.label,
                           "box": {"xmin": b.xmin, "ymin": b.ymin, "xmax": b.xmax, "ymax": b.ymax}})
                };
                let objects = |r: &Detections| Json::Array(r.objects.iter().map(record).collect());
                Json::Array(results.iter().map(objects).collect())
            },
            || {
                for (name, result) in names.iter().zip(results) {
                    println!("{name}: {} objects", result.objects.len());
                    for o in &result.objects {
                        let b = corners(o);
                        OBJECTS.row(&[&format!("{:.4}", o.score), &o.label, &b.xmin, &b.ymin, &b.xmax, &b.ymax]);
                    }
                }
            },
        )
    }

    /// Each image's segments: label, score (instance and panoptic) and
    /// pixels, or with --json pipeline()'s records without the mask:
    /// `{score, label, pixels}` per segment.
    pub fn segmentations(&self, names: &[String], results: &[Segmentation]) -> Result<()> {
        let pixels = |s: &Segment| -> u64 {
            image::load_from_memory_with_format(&s.mask, image::ImageFormat::Png)
                .map(|m| m.into_luma8().pixels().filter(|p| p[0] > 127).count() as u64)
                .unwrap_or(0)
        };
        self.print(
            || {
                let record = |s: &Segment| json!({"score": s.score, "label": s.label, "pixels": pixels(s)});
                let segments = |r: &Segmentation| Json::Array(r.segments.iter().map(record).collect());
                Json::Array(results.iter().map(segments).collect())
            },
            || {
                for (name, result) in names.iter().zip(results) {
                    println!("{name}: {} segments", result.segments.len());
                    for s in &result.segments {
                        let score = s.score.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
                        SEGMENTS.row(&[&score, &s.label, &pixels(s)]);
                    }
                }
            },
        )
    }

    /// Each image's depth map: its size and range, or with --json
    /// `{width, height, min, max}` per image (the values: `depth --npy`).
    pub fn depth_maps(&self, names: &[String], results: &[DepthMap]) -> Result<()> {
        let range = |m: &DepthMap| {
            m.predicted_depth
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                })
        };
        self.print(
            || {
                let record = |m: &DepthMap| {
                    let (min, max) = range(m);
                    json!({"width": m.width, "height": m.height, "min": min, "max": max})
                };
                Json::Array(results.iter().map(record).collect())
            },
            || {
                for (name, m) in names.iter().zip(results) {
                    let (min, max) = range(m);
                    println!("{name}: {}x{} depth map, from {min:.4} to {max:.4}", m.width, m.height);
                }
            },
        )
    }

    pub fn zero_shot(&self, results: &[ZeroShotResult]) -> Result<()> {
        self.print(
            || {
                let record =
                    |r: &ZeroShotResult| json!({"sequence": r.sequence, "labels": r.labels, "scores": r.scores});
                Json::Array(results.iter().map(record).collect())
            },
            || {
                for r in results {
                    println!("{}", r.sequence);
                    for (label, score) in r.labels.iter().zip(&r.scores) {
                        LABEL_SCORES.row(&[label, &format!("{score:.4}")]);
                    }
                }
            },
        )
    }

    /// Candidates for each mask of each text; a text with several masks
    /// numbers them.
    pub fn fill_mask(&self, texts: &[String], results: &[FillMaskResult]) -> Result<()> {
        self.print(
            || {
                let masks = |r: &FillMaskResult| {
                    let masks = r.masks.iter().map(|m| {
                        let candidates = m.candidates.iter().map(|c| {
                            json!({"score": c.score, "token": c.token, "token_str": c.token_str, "sequence": c.sequence})
                        });
                        Json::Array(candidates.collect())
                    });
                    Json::Array(masks.collect())
                };
                Json::Array(results.iter().map(masks).collect())
            },
            || {
                for (text, r) in texts.iter().zip(results) {
                    println!("{text}");
                    for (i, m) in r.masks.iter().enumerate() {
                        if r.masks.len() > 1 {
                            println!("  mask {}:", i + 1);
                        }
                        for c in &m.candidates {
                            CANDIDATES.row(&[&c.token_str, &format!("{:.4}", c.score), &c.sequence]);
                        }
                    }
                }
            },
        )
    }

    /// Entities of each text: grouped ones by group, others by token.
    pub fn entities(&self, texts: &[String], results: &[TokenClassification]) -> Result<()> {
        self.print(
            || {
                let entities = |r: &TokenClassification| Json::Array(r.entities.iter().map(entity_json).collect());
                Json::Array(results.iter().map(entities).collect())
            },
            || {
                for (text, r) in texts.iter().zip(results) {
                    println!("{text}");
                    ENTITIES.row(&[&"ENTITY", &"WORD", &"SCORE", &"START", &"END"]);
                    for e in &r.entities {
                        let label = if e.entity_group.is_empty() {
                            &e.entity
                        } else {
                            &e.entity_group
                        };
                        ENTITIES.row(&[label, &e.word, &format!("{:.4}", e.score), &e.start, &e.end]);
                    }
                }
            },
        )
    }

    pub fn answers(&self, answers: &[Answer]) -> Result<()> {
        self.print(
            || {
                let record = |a: &Answer| json!({"score": a.score, "start": a.start, "end": a.end, "answer": a.answer});
                Json::Array(answers.iter().map(record).collect())
            },
            || {
                for a in answers {
                    let span = format!("[{}..{}]", a.start, a.end);
                    ANSWERS.row(&[&format!("{:.4}", a.score), &span, &a.answer]);
                }
            },
        )
    }

    /// Each text's embedding, its first values in the table; token vectors
    /// have no table, so asking for them prints JSON.
    pub fn embeddings(&self, texts: &[String], results: &[Embedding], with_tokens: bool) -> Result<()> {
        let out = Output {
            json: self.json || with_tokens,
        };
        out.print(
            || {
                let record = |r: &Embedding| {
                    let tokens: Vec<Vec<f32>> = r.token_embeddings.iter().map(|t| t.values.clone()).collect();
                    json!({"embedding": r.embedding, "token_embeddings": tokens})
                };
                Json::Array(results.iter().map(record).collect())
            },
            || {
                for (text, r) in texts.iter().zip(results) {
                    let head: Vec<String> = r.embedding.iter().take(6).map(|v| format!("{v:.4}")).collect();
                    println!(
                        "{text}\n  [{}, ...] ({} dimensions)",
                        head.join(", "),
                        r.embedding.len()
                    );
                }
            },
        )
    }

    /// Generated sequences with why each one stopped.
    pub fn generated(&self, results: &[GenerateResult]) -> Result<()> {
        self.print(
            || {
                let sequences = |r: &GenerateResult| {
                    let sequences = r
                        .sequences
                        .iter()
                        .map(|s| json!({"generated_text": s.generated_text, "finish_reason": s.finish_reason}));
                    Json::Array(sequences.collect())
                };
                Json::Array(results.iter().map(sequences).collect())
            },
            || {
                for s in results.iter().flat_map(|r| &r.sequences) {
                    println!(
                        "{}\n  [{} after {} tokens]",
                        s.generated_text, s.finish_reason, s.generated_tokens
                    );
                }
            },
        )
    }

    /// A streamed generation's prompt, before its tokens (not with --json,
    /// whose lines are the stream's messages).
    pub fn stream_prompt(&self, prompt: &str) -> Result<()> {
        if !self.json {
            let mut out = std::io::stdout();
            write!(out, "{prompt}")?;
            out.flush()?;
        }
        Ok(())
    }

    /// One message of a generation stream as it arrives: its text (the end
    /// goes to stderr), or with --json one compact JSON object per line.
    pub fn streamed(&self, message: &GenerateStreamResponse) -> Result<()> {
        let mut out = std::io::stdout();
        if self.json {
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
        Ok(())
    }

    /// Each input's generated texts: one per line, or with --json
    /// pipeline()'s list of `{key: text}` records per input.
    pub fn texts(&self, key: &str, per_input: Vec<Vec<&str>>) -> Result<()> {
        self.print(
            || {
                let record = |text: &&str| Json::Object([(key.to_string(), Json::from(*text))].into_iter().collect());
                let records = |texts: &Vec<&str>| Json::Array(texts.iter().map(record).collect());
                Json::Array(per_input.iter().map(records).collect())
            },
            || {
                for text in per_input.iter().flatten() {
                    println!("{}", text.trim());
                }
            },
        )
    }

    /// Each file's transcription, then its timed chunks when there are any.
    pub fn transcriptions(&self, names: &[String], results: &[Transcription]) -> Result<()> {
        self.print(
            || {
                let record = |r: &Transcription| {
                    let mut o = json!({"text": r.text});
                    if !r.chunks.is_empty() {
                        o["chunks"] = r.chunks.iter().map(chunk_json).collect();
                    }
                    o
                };
                Json::Array(results.iter().map(record).collect())
            },
            || {
                for (name, result) in names.iter().zip(results) {
                    println!("{name}\n  {}", result.text);
                    for c in &result.chunks {
                        // Whisper's last segment may have no end, and its
                        // languages come without times.
                        let time = |i: usize| c.timestamp.get(i).map_or("-".into(), |t| format!("{t:.2}"));
                        let text = if c.language.is_empty() {
                            c.text.clone()
                        } else {
                            format!("[{}] {}", c.language, c.text)
                        };
                        CHUNKS.row(&[&time(0), &time(1), &text]);
                    }
                }
            },
        )
    }

    /// One message of a transcription stream as it arrives: its segments,
    /// a line each with their times (the end goes to stderr), or with
    /// --json one compact JSON object per line.
    pub fn transcribed_segments(&self, message: &TranscribeStreamResponse) -> Result<()> {
        if self.json {
            let line = match (&message.result, message.done) {
                (Some(result), true) => json!({"done": true, "text": result.text,
                    "chunks": result.chunks.iter().map(chunk_json).collect::<Vec<_>>()}),
                _ => json!({"segments": message.segments.iter().map(chunk_json).collect::<Vec<_>>()}),
            };
            println!("{line}");
        } else if message.done {
            eprintln!("[done]");
        } else {
            let mut out = std::io::stdout();
            for c in &message.segments {
                let time = |i: usize| c.timestamp.get(i).map_or("-".into(), |t| format!("{t:.2}"));
                let language = if c.language.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", c.language)
                };
                writeln!(out, "[{:>8} -> {:>8}] {language}{}", time(0), time(1), c.text.trim())?;
            }
            out.flush()?;
        }
        Ok(())
    }

    /// A custom task's outputs: always JSON, as the plugin shaped them.
    pub fn plugin_outputs(&self, results: &[RunResult]) -> Result<()> {
        let outputs = results
            .iter()
            .map(|r| r.output.as_ref().map(struct_to_json).unwrap_or(Json::Null));
        print_json(&Json::Array(outputs.collect()))
    }

    /// Spoken texts: where each went, how long it is and its seed.
    pub fn speech(&self, texts: &[String], results: &[Speech], files: &[std::path::PathBuf]) -> Result<()> {
        self.print(
            || {
                Json::Array(
                    results
                        .iter()
                        .zip(texts)
                        .zip(files)
                        .map(|((s, text), file)| {
                            json!({"text": text, "file": file, "sampling_rate": s.sampling_rate,
                                "duration_s": s.duration_s, "seed": s.seed})
                        })
                        .collect(),
                )
            },
            || {
                for ((s, text), file) in results.iter().zip(texts).zip(files) {
                    println!(
                        "{}: {:.2} s at {} Hz (seed {}): {text}",
                        file.display(),
                        s.duration_s,
                        s.sampling_rate,
                        s.seed
                    );
                }
            },
        )
    }

    /// Models, the default of its task starred; the queue as waiting/capacity.
    pub fn models(&self, models: &[ModelInfo]) -> Result<()> {
        self.print(
            || Json::Array(models.iter().map(model_json).collect()),
            || {
                let header = [
                    "NAME", "TASK", "STATE", "DEVICES", "MEMORY", "BATCH", "QUEUED", "SOURCE",
                ];
                let mut rows = vec![header.map(String::from).to_vec()];
                let mut notes = vec![vec![]];
                for m in models {
                    let default = if m.is_default { "*" } else { "" };
                    let options = m.options.clone().unwrap_or_default();
                    let devices: Vec<&str> = m.instances.iter().map(|i| i.device.as_str()).collect();
                    let error = if m.error.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", m.error)
                    };
                    rows.push(vec![
                        format!("{}{default}", m.name),
                        m.task.clone(),
                        state_name(m.state).to_string(),
                        devices.join(","),
                        format!("{:.1}MB", m.memory_bytes as f64 / 1e6),
                        options.max_batch_size.map_or("-".into(), |n| n.to_string()),
                        options
                            .queue_size
                            .map_or("-".into(), |n| format!("{}/{n}", m.queue_depth)),
                        format!("{}{error}", m.source),
                    ]);
                    let mut lines = vec![];
                    if !m.also_tasks.is_empty() {
                        lines.push(format!("  also serves: {}", m.also_tasks.join(", ")));
                    }
                    if let Some(vocoder) = &options.vocoder {
                        lines.push(format!("  vocoder: {vocoder}"));
                    }
                    if let Some(quantize) = options.quantize.as_deref().filter(|q| *q != "none") {
                        lines.push(format!("  quantize: {quantize}"));
                    }
                    if let Some(dtype) = options.dtype.as_deref().filter(|d| *d != "float32") {
                        lines.push(format!("  dtype: {dtype}"));
                    }
                    if !m.speakers.is_empty() {
                        lines.push(format!("  speakers: {}", m.speakers.join(", ")));
                    }
                    notes.push(lines);
                }
                for (line, notes) in MODELS.fitted(&rows).into_iter().zip(notes) {
                    println!("{line}");
                    notes.iter().for_each(|note| println!("{note}"));
                }
            },
        )
    }

    /// That a model was unloaded (nothing with --json).
    pub fn unloaded(&self, name: &str) {
        if !self.json {
            println!("unloaded {name}");
        }
    }

    /// Plugins, one row per task.
    pub fn plugins(&self, plugins: &[PluginInfo]) -> Result<()> {
        self.print(
            || {
                let record = |p: &PluginInfo| {
                    json!({"name": p.name, "version": p.version, "path": p.path, "abi_version": p.abi_version,
                        "tasks": p.tasks.iter().map(|t| json!({"name": t.name, "aliases": t.aliases,
                            "default_model": t.default_model, "architectures": t.architectures})).collect::<Vec<_>>()})
                };
                Json::Array(plugins.iter().map(record).collect())
            },
            || {
                PLUGINS.row(&[&"PLUGIN", &"VERSION", &"TASK", &"ALIASES", &"DEFAULT MODEL"]);
                for p in plugins {
                    for t in &p.tasks {
                        PLUGINS.row(&[&p.name, &p.version, &t.name, &t.aliases.join(","), &t.default_model]);
                    }
                }
            },
        )
    }
}

/// Prints `value` as pretty JSON on one or more lines.
fn print_json(value: &Json) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An entity as pipeline() gives it: with its group when aggregated,
/// otherwise with its token's label and index.
fn entity_json(e: &TokenEntity) -> Json {
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
        Ok(ModelState::Idle) => "idle",
        _ => "unknown",
    }
}

fn model_json(m: &ModelInfo) -> Json {
    json!({
        "name": m.name, "task": m.task, "source": m.source, "path": m.path,
        "architecture": m.architecture, "plugin": m.plugin, "state": state_name(m.state),
        "devices": m.instances.iter().map(|i| i.device.clone()).collect::<Vec<_>>(),
        "memory_bytes": m.memory_bytes, "is_default": m.is_default, "labels": m.labels, "error": m.error,
        "queue_depth": m.queue_depth, "speakers": m.speakers,
        "load_seconds": m.load_seconds, "warm_up_seconds": m.warm_up_seconds,
        "options": m.options.as_ref().map(|o| json!({
            "max_batch_size": o.max_batch_size, "max_queue_delay_ms": o.max_queue_delay_ms,
            "queue_size": o.queue_size, "intra_op_threads": o.intra_op_threads, "limits": o.limits,
            "vocoder": o.vocoder, "isolation": o.isolation, "quantize": o.quantize,
            "dtype": o.dtype,
        })),
    })
}

fn struct_to_json(s: &Struct) -> Json {
    Json::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
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

/// A transcription chunk as pipeline() gives it: text, timestamp and, when
/// there is one, the language.
fn chunk_json(c: &TranscriptionChunk) -> Json {
    let mut chunk = json!({"text": c.text, "timestamp": c.timestamp});
    if !c.language.is_empty() {
        chunk["language"] = json!(c.language);
    }
    chunk
}
