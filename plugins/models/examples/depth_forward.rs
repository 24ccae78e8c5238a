//! Times a depth model without the daemon, step by step: decoding and
//! processing the image, the forward pass, the resize to the image and the
//! PNG: `cargo run --release --example depth_forward -- MODEL_DIR IMAGE [BATCH] [THREADS]`.

use std::path::Path;
use std::time::Instant;

use inferd_models::auto::load_depth_estimator;
use inferd_models::core::precision::Precision;
use inferd_models::vision::depth::resize_depth;
use inferd_models::vision::image::{decode_rgb, stack};

/// The median of five timed runs after two warm-ups, in milliseconds.
fn median_ms(mut run: impl FnMut()) -> f64 {
    run();
    run();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 3,
        "usage: depth_forward MODEL_DIR IMAGE [BATCH] [THREADS]"
    );
    let batch: usize = args.get(3).map_or(1, |s| s.parse().expect("batch"));
    let threads: i32 = args.get(4).map_or(2, |s| s.parse().expect("threads"));
    tch::set_num_threads(threads);
    let model = load_depth_estimator(Path::new(&args[1]), tch::Device::Cpu, Precision::Float32).expect("load");
    let bytes = std::fs::read(&args[2]).expect("image");
    let image = decode_rgb(&bytes).expect("decode");
    let pixels = model.processor.process(&image).expect("process");
    let prepare = median_ms(|| {
        let image = decode_rgb(&bytes).expect("decode");
        model.processor.process(&image).expect("process");
    });
    let input = stack(&vec![&pixels; batch], tch::Device::Cpu);
    let forward = median_ms(|| {
        let _ = model.forward(&input);
    });
    let depth = model.forward(&input).get(0);
    let resize = median_ms(|| {
        resize_depth(&depth, image.width, image.height);
    });
    let map = resize_depth(&depth, image.width, image.height);
    let png = median_ms(|| {
        map.png8();
    });
    println!(
        "input {:?}: decode+process {prepare:.1} ms, forward {forward:.1} ms ({:.1} per image), resize {resize:.1} ms, \
         png {png:.1} ms",
        input.size(),
        forward / batch as f64
    );
}
