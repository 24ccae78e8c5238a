//! Text: tokenizers (tokenizer.json, SentencePiece models) and the text
//! families: BERT, RoBERTa, DistilBERT (encoders), GPT-2 (decoder-only),
//! BART with Marian, and T5 (encoder-decoders); SpeechT5's character
//! tokenizer and its number spelling (`numbers`).

pub mod bart;
pub mod bert;
mod charsmap;
pub mod distilbert;
pub mod encoder;
pub mod gpt2;
pub mod numbers;
pub mod roberta;
pub mod sentencepiece;
pub mod speecht5_tokenizer;
pub mod t5;
pub mod tokenizer;
