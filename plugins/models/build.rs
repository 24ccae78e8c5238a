include!("../../build-support/torch_link.rs");

fn main() {
    link_torch();
    compile_int8_kernels();
}

/// The C++ entry points to LibTorch's quantized linear kernels (see
/// cpp/int8_linear.cpp) and to a tensor's view base (cpp/views.cpp),
/// compiled against the same LibTorch headers.
fn compile_int8_kernels() {
    println!("cargo:rerun-if-changed=cpp/int8_linear.cpp");
    println!("cargo:rerun-if-changed=cpp/views.cpp");
    let torch = std::path::PathBuf::from(std::env::var("LIBTORCH").expect("LIBTORCH is set by .cargo/config.toml"));
    let include = torch.join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("cpp/int8_linear.cpp")
        .file("cpp/views.cpp")
        .compile("inferd_int8");
}
