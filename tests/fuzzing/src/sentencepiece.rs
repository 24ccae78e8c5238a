//! `sentencepiece`: a SentencePiece model file (T5's `spiece.model`,
//! Marian's `source.spm` and `target.spm`). A model that parses has pieces;
//! its tokenizers (SpmConverter's Unigram, T5's from a directory, Marian's
//! with the fixture's vocabulary) give ids inside their vocabularies and
//! decode them again; and its piece decoder joins plain pieces as they are.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use inferd_models::text::sentencepiece::{
    prepend_scheme, t5_tokenizer, unigram_tokenizer, MarianTokenizer, PieceDecoder, PieceType, SpmModel,
};
use tokenizers::Tokenizer;

use crate::fixtures;

/// Texts each tokenizer encodes: words, runs of spaces, characters of
/// several widths, and the special tokens' spellings.
const TEXTS: &[&str] = &[
    "Hello world",
    "  two  spaces, then\ta tab and a newline\n",
    "Déjà vu: 東京 🤖 ﬁ",
    "</s> <unk> <pad> <extra_id_0> >>fr<< <0x41>",
    "",
];

thread_local! {
    /// A T5 directory (spiece.model) and a Marian one (source.spm and
    /// target.spm beside the fixture's vocab.json), refilled per input.
    static DIRS: RefCell<Option<(tempfile::TempDir, tempfile::TempDir)>> = const { RefCell::new(None) };
}

pub fn sentencepiece(data: &[u8]) {
    let Ok(model) = SpmModel::from_bytes(data) else {
        return;
    };
    assert!(!model.pieces.is_empty(), "a model without pieces parsed");
    // Each of the three prepend schemes, by the input's length.
    let scheme = prepend_scheme(data.len() & 1 == 0, data.len() & 2 == 0);
    if let Ok(tokenizer) = unigram_tokenizer(&model, scheme) {
        encodes_within_its_vocabulary(&tokenizer);
    }
    if let Ok(decoder) = PieceDecoder::new(&model) {
        joins_plain_pieces(&model, &decoder);
    }
    DIRS.with(|dirs| {
        let mut dirs = dirs.borrow_mut();
        let (t5, marian) = dirs.get_or_insert_with(|| (temporary(), marian_dir()));
        std::fs::write(t5.path().join("spiece.model"), data).expect("spiece.model is written");
        if let Ok(tokenizer) = t5_tokenizer(t5.path()) {
            encodes_within_its_vocabulary(&tokenizer);
        }
        for file in ["source.spm", "target.spm"] {
            std::fs::write(marian.path().join(file), data).expect("the Marian model is written");
        }
        if let Ok(tokenizer) = MarianTokenizer::from_dir(marian.path()) {
            marian_encodes_within_its_vocabulary(&tokenizer, marian.path());
        }
    });
}

fn temporary() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// A directory with the Marian fixture's vocabulary and tokenizer config.
fn marian_dir() -> tempfile::TempDir {
    let dir = temporary();
    let fixture = fixtures::model_dir("marian-fr-en");
    for file in ["vocab.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).expect("the Marian fixture is copied");
    }
    dir
}

/// Every text encodes (or is refused) to ids of the vocabulary's tokens
/// (a piece listed twice keeps both ids, so ids can pass the count of
/// distinct tokens), which decode (or are refused) without a panic.
fn encodes_within_its_vocabulary(tokenizer: &Tokenizer) {
    for text in TEXTS {
        let Ok(encoding) = tokenizer.encode(*text, true) else {
            continue;
        };
        let ids = encoding.get_ids();
        assert!(
            ids.iter().all(|&id| tokenizer.id_to_token(id).is_some()),
            "{text:?} gave {ids:?}, not all of them tokens"
        );
        let _ = tokenizer.decode(ids, true);
    }
}

/// Marian's ids are vocab.json's (or its unknown id), `</s>` last.
fn marian_encodes_within_its_vocabulary(tokenizer: &MarianTokenizer, dir: &Path) {
    let vocab: HashMap<String, i64> =
        serde_json::from_slice(&std::fs::read(dir.join("vocab.json")).expect("vocab.json")).expect("vocab.json");
    let known: HashSet<i64> = vocab.values().copied().collect();
    for text in TEXTS {
        let Ok(ids) = tokenizer.encode(text, Some(16)) else {
            continue;
        };
        assert!(
            ids.len() <= 16 && ids.last() == Some(&tokenizer.eos_id()),
            "{text:?} gave {ids:?}"
        );
        assert!(ids.iter().all(|id| known.contains(id)), "{text:?} gave {ids:?}");
        let _ = tokenizer.decode(&ids);
    }
}

/// Pieces that decode as themselves (normal, user-defined or unused ones,
/// by their first occurrence, without the whitespace marker) are joined
/// unchanged.
fn joins_plain_pieces(model: &SpmModel, decoder: &PieceDecoder) {
    let mut kinds: HashMap<&str, PieceType> = HashMap::new();
    for (piece, _, kind) in &model.pieces {
        kinds.entry(piece.as_str()).or_insert(*kind);
    }
    let plain: Vec<&str> = model
        .pieces
        .iter()
        .map(|(piece, ..)| piece.as_str())
        .filter(|piece| {
            matches!(
                kinds[piece],
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused
            ) && !piece.contains('\u{2581}')
        })
        .collect();
    assert_eq!(decoder.decode_pieces(&plain), plain.concat());
    let all: Vec<&str> = model.pieces.iter().map(|(piece, ..)| piece.as_str()).collect();
    let _ = decoder.decode_pieces(&all);
}
