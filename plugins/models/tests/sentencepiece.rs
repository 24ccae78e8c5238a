//! SentencePiece tokenizers without tokenizer.json against transformers
//! 4.57.6, on the seq2seq fixtures (tests/fixtures/seq2seq_fixtures.py):
//! MarianTokenizer from source.spm / target.spm / vocab.json, and T5's
//! tokenizer built from spiece.model alone. For every Marian and T5 case of
//! references/seq2seq.json, encoding the prefixed input gives the recorded
//! `encoder_input_ids` (and, for Marian, the recorded pieces), and decoding
//! each generated row without special tokens gives the pipeline's text. The
//! T5 tokenizer built from spiece.model also encodes and decodes exactly like
//! the tokenizer.json transformers saved next to it.

use std::path::{Path, PathBuf};

use inferd_models::text::sentencepiece::{t5_tokenizer, unigram_tokenizer, MarianTokenizer, PrependScheme, SpmModel};
use serde_json::Value;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

mod common;
use common::fixtures;

fn references() -> Value {
    let path = fixtures().join("references/seq2seq.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// The cases of `model`, with at least one.
fn cases(refs: &Value, model: &str) -> Vec<Value> {
    let cases: Vec<Value> = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == model)
        .cloned()
        .collect();
    assert!(!cases.is_empty(), "no {model} cases");
    cases
}

/// A case's inputs, as a list.
fn inputs(case: &Value) -> Vec<String> {
    match &case["inputs"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
        other => panic!("inputs {other}"),
    }
}

fn ids(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

/// tokenizer_config.json's model_max_length: what `truncation=True` cuts to.
fn model_max_length(dir: &Path) -> usize {
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    config["model_max_length"].as_u64().unwrap() as usize
}

fn truncates(case: &Value) -> bool {
    case["pipeline_kwargs"]["truncation"].as_bool().unwrap_or(false)
}

#[test]
fn marian_encodes_like_transformers() {
    let refs = references();
    let dir = model_dir("marian-fr-en");
    let tokenizer = MarianTokenizer::from_dir(&dir).unwrap();
    assert_eq!(tokenizer.model_max_length(), model_max_length(&dir));
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases(&refs, "marian-fr-en") {
        let name = case["case"].as_str().unwrap();
        let prefix = case["prefix"].as_str().unwrap();
        let max_length = truncates(&case).then(|| tokenizer.model_max_length());
        for (i, text) in inputs(&case).iter().enumerate() {
            let text = format!("{prefix}{text}");
            let want = ids(&case["encoder_input_ids"][i]);
            let got = tokenizer.encode(&text, max_length).unwrap();
            if got != want {
                failures.push(format!("{name} input {i}: ids {got:?}, transformers {want:?}"));
            }
            let pieces = tokenizer.tokenize(&text).unwrap();
            let want_pieces: Vec<&str> = case["encoder_pieces"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            if pieces != want_pieces {
                failures.push(format!(
                    "{name} input {i}: pieces {pieces:?}, transformers {want_pieces:?}"
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 10, "only {checked} inputs");
}

#[test]
fn marian_truncation_keeps_the_last_eos() {
    let refs = references();
    let tokenizer = MarianTokenizer::from_dir(&model_dir("marian-fr-en")).unwrap();
    let case = cases(&refs, "marian-fr-en")
        .into_iter()
        .find(truncates)
        .expect("a Marian case with truncation=True");
    let max = tokenizer.model_max_length();
    let full = tokenizer.encode(&inputs(&case)[0], None).unwrap();
    assert!(full.len() > max, "the long input must be longer than {max} tokens");
    let cut = tokenizer.encode(&inputs(&case)[0], Some(max)).unwrap();
    assert_eq!(cut.len(), max);
    assert_eq!(cut[..max - 1], full[..max - 1]);
    assert_eq!(*cut.last().unwrap(), tokenizer.eos_id());
    assert_eq!(tokenizer.encode("", None).unwrap(), [tokenizer.eos_id()]);
}

#[test]
fn marian_decodes_like_transformers() {
    let refs = references();
    let tokenizer = MarianTokenizer::from_dir(&model_dir("marian-fr-en")).unwrap();
    assert_eq!((tokenizer.eos_id(), tokenizer.unk_id()), (0, 1));
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases(&refs, "marian-fr-en") {
        let name = case["case"].as_str().unwrap();
        let Some(outputs) = case["outputs"].as_array() else {
            continue; // the pipeline raised (input too long): nothing generated
        };
        for (rows, texts) in case["generated_ids"].as_array().unwrap().iter().zip(outputs) {
            for (row, text) in rows.as_array().unwrap().iter().zip(texts.as_array().unwrap()) {
                let row = ids(row);
                assert_eq!(
                    row[0],
                    tokenizer.pad_id(),
                    "{name}: rows start with the decoder start (pad) token"
                );
                let got = tokenizer.decode(&row).unwrap();
                if got != text.as_str().unwrap() {
                    failures.push(format!("{name}: {got:?}, transformers {text}"));
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 10, "only {checked} rows");
}

/// T5's tokenizer from spiece.model, with tokenizer.json's truncation when
/// the case asked for it.
fn encode_t5(tokenizer: &Tokenizer, text: &str, max_length: Option<usize>) -> Vec<i64> {
    let mut tokenizer = tokenizer.clone();
    if let Some(max_length) = max_length {
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .unwrap();
    }
    let encoding = tokenizer.encode(text, true).unwrap();
    encoding.get_ids().iter().map(|&id| id as i64).collect()
}

#[test]
fn t5_from_spiece_model_matches_the_references() {
    let refs = references();
    let mut checked = (0, 0);
    let mut failures = Vec::new();
    for model in ["t5-small-ish", "t5-v1_1"] {
        let dir = model_dir(model);
        let tokenizer = t5_tokenizer(&dir).unwrap();
        for case in cases(&refs, model) {
            let name = case["case"].as_str().unwrap();
            let prefix = case["prefix"].as_str().unwrap();
            let max_length = truncates(&case).then(|| model_max_length(&dir));
            for (i, text) in inputs(&case).iter().enumerate() {
                let got = encode_t5(&tokenizer, &format!("{prefix}{text}"), max_length);
                let want = ids(&case["encoder_input_ids"][i]);
                if got != want {
                    failures.push(format!("{name} input {i}: ids {got:?}, transformers {want:?}"));
                }
                checked.0 += 1;
            }
            let Some(outputs) = case["outputs"].as_array() else {
                continue;
            };
            for (rows, texts) in case["generated_ids"].as_array().unwrap().iter().zip(outputs) {
                for (row, text) in rows.as_array().unwrap().iter().zip(texts.as_array().unwrap()) {
                    let row: Vec<u32> = ids(row).iter().map(|&id| id as u32).collect();
                    let got = tokenizer.decode(&row, true).unwrap();
                    if got != text.as_str().unwrap() {
                        failures.push(format!("{name}: {got:?}, transformers {text}"));
                    }
                    checked.1 += 1;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked.0 >= 20 && checked.1 >= 20, "only {checked:?} inputs / rows");
}

/// Strings where SentencePiece conversions go wrong: spaces at the ends and
/// in runs, tabs and newlines, accents (composed and not), characters the
/// model never saw, full-width forms, digits, the special tokens and
/// sentinels in the text.
const TRICKY: &[&str] = &[
    "",
    " ",
    "   ",
    "Hello",
    " Hello",
    "  Hello   world  ",
    "Hello world ",
    "a\tb\nc",
    "\n\nline\r\nbreak\u{3000}ideographic",
    "Café, naïve, Zoë, São Paulo, Kraków, Ærø.",
    "Cafe\u{301} (decomposed é)",
    "☃ snowman ☃☃ and 🦀 crab",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３",
    "1234567890 3.14159 2,000 1e-9",
    "x\u{200b}y zero\u{a0}width",
    "tab\tat end\t",
    "translate English to French: The weather is nice today.",
    "summarize: <extra_id_0> was <extra_id_1>.",
    "ends with eos</s> and <pad> and <unk>",
    "<extra_id_99><extra_id_0>  <extra_id_5> x",
    "<extra_id_0>word</s>next<pad>",
    "ÀÉÎÕÜ àéîõü ß æ œ ø å ñ ç",
    "“Quotes” ‘single’ — dash … ellipsis",
];

#[test]
fn t5_from_spiece_model_encodes_and_decodes_like_its_tokenizer_json() {
    let refs = references();
    let dir = model_dir("t5-small-ish");
    let theirs = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    // with the fixture's tokenizer_config.json, and from spiece.model alone
    // (T5TokenizerFast's defaults: 100 sentinels, legacy, prefix space)
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("spiece.model"), bare.path().join("spiece.model")).unwrap();
    for ours in [t5_tokenizer(&dir).unwrap(), t5_tokenizer(bare.path()).unwrap()] {
        compare_t5(&refs, &ours, &theirs);
    }
}

fn compare_t5(refs: &Value, ours: &Tokenizer, theirs: &Tokenizer) {
    assert_eq!(ours.get_vocab_size(true), theirs.get_vocab_size(true));

    let mut texts: Vec<String> = TRICKY.iter().map(|s| s.to_string()).collect();
    let mut rows: Vec<Vec<u32>> = Vec::new();
    for case in cases(refs, "t5-small-ish") {
        let prefix = case["prefix"].as_str().unwrap();
        texts.extend(inputs(&case).iter().map(|t| format!("{prefix}{t}")));
        for (per_input, outputs) in case["generated_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(case["outputs"].as_array().into_iter().flatten())
        {
            rows.extend(
                per_input
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| ids(r).iter().map(|&i| i as u32).collect()),
            );
            texts.extend(
                outputs
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string()),
            );
        }
    }
    let mut failures = Vec::new();
    for text in &texts {
        for add_special in [true, false] {
            let a = ours.encode(text.as_str(), add_special).unwrap();
            let b = theirs.encode(text.as_str(), add_special).unwrap();
            if a.get_ids() != b.get_ids() || a.get_tokens() != b.get_tokens() || a.get_offsets() != b.get_offsets() {
                failures.push(format!(
                    "encode {text:?} (special {add_special}): {:?} / {:?}",
                    a.get_tokens(),
                    b.get_tokens()
                ));
            }
            rows.push(b.get_ids().to_vec());
        }
    }
    // every id once, and runs of sentinels and specials
    rows.push((0..ours.get_vocab_size(true) as u32).collect());
    rows.push(vec![0, 499, 12, 498, 1, 2, 400, 1]);
    for row in &rows {
        for skip in [true, false] {
            let a = ours.decode(row, skip).unwrap();
            let b = theirs.decode(row, skip).unwrap();
            if a != b {
                failures.push(format!("decode {row:?} (skip {skip}): {a:?} / {b:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        texts.len() > 50 && rows.len() > 80,
        "{} texts, {} rows",
        texts.len(),
        rows.len()
    );
}

#[test]
fn spm_model_reads_the_fixture_files() {
    let t5 = SpmModel::from_file(&model_dir("t5-small-ish").join("spiece.model")).unwrap();
    let tokenizer_json: Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir("t5-small-ish").join("tokenizer.json")).unwrap())
            .unwrap();
    // the pieces and scores are the first entries of tokenizer.json's Unigram
    // vocabulary (compared as the f32 the model stores: serde_json's default
    // float parsing can be one ulp off in f64)
    let vocab = tokenizer_json["model"]["vocab"].as_array().unwrap();
    assert_eq!(vocab.len(), t5.pieces.len() + 100);
    for ((piece, score, _), entry) in t5.pieces.iter().zip(vocab) {
        assert_eq!(entry[0].as_str().unwrap(), piece);
        assert_eq!(entry[1].as_f64().unwrap() as f32, *score as f32, "{piece}");
    }
    assert_eq!(tokenizer_json["model"]["unk_id"].as_u64(), t5.unk_id.map(u64::from));
    assert_eq!(t5.normalizer.name, "nmt_nfkc");
    assert!(!t5.normalizer.precompiled_charsmap.is_empty());

    // the Metaspace scheme is the caller's: "never" drops the prefix space
    let never = unigram_tokenizer(&t5, PrependScheme::Never).unwrap();
    let always = unigram_tokenizer(&t5, PrependScheme::Always).unwrap();
    let a = always.encode("Hello", false).unwrap();
    let n = never.encode("Hello", false).unwrap();
    assert!(a.get_tokens()[0].starts_with('\u{2581}'));
    assert!(!n.get_tokens()[0].starts_with('\u{2581}'));

    let err = SpmModel::from_file(&model_dir("marian-fr-en").join("vocab.json")).unwrap_err();
    assert!(err.to_string().contains("vocab.json"), "{err}");
}

#[test]
fn marian_splits_special_tokens_and_language_codes() {
    let tokenizer = MarianTokenizer::from_dir(&model_dir("marian-fr-en")).unwrap();
    let pieces = |text: &str| tokenizer.tokenize(text).unwrap();
    // a leading >>xx<< code is one token (unknown to this vocabulary), the
    // rest goes through SentencePiece on its own
    let coded = pieces(">>fr<< Le chat");
    assert_eq!(coded[0], ">>fr<<");
    assert_eq!(coded[1..], pieces(" Le chat")[..]);
    assert_eq!(tokenizer.encode(">>fr<< Le chat", None).unwrap()[0], tokenizer.unk_id());
    assert!(!pieces("a >>fr<< b").contains(&">>fr<<".to_string()));
    // the special tokens are cut out of the text before SentencePiece
    let body = |text: &str| {
        let mut ids = tokenizer.encode(text, None).unwrap();
        ids.pop();
        ids
    };
    let mut want = body("fin");
    want.push(tokenizer.eos_id());
    want.extend(body(" et "));
    want.push(tokenizer.pad_id());
    want.extend(body("x"));
    want.push(tokenizer.eos_id());
    assert_eq!(tokenizer.encode("fin</s> et <pad>x", None).unwrap(), want);
    // control pieces are not matched in text: "<s>" is spelt out
    assert!(!pieces("<s> balise").contains(&"<s>".to_string()));
    // decoding drops </s>, <unk>, <pad> and ids outside the vocabulary
    let ids = body("Le chat dort.");
    let mut noisy = vec![tokenizer.pad_id(), tokenizer.unk_id()];
    noisy.extend(&ids);
    noisy.extend([tokenizer.eos_id(), 1_000_000, -1, tokenizer.pad_id()]);
    assert_eq!(tokenizer.decode(&noisy).unwrap(), tokenizer.decode(&ids).unwrap());
    assert_eq!(tokenizer.decode(&ids).unwrap(), "Le chat dort.");
}
