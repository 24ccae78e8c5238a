//! The README's grpcurl examples run as written: every command of its
//! "Talking to it with grpcurl" section, against a daemon with a fixture
//! model of each task, in a folder holding the files the commands name.
//! Three things are replaced: the address (the test daemon's port), and
//! the two model sources that would need the hub or the reader's disk
//! (`/models/my-sst2`, `google-t5/t5-small`) by fixture models.

use std::path::Path;
use std::process::Command;

use inferd_tests::{fixture_model, fixtures_dir, need_tool, repo_root, Daemon};

/// The grpcurl commands of the README's grpcurl section: `$ grpcurl ...`
/// lines of its console blocks, and those of its sh blocks (continuation
/// lines joined, comments dropped), each with the output the README shows
/// for it (console blocks only).
fn readme_commands() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("## Talking to it with grpcurl")
        .expect("the grpcurl section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_block = None;
    let mut pending = String::new();
    for line in section.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            in_block = if in_block.is_some() {
                None
            } else {
                Some(lang.to_string())
            };
            continue;
        }
        match in_block.as_deref() {
            Some("console") => match line.strip_prefix("$ ") {
                Some(command) => commands.push((command.to_string(), vec![])),
                None => commands
                    .last_mut()
                    .expect("output after a command")
                    .1
                    .push(line.to_string()),
            },
            Some("sh") => {
                let line = line.trim_end();
                if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
                    continue;
                }
                // Continued after a backslash or a pipe.
                match line.strip_suffix('\\') {
                    Some(part) => pending.push_str(part),
                    None if line.ends_with('|') => {
                        pending.push_str(line);
                        pending.push(' ');
                    }
                    None => {
                        pending.push_str(line);
                        commands.push((std::mem::take(&mut pending), vec![]));
                    }
                }
            }
            _ => {}
        }
    }
    commands.retain(|(command, _)| command.contains("grpcurl "));
    commands
}

#[tokio::test]
async fn the_readmes_grpcurl_examples_run_as_written() {
    let commands = readme_commands();
    assert!(commands.len() >= 25, "found only {} commands", commands.len());
    let jq = need_tool("jq", "jq");
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();

    // The files the commands name.
    let images = fixtures_dir().join("images");
    let audio = fixtures_dir().join("audio");
    for (name, from) in [
        ("cat.jpg", images.join("photo_q90.jpg")),
        ("street.jpg", images.join("rocket.jpg")),
        ("room.jpg", images.join("photo_q90.jpg")),
        ("speech.wav", audio.join("speech_16k.wav")),
        ("interview.mp3", audio.join("speech_16k.mp3")),
        ("lecture.wav", audio.join("speech_long_60s.wav")),
    ] {
        std::fs::copy(&from, work.join(name)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    // SpeechT5 with the speaker "slt" the example names.
    let tts = work.join("speecht5");
    copy_dir(Path::new(&fixture_model("speecht5-random")), &tts);
    std::fs::copy(tts.join("speakers/alice.npy"), tts.join("speakers/slt.npy")).unwrap();

    // A model of each task, the first of each its task's default.
    let models = [
        ("cls", "text-classification", fixture_model("bert-cls"), None),
        ("nli", "zero-shot-classification", fixture_model("bart-mnli"), None),
        ("mlm", "fill-mask", fixture_model("roberta-mlm"), None),
        ("ner", "token-classification", fixture_model("bert-ner"), None),
        ("qa", "question-answering", fixture_model("bert-qa"), None),
        ("emb", "feature-extraction", fixture_model("bert-base"), None),
        ("gen", "text-generation", fixture_model("gpt2-gen"), None),
        ("vit", "image-classification", fixture_model("vit-cls"), None),
        ("detr", "object-detection", fixture_model("detr-random"), None),
        ("glpn", "depth-estimation", fixture_model("glpn-random"), None),
        ("seg", "image-segmentation", fixture_model("segformer-random"), None),
        ("bart", "summarization", fixture_model("bart-sum"), None),
        ("t5-translate", "translation", fixture_model("t5-small-ish"), None),
        (
            "whisper",
            "automatic-speech-recognition",
            fixture_model("whisper-random-en"),
            None,
        ),
        (
            "whisper-small",
            "automatic-speech-recognition",
            fixture_model("whisper-random-multi"),
            None,
        ),
        (
            "tts",
            "text-to-speech",
            tts.display().to_string(),
            Some(fixture_model("hifigan-random")),
        ),
    ];
    let mut config = String::new();
    for (name, task, source, vocoder) in &models {
        config.push_str(&format!(
            "[[models]]\nname = \"{name}\"\ntask = \"{task}\"\nsource = \"{source}\"\n"
        ));
        if let Some(vocoder) = vocoder {
            config.push_str(&format!("vocoder = \"{vocoder}\"\n"));
        }
    }
    let config_path = work.join("inferd.toml");
    std::fs::write(&config_path, config).unwrap();
    let daemon = Daemon::start(&["--config", config_path.to_str().unwrap()]).await;

    let venv_bin = repo_root().join(".venv/bin");
    let path = format!(
        "{}:{}:{}",
        venv_bin.display(),
        jq.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (command, shown) in commands {
        let run = command
            .replace("127.0.0.1:50051", &daemon.addr)
            .replace("/models/my-sst2", &fixture_model("bert-cls"))
            .replace("google-t5/t5-small", &fixture_model("t5-small-ish"));
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &run])
            .current_dir(work)
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}\nfailed: {}{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        );
        assert!(
            !stdout.trim().is_empty() || command.ends_with("> hello.wav"),
            "{command}: no output"
        );
        if !shown.is_empty() {
            let printed: Vec<&str> = stdout.lines().collect();
            assert_eq!(printed, shown, "{command}: the README shows another output");
        }
    }
    // The Synthesize example's WAV file.
    let wav = std::fs::read(work.join("hello.wav")).unwrap();
    assert!(
        wav.starts_with(b"RIFF") && wav.len() > 44,
        "hello.wav is not a WAV file"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
