//! Audio: decoding and mixing down (`decode`), resampling as scipy does
//! (`resample`), feature extractors (`features`), the CTC tokenizer
//! (`ctc`), and the audio families: Wav2Vec2 and Whisper (its log-mel
//! features in `whisper_features`), SpeechT5 text to speech (`speecht5`)
//! with its vocoder HiFi-GAN (`hifigan`), and WAV writing (`wav`).

pub mod ctc;
pub mod decode;
pub mod features;
pub mod hifigan;
pub mod resample;
pub mod speecht5;
pub mod wav;
pub mod wav2vec2;
pub mod whisper;
pub mod whisper_features;
pub mod whisper_generate;
pub mod whisper_text;
