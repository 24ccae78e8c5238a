//! The inferd API (`inferd.v1`), the plugin payloads (`inferd.plugin.v1`)
//! and the Open Inference Protocol (`inference`, KServe v2), generated from
//! the .proto files in this folder.

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/inferd.v1.rs"));
}

pub mod plugin {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/inferd.plugin.v1.rs"));
    }
}

/// The Open Inference Protocol (KServe v2): `inference.GRPCInferenceService`.
pub mod kserve {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

/// Encoded `FileDescriptorSet` of every inferd .proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/inferd_descriptor.bin"));

pub use prost;
pub use prost_types;
