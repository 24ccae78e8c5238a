//! Vision: image decoding, PIL-exact resampling and the image processors
//! (`image`), and the image families: ViT and ConvNeXT. Detection,
//! segmentation and depth families go beside them (`backbones/`, `detr/`,
//! `mask2former/`, `glpn`).

pub mod backbones;
pub mod classifier;
pub mod convnext;
pub mod detector;
pub mod detr;
pub mod image;
pub mod vit;
