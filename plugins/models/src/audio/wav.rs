//! Mono WAV files of generated sound: 16-bit PCM (what every player reads)
//! or 32-bit float (the model's samples exactly).

/// How the samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    /// Signed 16-bit integers: round(x * 32767), x clipped to [-1, 1].
    Pcm16,
    /// IEEE float, the samples as they are.
    Float32,
}

/// A RIFF/WAVE file of `samples` at `sampling_rate` Hz, one channel.
pub fn encode_wav(samples: &[f32], sampling_rate: u32, format: WavFormat) -> Vec<u8> {
    let (tag, width): (u16, u16) = match format {
        WavFormat::Pcm16 => (1, 2),
        WavFormat::Float32 => (3, 4),
    };
    let data_len = samples.len() as u32 * u32::from(width);
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sampling_rate.to_le_bytes());
    out.extend_from_slice(&(sampling_rate * u32::from(width)).to_le_bytes());
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&(width * 8).to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &x in samples {
        match format {
            WavFormat::Pcm16 => {
                let x = if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) };
                out.extend_from_slice(&((x * 32767.0).round() as i16).to_le_bytes());
            }
            WavFormat::Float32 => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::decode::decode;

    #[test]
    fn both_formats_decode_back() {
        let samples = [0.0f32, 0.5, -0.5, 1.0, -1.0, 2.0, 0.25];
        let pcm = encode_wav(&samples, 16000, WavFormat::Pcm16);
        assert_eq!(pcm.len(), 44 + 2 * samples.len());
        let float = encode_wav(&samples, 22050, WavFormat::Float32);
        let decoded = decode(&float, 60.0).unwrap();
        assert_eq!(decoded.sample_rate, 22050);
        assert_eq!(decoded.samples, samples);
        let decoded = decode(&pcm, 60.0).unwrap();
        assert_eq!(decoded.sample_rate, 16000);
        for (got, want) in decoded.samples.iter().zip(samples) {
            assert!((got - want.clamp(-1.0, 1.0)).abs() < 1e-4, "{got} vs {want}");
        }
    }
}
