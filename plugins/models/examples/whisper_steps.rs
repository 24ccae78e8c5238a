//! Times Whisper without the daemon: the encoder on one 30 s window, and
//! decoding steps at a few batch sizes (one token per row, as greedy
//! decoding feeds them): `cargo run --release --example whisper_steps --
//! MODEL_DIR [THREADS [ROWS...]]` (rows 1, 4 and 8 unless given).

use std::path::Path;
use std::time::Instant;

use inferd_models::audio::whisper::build;
use inferd_models::core::decoding::{DecoderState, Seq2SeqLm};
use inferd_models::core::weights::Checkpoint;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(args.len() >= 2, "usage: whisper_steps MODEL_DIR [THREADS [ROWS...]]");
    let threads: i32 = args.get(2).map_or(2, |s| s.parse().expect("threads"));
    let mut batch_sizes: Vec<usize> = args.iter().skip(3).map(|s| s.parse().expect("rows")).collect();
    if batch_sizes.is_empty() {
        batch_sizes = vec![1, 4, 8];
    }
    tch::set_num_threads(threads);
    let _guard = tch::no_grad_guard();
    let dir = Path::new(&args[1]);
    let checkpoint = Checkpoint::open(dir).expect("checkpoint");
    let mut vs = VarStore::new(Device::Cpu);
    let model = build(vs.root(), &dir.join("config.json"), checkpoint.shapes()).expect("build");
    checkpoint.load_into(&mut vs).expect("load");
    let mels = model.config.num_mel_bins;
    let features = Tensor::randn([1, mels, 3000], (Kind::Float, Device::Cpu));
    let _warm = model.encode(&features, None);
    let t = Instant::now();
    let memory = model.encode(&features, None);
    println!("encoder, one window: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    for rows in batch_sizes {
        let memories = memory.repeat([rows as i64, 1, 1]);
        let mut state = DecoderState::new(memories, None, 1, model.decoder_layers());
        let tokens = vec![model.decoder_start_token_id(); rows];
        for _ in 0..4 {
            let _ = model.step(&tokens, &mut state);
        }
        // The fastest of five runs of 16 steps.
        let steps = 16;
        let ms = (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..steps {
                    let _ = model.step(&tokens, &mut state);
                }
                t.elapsed().as_secs_f64() * 1e3 / steps as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!("{rows} rows: {ms:.2} ms a step");
    }
}
