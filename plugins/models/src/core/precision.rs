//! The dtype a model computes in (LoadModel's options.dtype): float32,
//! float16 or bfloat16. The model's variables are created in it, so the
//! checkpoint loads straight into that type; its inputs are cast to it and
//! its outputs read back in float32, as transformers' pipelines do.

use tch::{Device, Kind};

use crate::{ModelError, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    Float32,
    Float16,
    BFloat16,
}

/// How far an architecture's code runs in 16-bit floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfSupport {
    /// Only float32.
    None,
    /// float16 and bfloat16 when asked; float32 by default (T5's
    /// activations overflow float16's range, as transformers warns).
    WhenAsked,
    /// float16 and bfloat16, and float16 by default on CUDA.
    Default,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::Float32 => Kind::Float,
            Precision::Float16 => Kind::Half,
            Precision::BFloat16 => Kind::BFloat16,
        }
    }

    /// The canonical name ("float32", ...), as LoadedModel.dtype reports it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Float16 => "float16",
            Precision::BFloat16 => "bfloat16",
        }
    }

    /// The dtype `asked` (LoadContext.dtype) resolves to for a model of
    /// `architecture` whose code runs as `support` says on `device`: ""
    /// (auto) is float32 on the CPU, float16 on CUDA where the
    /// architecture is safe in it; a 16-bit dtype an architecture cannot
    /// run in is refused, naming it. A `preference` (the daemon's default
    /// dtype rather than the model's own) applies only where the
    /// architecture runs in 16 bits by default, float32 elsewhere.
    pub fn resolve(
        asked: &str,
        device: Device,
        architecture: &str,
        support: HalfSupport,
        preference: bool,
    ) -> Result<Precision> {
        let name = inferd_sdk::dtype_name(asked).map_err(|e| ModelError::InvalidInput(e.message))?;
        let name = if preference && !name.is_empty() && support != HalfSupport::Default {
            "float32"
        } else {
            name
        };
        let precision = match name {
            "" if device.is_cuda() && support == HalfSupport::Default => Precision::Float16,
            "" | "float32" => Precision::Float32,
            "float16" => Precision::Float16,
            _ => Precision::BFloat16,
        };
        if precision != Precision::Float32 && support == HalfSupport::None {
            return Err(ModelError::InvalidInput(format!(
                "dtype {}: {architecture} runs in float32 only; leave dtype out or ask for float32",
                precision.name()
            )));
        }
        Ok(precision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_float32_on_the_cpu_and_float16_on_cuda_where_safe() {
        let resolve = |asked, device, support| Precision::resolve(asked, device, "X", support, false);
        assert_eq!(
            resolve("", Device::Cpu, HalfSupport::Default).unwrap(),
            Precision::Float32
        );
        assert_eq!(
            resolve("auto", Device::Cuda(0), HalfSupport::Default).unwrap(),
            Precision::Float16
        );
        assert_eq!(
            resolve("", Device::Cuda(0), HalfSupport::WhenAsked).unwrap(),
            Precision::Float32
        );
        assert_eq!(
            resolve("", Device::Cuda(0), HalfSupport::None).unwrap(),
            Precision::Float32
        );
        assert_eq!(
            resolve("bf16", Device::Cpu, HalfSupport::WhenAsked).unwrap(),
            Precision::BFloat16
        );
        assert_eq!(
            resolve("half", Device::Cpu, HalfSupport::Default).unwrap(),
            Precision::Float16
        );
        assert_eq!(
            resolve("float32", Device::Cuda(0), HalfSupport::Default).unwrap(),
            Precision::Float32
        );
        let refused = resolve("float16", Device::Cuda(0), HalfSupport::None)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("X runs in float32 only"), "{refused}");
        // The daemon's default, a preference: 16 bits where they are the default.
        let preferred = |support| Precision::resolve("bfloat16", Device::Cpu, "X", support, true).unwrap();
        assert_eq!(preferred(HalfSupport::Default), Precision::BFloat16);
        assert_eq!(preferred(HalfSupport::WhenAsked), Precision::Float32);
        assert_eq!(preferred(HalfSupport::None), Precision::Float32);
        let unknown = resolve("int4", Device::Cpu, HalfSupport::Default)
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("\"int4\" is not one of auto, float32, float16, bfloat16"),
            "{unknown}"
        );
    }
}
