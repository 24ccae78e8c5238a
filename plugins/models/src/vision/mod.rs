//! Vision: image decoding, PIL-exact resampling and the image processors
//! (`image`), and the image families: ViT, ConvNeXT and ResNet
//! classifiers, DETR detection, GLPN (on the MiT encoder) and DPT depth,
//! SegFormer segmentation (on the same encoder), Mask2Former (on Swin)
//! with the query-mask post-processing (`mask_queries`).

pub mod backbones;
pub mod classifier;
pub mod convnext;
pub mod depth;
pub mod detector;
pub mod detr;
pub mod dpt;
pub mod glpn;
pub mod image;
pub mod mask2former;
pub mod mask_queries;
pub mod mit;
pub mod segformer;
pub mod segmenter;
pub mod vit;
