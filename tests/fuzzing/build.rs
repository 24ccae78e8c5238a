include!("../../build-support/torch_link.rs");

fn main() {
    link_torch();
    // Every plugin exports the same entry point, `inferd_plugin_v1`, for the
    // daemon to find in its own library; linked together here they would
    // clash. The targets call each plugin's glue directly and never that
    // symbol, so whichever copy the linker keeps is unused.
    println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
}
