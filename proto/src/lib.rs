//! The inferd API (`inferd.v1`) and the plugin payloads (`inferd.plugin.v1`),
//! generated from the .proto files in this folder.

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/inferd.v1.rs"));
}

pub mod plugin {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/inferd.plugin.v1.rs"));
    }
}

/// Encoded `FileDescriptorSet` of every inferd .proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/inferd_descriptor.bin"));

pub use prost;
pub use prost_types;
