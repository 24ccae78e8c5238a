// Shared by the build scripts of the crates that link LibTorch (included with
// `include!`): binaries find LibTorch through an rpath, so they run without
// LD_LIBRARY_PATH: first `$ORIGIN/../lib/torch/lib`, where scripts/install.sh
// puts the libraries beside an installed (and movable) copy, then the
// virtualenv's, for the build output; and libtorch_cuda is linked even though no symbol of it is
// referenced, because its static initialisers are what register the CUDA
// backend (without it, CUDA devices are invisible to tch).
fn link_torch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let torch = std::env::var("LIBTORCH").expect("LIBTORCH is set by .cargo/config.toml");
    let lib = std::path::Path::new(&torch).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/torch/lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
