include!("../../build-support/torch_link.rs");

fn main() {
    link_torch();
    compile_cpp_shims();
}

/// The C++ entry points to LibTorch's quantized linear kernels (see
/// cpp/int8_linear.cpp), to a tensor's view base (cpp/views.cpp), to
/// LibTorch's float32 precision settings (cpp/precision.cpp), to linear
/// layers split among threads (cpp/split_linear.cpp), to oneDNN's linear
/// layers (cpp/onednn_linear.cpp) and to Winograd's 3x3 convolutions
/// (cpp/winograd.cpp), compiled against the same LibTorch headers.
fn compile_cpp_shims() {
    println!("cargo:rerun-if-changed=cpp/int8_linear.cpp");
    println!("cargo:rerun-if-changed=cpp/views.cpp");
    println!("cargo:rerun-if-changed=cpp/precision.cpp");
    println!("cargo:rerun-if-changed=cpp/split_linear.cpp");
    println!("cargo:rerun-if-changed=cpp/onednn_linear.cpp");
    println!("cargo:rerun-if-changed=cpp/winograd.cpp");
    println!("cargo:rerun-if-changed=cpp/message.h");
    println!("cargo:rerun-if-changed=cpp/onednn_ops.h");
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
        // at::parallel_for is inline OpenMP: without the flag its pragma is
        // dropped and the split linear layers run on one thread. GCC's flag:
        // its calls go to libgomp, the runtime linked below (a CXX of clang
        // would call LLVM's OpenMP runtime instead).
        .flag("-fopenmp")
        .file("cpp/int8_linear.cpp")
        .file("cpp/views.cpp")
        .file("cpp/precision.cpp")
        .file("cpp/split_linear.cpp")
        .file("cpp/onednn_linear.cpp")
        .file("cpp/winograd.cpp")
        .compile("inferd_int8");
    // The OpenMP runtime LibTorch itself runs on (the wheel's own
    // libgomp.so.1 beside libtorch_cpu), so that both share one thread pool
    // and its thread count.
    println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
}
