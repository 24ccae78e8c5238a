//! Device names as the daemon spells them ("cpu", "cuda:0") and their tch form.

use tch::Device;

use crate::{ModelError, Result};

/// Parses "cpu", "cuda" (device 0) or "cuda:N".
pub fn parse_device(name: &str) -> Result<Device> {
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
}
