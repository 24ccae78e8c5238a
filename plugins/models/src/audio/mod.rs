//! Audio: decoding and mixing down (`decode`), resampling as scipy does
//! (`resample`), feature extractors (`features`), the CTC tokenizer
//! (`ctc`), and the audio families: Wav2Vec2 and Whisper (its log-mel
//! features in `whisper_features`), and HiFi-GAN (`hifigan`, SpeechT5's
//! vocoder; SpeechT5 goes beside it).

pub mod ctc;
pub mod decode;
pub mod features;
pub mod hifigan;
pub mod resample;
pub mod wav2vec2;
pub mod whisper;
pub mod whisper_features;
pub mod whisper_generate;
pub mod whisper_text;
