//! The HiFi-GAN vocoder (Kong et al., V1) as SpeechT5 uses it: a log-mel
//! spectrogram [frames, mels] (optionally normalised by the checkpoint's
//! mean and scale) through a 7-wide convolution, then stages that each
//! upsample in time (a transposed convolution) and average
//! multi-receptive-field residual blocks (dilated 1-d convolutions with
//! leaky ReLU), then a 7-wide convolution to one channel and tanh: the
//! waveform, `prod(upsample_rates)` samples per frame. Reproduces
//! transformers' `SpeechT5HifiGan` (`modeling_speecht5.py`) with its weight
//! names (`conv_pre`, `upsampler.0`, `resblocks.0.convs1.0`, `conv_post`).

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_SPATIAL, MAX_STAGES, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::Variables;
use crate::core::weights::WeightShapes;
use crate::{ModelError, Result};

/// The first and last convolutions' kernel.
const OUTER_KERNEL: i64 = 7;
/// The slope of the leaky ReLU before `conv_post`: nn.functional's default,
/// not the config's.
const LAST_SLOPE: f64 = 0.01;

/// `SpeechT5HifiGanConfig`, with transformers' defaults
/// (microsoft/speecht5_hifigan).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HifiGanConfig {
    pub model_in_dim: i64,
    pub sampling_rate: i64,
    pub upsample_initial_channel: i64,
    pub upsample_rates: Vec<i64>,
    pub upsample_kernel_sizes: Vec<i64>,
    pub resblock_kernel_sizes: Vec<i64>,
    pub resblock_dilation_sizes: Vec<Vec<i64>>,
    pub leaky_relu_slope: f64,
    pub normalize_before: bool,
}

impl Default for HifiGanConfig {
    fn default() -> Self {
        HifiGanConfig {
            model_in_dim: 80,
            sampling_rate: 16000,
            upsample_initial_channel: 512,
            upsample_rates: vec![4, 4, 4, 4],
            upsample_kernel_sizes: vec![8, 8, 8, 8],
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            leaky_relu_slope: 0.1,
            normalize_before: true,
        }
    }
}

impl HifiGanConfig {
    /// The width of upsampling stage `i`'s output.
    fn width(&self, i: usize) -> i64 {
        self.upsample_initial_channel >> (i + 1)
    }

    /// Every list as long as its partner, every size within bounds and
    /// equal to the checkpoint's.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.matches("model_in_dim", self.model_in_dim, MAX_WIDTH, "conv_pre.weight", 1)?;
        c.matches(
            "upsample_initial_channel",
            self.upsample_initial_channel,
            MAX_WIDTH,
            "conv_pre.weight",
            0,
        )?;
        c.size("sampling_rate", self.sampling_rate, 1 << 20)?;
        c.list("upsample_rates", self.upsample_rates.len())?;
        c.same_length(&[
            ("upsample_rates", self.upsample_rates.len()),
            ("upsample_kernel_sizes", self.upsample_kernel_sizes.len()),
        ])?;
        c.list("resblock_kernel_sizes", self.resblock_kernel_sizes.len())?;
        c.same_length(&[
            ("resblock_kernel_sizes", self.resblock_kernel_sizes.len()),
            ("resblock_dilation_sizes", self.resblock_dilation_sizes.len()),
        ])?;
        let stages = self.upsample_rates.len();
        if stages > 16 || self.width(stages - 1) < 1 {
            return Err(ModelError::bad_file(
                file,
                format!(
                    "upsample_initial_channel = {} cannot be halved {stages} times",
                    self.upsample_initial_channel
                ),
            ));
        }
        for (i, (&rate, &kernel)) in self.upsample_rates.iter().zip(&self.upsample_kernel_sizes).enumerate() {
            c.size(&format!("upsample_rates[{i}]"), rate, MAX_SPATIAL)?;
            let weight = format!("upsampler.{i}.weight");
            c.matches(&format!("upsample_kernel_sizes[{i}]"), kernel, MAX_SPATIAL, &weight, 2)?;
            c.at_least(
                &format!("upsample_kernel_sizes[{i}]"),
                kernel,
                &format!("upsample_rates[{i}]"),
                rate,
            )?;
            c.anchor(
                "upsample_initial_channel",
                self.upsample_initial_channel,
                self.width(i),
                "",
                &weight,
                1,
            )?;
        }
        let kernels = self.resblock_kernel_sizes.len();
        for (k, (&kernel, dilations)) in self
            .resblock_kernel_sizes
            .iter()
            .zip(&self.resblock_dilation_sizes)
            .enumerate()
        {
            c.list(&format!("resblock_dilation_sizes[{k}]"), dilations.len())?;
            if dilations.len() > MAX_STAGES {
                return Err(ModelError::bad_file(
                    file,
                    format!("resblock_dilation_sizes[{k}] is too long"),
                ));
            }
            c.matches(
                &format!("resblock_kernel_sizes[{k}]"),
                kernel,
                MAX_SPATIAL,
                &format!("resblocks.{k}.convs1.0.weight"),
                2,
            )?;
            for (j, &dilation) in dilations.iter().enumerate() {
                c.size(&format!("resblock_dilation_sizes[{k}][{j}]"), dilation, MAX_SPATIAL)?;
            }
            c.layers(
                &format!("resblock_dilation_sizes[{k}]"),
                dilations.len() as i64,
                &format!("resblocks.{k}.convs1"),
            )?;
        }
        c.layers("the residual blocks", (stages * kernels) as i64, "resblocks")?;
        if !self.leaky_relu_slope.is_finite() {
            return Err(ModelError::bad_file(file, "leaky_relu_slope must be a number"));
        }
        Ok(())
    }
}

/// Leaky ReLU with `slope` below zero (as `torch.nn.functional.leaky_relu`
/// computes it: `x * slope` there).
fn leaky(x: &Tensor, slope: f64) -> Tensor {
    x.where_self(&x.gt(0.0), &(x * slope))
}

/// `torch.nn.Conv1d` with a bias, stride 1.
struct Conv1d {
    weight: Tensor,
    bias: Tensor,
    padding: i64,
    dilation: i64,
}

impl Conv1d {
    fn new(p: Path, input: i64, output: i64, kernel: i64, dilation: i64) -> Self {
        Conv1d {
            weight: p.zeros_var("weight", &[output, input, kernel]),
            bias: p.zeros_var("bias", &[output]),
            // Keeps the length: (kernel * dilation - dilation) / 2 each side.
            padding: (kernel * dilation - dilation) / 2,
            dilation,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv1d(&self.weight, Some(&self.bias), [1], [self.padding], [self.dilation], 1)
    }
}

/// One upsampling stage: `torch.nn.ConvTranspose1d`, weight [in, out, k].
struct Upsample {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Upsample {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_transpose1d(
            &self.weight,
            Some(&self.bias),
            [self.stride],
            [self.padding],
            [0],
            1,
            [1],
        )
    }
}

/// `HifiGanResidualBlock`: per dilation, leaky ReLU, the dilated
/// convolution, leaky ReLU, an undilated one, plus the input.
struct ResBlock {
    convs: Vec<(Conv1d, Conv1d)>,
    slope: f64,
}

impl ResBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        for (dilated, plain) in &self.convs {
            let y = dilated.forward(&leaky(&x, self.slope));
            x = plain.forward(&leaky(&y, self.slope)) + x;
        }
        x
    }
}

/// `SpeechT5HifiGan`.
pub struct HifiGan {
    conv_pre: Conv1d,
    upsamplers: Vec<Upsample>,
    /// Per upsampling stage, one block per kernel size.
    resblocks: Vec<Vec<ResBlock>>,
    conv_post: Conv1d,
    normalisation: Option<(Tensor, Tensor)>,
    slope: f64,
    pub sampling_rate: i64,
}

impl HifiGan {
    pub fn new(p: &Path, cfg: &HifiGanConfig) -> Self {
        let kernels = cfg.resblock_kernel_sizes.len();
        let upsamplers = cfg
            .upsample_rates
            .iter()
            .zip(&cfg.upsample_kernel_sizes)
            .enumerate()
            .map(|(i, (&rate, &kernel))| {
                let u = p / "upsampler" / i as i64;
                let input = if i == 0 {
                    cfg.upsample_initial_channel
                } else {
                    cfg.width(i - 1)
                };
                Upsample {
                    weight: u.zeros_var("weight", &[input, cfg.width(i), kernel]),
                    bias: u.zeros_var("bias", &[cfg.width(i)]),
                    stride: rate,
                    padding: (kernel - rate) / 2,
                }
            })
            .collect();
        let resblocks = (0..cfg.upsample_rates.len())
            .map(|i| {
                let channels = cfg.width(i);
                cfg.resblock_kernel_sizes
                    .iter()
                    .zip(&cfg.resblock_dilation_sizes)
                    .enumerate()
                    .map(|(k, (&kernel, dilations))| {
                        let b = p / "resblocks" / (i * kernels + k) as i64;
                        ResBlock {
                            convs: dilations
                                .iter()
                                .enumerate()
                                .map(|(j, &dilation)| {
                                    (
                                        Conv1d::new(&b / "convs1" / j as i64, channels, channels, kernel, dilation),
                                        Conv1d::new(&b / "convs2" / j as i64, channels, channels, kernel, 1),
                                    )
                                })
                                .collect(),
                            slope: cfg.leaky_relu_slope,
                        }
                    })
                    .collect()
            })
            .collect();
        let last = cfg.width(cfg.upsample_rates.len() - 1);
        let dim = cfg.model_in_dim;
        HifiGan {
            conv_pre: Conv1d::new(p / "conv_pre", dim, cfg.upsample_initial_channel, OUTER_KERNEL, 1),
            upsamplers,
            resblocks,
            conv_post: Conv1d::new(p / "conv_post", last, 1, OUTER_KERNEL, 1),
            normalisation: cfg
                .normalize_before
                .then(|| (p.zeros_var("mean", &[dim]), p.ones_var("scale", &[dim]))),
            slope: cfg.leaky_relu_slope,
            sampling_rate: cfg.sampling_rate,
        }
    }

    /// The mel bins of the spectrograms it reads.
    pub fn mel_bins(&self) -> i64 {
        self.conv_pre.weight.size()[1]
    }

    /// The waveform [B, samples] of log-mel spectrograms [B, frames, mels].
    pub fn forward(&self, spectrogram: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let spectrogram = match &self.normalisation {
            Some((mean, scale)) => (spectrogram - mean) / scale,
            None => spectrogram.shallow_clone(),
        };
        let mut x = self.conv_pre.forward(&spectrogram.transpose(2, 1));
        for (upsample, blocks) in self.upsamplers.iter().zip(&self.resblocks) {
            x = upsample.forward(&leaky(&x, self.slope));
            let mut sum = blocks[0].forward(&x);
            for block in &blocks[1..] {
                sum += block.forward(&x);
            }
            x = sum / blocks.len() as f64;
        }
        self.conv_post.forward(&leaky(&x, LAST_SLOPE)).tanh().squeeze_dim(1)
    }
}

/// Loads `SpeechT5HifiGan` from its config.json, checked against the
/// checkpoint's shapes.
pub fn build(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> Result<HifiGan> {
    let cfg: HifiGanConfig = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(HifiGan::new(&root, &cfg))
}
