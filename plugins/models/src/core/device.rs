//! Device names as the daemon spells them ("cpu", "cuda:0") and their tch form.

use tch::Device;

use crate::{ModelError, Result};

/// Parses "cpu", "cuda" (device 0) or "cuda:N". For a CUDA device, also
/// applies LibTorch's settings for CUDA (see [`cuda_settings`]).
pub fn parse_device(name: &str) -> Result<Device> {
    let device = parse_name(name)?;
    if device.is_cuda() {
        cuda_settings();
    }
    Ok(device)
}

extern "C" {
    fn inferd_cuda_settings() -> i32;
}

/// LibTorch's settings for CUDA devices, once per process
/// (`cpp/precision.cpp`): TF32 off for convolutions and matrix products
/// (cuDNN convolutions use it by PyTorch's default), so that a float32
/// model computes in float32 on a GPU as on the CPU; and cuDNN's attention
/// off, whose execution plan per shape costs more than a decoding step.
pub fn cuda_settings() {
    static SET: std::sync::Once = std::sync::Once::new();
    // SAFETY: C entry points that catch every exception.
    SET.call_once(|| unsafe {
        if inferd_cuda_settings() != 0 {
            tracing::warn!("could not apply LibTorch's CUDA settings (TF32 off, cuDNN attention off)");
        }
    });
}

fn parse_name(name: &str) -> Result<Device> {
    match name.trim() {
        "" | "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(Device::Cuda)
            .ok_or_else(|| ModelError::Unsupported(format!("device `{other}` (use cpu, cuda or cuda:N)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device("cuda").unwrap(), Device::Cuda(0));
        assert_eq!(parse_device("cuda:3").unwrap(), Device::Cuda(3));
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }

    extern "C" {
        fn inferd_cuda_conv_is_ieee() -> i32;
        fn inferd_cuda_cudnn_attention() -> i32;
    }

    #[test]
    fn a_cuda_device_makes_float32_convolutions_ieee_and_attention_skip_cudnn() {
        // The setting is LibTorch's, held without a GPU too.
        assert_eq!(parse_device("cuda:0").unwrap(), Device::Cuda(0));
        assert_eq!(unsafe { inferd_cuda_conv_is_ieee() }, 1);
        assert_eq!(unsafe { inferd_cuda_cudnn_attention() }, 0);
    }
}
