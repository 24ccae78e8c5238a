include!("../build-support/torch_link.rs");

fn main() {
    link_torch();
    // As in tests/fuzzing/build.rs: the plugins linked together each export
    // `inferd_plugin_v1`, which the targets never call.
    println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
}
