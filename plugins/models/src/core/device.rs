//! Device names as the daemon spells them ("cpu", "cuda:0") and their tch
//! form, and how inputs reach a GPU.

use tch::{Device, Tensor};

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

extern "C" {
    fn inferd_pinned(tensor: *const std::ffi::c_void) -> *mut std::ffi::c_void;
}

/// A copy of the CPU tensor `host` in pinned (page-locked) host memory;
/// None where there is none to be had (no CUDA runtime).
pub fn pinned(host: &Tensor) -> Option<Tensor> {
    // SAFETY: a live tensor for the call; a non-null result is a new
    // at::Tensor that tch takes over.
    let raw = unsafe { inferd_pinned(host.as_ptr().cast()) };
    // SAFETY: see above.
    (!raw.is_null()).then(|| unsafe { Tensor::from_ptr(raw.cast()) })
}

/// `host` (built on the CPU: pixel values, audio features, a step's token
/// ids or uniform draws) on `device`. Bound for a GPU, it is copied into
/// pinned host memory first, from which the copy to the device runs on the
/// current stream without the host waiting for the GPU (LibTorch's caching
/// host allocator keeps the pinned block until that copy is done; a copy
/// from ordinary memory would wait for the stream to drain). On the CPU
/// nothing is copied.
pub fn upload(host: &Tensor, device: Device) -> Tensor {
    if !device.is_cuda() || host.device() != Device::Cpu {
        return host.to_device(device);
    }
    match pinned(host) {
        Some(pinned) => pinned.to_device_(device, host.kind(), true, false),
        None => host.to_device(device),
    }
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
    fn uploads_stay_put_on_the_cpu_and_pin_only_where_cuda_runs() {
        let host = Tensor::arange(1 << 19, (tch::Kind::Float, Device::Cpu));
        let same = upload(&host, Device::Cpu);
        assert_eq!(same.data_ptr(), host.data_ptr(), "no copy on the CPU");
        match pinned(&host) {
            Some(copy) => {
                assert!(tch::Cuda::is_available());
                assert!(copy.is_pinned(Device::Cuda(0)));
                assert_eq!(
                    Vec::<f32>::try_from(&copy).unwrap(),
                    Vec::<f32>::try_from(&host).unwrap()
                );
            }
            None => assert!(!tch::Cuda::is_available(), "pinning failed with CUDA present"),
        }
    }

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
