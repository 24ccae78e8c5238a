//! Audio: decoding and mixing down (`decode`), resampling as scipy does
//! (`resample`), feature extractors (`features`), the CTC tokenizer
//! (`ctc`), and the audio families: Wav2Vec2 and Whisper (its log-mel
//! features in `whisper_features`; not yet served). SpeechT5 and HiFi-GAN
//! go beside them.

pub mod ctc;
pub mod decode;
pub mod features;
pub mod resample;
pub mod wav2vec2;
pub mod whisper;
pub mod whisper_features;
pub mod whisper_generate;
pub mod whisper_text;
