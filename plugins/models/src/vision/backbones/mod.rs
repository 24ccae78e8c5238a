//! Convolutional and transformer bodies that detection, segmentation and
//! classification heads sit on.

pub mod resnet;
pub mod swin;
