//! Times a text model's forward pass on one padded batch, without the daemon:
//! `cargo run --release --example encoder_forward -- MODEL_DIR PAYLOAD [BATCH] [THREADS]`
//! (PAYLOAD: one text per line; the first BATCH lines form the batch).

use std::path::Path;
use std::time::Instant;

use inferd_models::auto::{load_text_model, Head};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 3,
        "usage: encoder_forward MODEL_DIR PAYLOAD [BATCH] [THREADS]"
    );
    let batch_size: usize = args.get(3).map_or(32, |s| s.parse().expect("batch"));
    let threads: i32 = args.get(4).map_or(2, |s| s.parse().expect("threads"));
    tch::set_num_threads(threads);
    let model = load_text_model(
        Path::new(&args[1]),
        tch::Device::Cpu,
        Head::SequenceClassification,
        Default::default(),
        Default::default(),
    )
    .expect("load");
    let texts: Vec<String> = std::fs::read_to_string(&args[2])
        .expect("payload")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(batch_size)
        .map(str::to_string)
        .collect();
    let encodings: Vec<_> = texts
        .iter()
        .map(|t| model.tokenizer.encode(t, None).expect("encode"))
        .collect();
    let batch = model.tokenizer.pad(&encodings, tch::Device::Cpu);
    for _ in 0..2 {
        let _ = model.forward(&batch);
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let _ = model.forward(&batch);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "batch {:?}: min {:.1} ms, median {:.1} ms",
        batch.input_ids.size(),
        times[0],
        times[2]
    );
}
