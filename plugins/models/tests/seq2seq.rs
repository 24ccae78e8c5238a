//! Batched encoder-decoder generation on the fixture models (BART, T5, T5
//! v1.1, Marian): inputs decoded together give the tokens they give one at
//! a time, share every decoder step, leave the batch when their search is
//! over, and can be stopped one by one; inputs that join a running decode
//! (continuous batching) get the tokens they get alone, and leave it (its
//! rows freed) as soon as they are done or stopped.

mod common;

use std::cell::RefCell;
use std::sync::Arc;

use inferd_models::auto::{load_seq2seq, Seq2SeqModel};
use inferd_models::core::decoding::{DecoderState, Seq2SeqLm};
use inferd_models::core::layers::padding_bias;
use inferd_models::generation::seq2seq::{generate, generate_joined, Arrival, Source};
use inferd_models::generation::settings::MAX_BATCH_ROWS;
use inferd_models::generation::{resolve_text2text, GenerationParams, GenerationSettings};
use tch::{Device, Kind, Tensor};

/// The fixture model `name` and the token ids of some inputs of its task.
fn model_and_inputs(name: &str, task: &str) -> (Seq2SeqModel, Vec<Vec<i64>>) {
    let fixtures = common::fixtures();
    let model = load_seq2seq(
        &fixtures.join("models").join(name),
        Device::Cpu,
        Default::default(),
        Default::default(),
    )
    .expect("fixture model loads");
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("references/seq2seq.json")).unwrap()).unwrap();
    // Every distinct input of the model's cases, short and long.
    let mut texts: Vec<String> = Vec::new();
    for case in refs["cases"].as_array().unwrap().iter().filter(|c| c["model"] == name) {
        let inputs = match &case["inputs"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
            other => panic!("inputs {other}"),
        };
        for text in inputs {
            if !texts.contains(&text) {
                texts.push(text);
            }
        }
    }
    let (_, prefix) = model.task(task).unwrap();
    let ids = texts
        .iter()
        .map(|t| model.tokenizer.encode(&format!("{prefix}{t}"), None).unwrap())
        .collect();
    (model, ids)
}

fn params(model: &Seq2SeqModel, task: &str, asked: GenerationSettings) -> GenerationParams {
    let (task_settings, _) = model.task(task).unwrap();
    resolve_text2text(&model.settings.file, task_settings.as_ref(), &asked).unwrap()
}

/// Every input with the same settings.
fn sources<'a>(inputs: &'a [Vec<i64>], params: &'a GenerationParams) -> Vec<Source<'a>> {
    inputs
        .iter()
        .map(|input_ids| Source::tokens(input_ids, params))
        .collect()
}

fn beams(n: usize) -> GenerationSettings {
    GenerationSettings {
        num_beams: Some(n),
        ..Default::default()
    }
}

/// Counts the decoder's steps and the hypotheses each one computes.
struct Counting<'a> {
    inner: &'a dyn Seq2SeqLm,
    rows: RefCell<Vec<usize>>,
    /// The rows of the first layer's self-attention cache after each step.
    cached: RefCell<Vec<usize>>,
}

impl Seq2SeqLm for Counting<'_> {
    fn encode(&self, input_ids: &Tensor, padding: Option<&Tensor>) -> Tensor {
        self.inner.encode(input_ids, padding)
    }
    fn step(&self, tokens: &[i64], state: &mut DecoderState) -> Tensor {
        self.rows.borrow_mut().push(tokens.len());
        let logits = self.inner.step(tokens, state);
        self.cached.borrow_mut().push(state.self_attn[0].rows());
        logits
    }
    fn cross_keys_values(&self, state: &mut DecoderState) {
        self.inner.cross_keys_values(state)
    }
    fn decoder_layers(&self) -> usize {
        self.inner.decoder_layers()
    }
    fn decoder_start_token_id(&self) -> i64 {
        self.inner.decoder_start_token_id()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
}

#[test]
fn a_batch_gives_the_tokens_of_one_input_at_a_time() {
    for (name, task) in [
        ("bart-sum", "summarization"),
        ("t5-small-ish", "summarization"),
        ("t5-small-ish", "translation_en_to_fr"),
        ("t5-v1_1", "summarization"),
        ("marian-fr-en", "translation"),
    ] {
        let (model, inputs) = model_and_inputs(name, task);
        assert!(inputs.len() >= 4, "{name}: {} inputs", inputs.len());
        let greedy = params(&model, task, beams(1));
        let beam4 = params(&model, task, beams(4));
        let two = params(
            &model,
            task,
            GenerationSettings {
                num_beams: Some(3),
                num_return_sequences: Some(2),
                ..Default::default()
            },
        );
        for p in [&greedy, &beam4, &two] {
            let alone: Vec<_> = inputs
                .iter()
                .map(|ids| {
                    generate(model.net.as_ref(), &sources(std::slice::from_ref(ids), p), &mut |_| {
                        true
                    })
                    .remove(0)
                })
                .collect();
            let together = generate(model.net.as_ref(), &sources(&inputs, p), &mut |_| true);
            assert_eq!(together, alone, "{name} {task}, {} beams", p.num_beams);
            assert!(together.iter().all(|s| s.len() == p.num_return_sequences));
            // More hypotheses than one batch holds, in an order unlike the
            // length order they are decoded in: each answer still in place.
            let many: Vec<Vec<i64>> = (0..MAX_BATCH_ROWS / p.num_beams + 3)
                .map(|k| inputs[(k * 7) % inputs.len()].clone())
                .collect();
            let got = generate(model.net.as_ref(), &sources(&many, p), &mut |_| true);
            for (k, sequences) in got.iter().enumerate() {
                assert_eq!(
                    sequences,
                    &alone[(k * 7) % inputs.len()],
                    "{name} {task}: input {k} of many"
                );
            }
        }
        // Greedy and beam-search inputs, interleaved, in one call.
        let mixed: Vec<Source> = inputs
            .iter()
            .enumerate()
            .map(|(i, ids)| Source::tokens(ids, if i % 2 == 0 { &greedy } else { &beam4 }))
            .collect();
        let got = generate(model.net.as_ref(), &mixed, &mut |_| true);
        for (i, (ids, source)) in inputs.iter().zip(&mixed).enumerate() {
            let alone = generate(
                model.net.as_ref(),
                &sources(std::slice::from_ref(ids), source.params),
                &mut |_| true,
            );
            assert_eq!(got[i], alone[0], "{name} {task}: mixed input {i}");
        }
    }
}

#[test]
fn inputs_share_decoder_steps_and_leave_when_done() {
    let (model, inputs) = model_and_inputs("bart-sum", "summarization");
    for num_beams in [1, 4] {
        let p = params(&model, "summarization", beams(num_beams));
        let sources = sources(&inputs, &p);
        let counting = Counting {
            inner: model.net.as_ref(),
            rows: RefCell::new(vec![]),
            cached: RefCell::new(vec![]),
        };
        let out = generate(&counting, &sources, &mut |_| true);
        let rows = counting.rows.into_inner();
        let lengths: Vec<usize> = out.iter().map(|s| s[0].len()).collect();
        // One step per token of the longest output, all inputs in the first.
        assert_eq!(rows[0], inputs.len() * num_beams, "{num_beams} beams: {rows:?}");
        if num_beams == 1 {
            assert_eq!(
                rows.len(),
                lengths.iter().max().unwrap() - 1,
                "{rows:?} for lengths {lengths:?}"
            );
            // Each input is in the steps that made its tokens, no more.
            assert_eq!(rows.iter().sum::<usize>(), lengths.iter().map(|l| l - 1).sum::<usize>());
        }
        // Inputs of different lengths finish apart: the batch shrinks.
        assert!(rows.windows(2).all(|w| w[1] <= w[0]), "{rows:?}");
        assert!(
            rows.last().unwrap() < &rows[0],
            "{num_beams} beams: nothing left early: {rows:?}"
        );
    }
}

#[test]
fn a_stopped_input_leaves_and_the_others_go_on() {
    let (model, inputs) = model_and_inputs("marian-fr-en", "translation");
    let p = params(&model, "translation", beams(4));
    let sources = sources(&inputs, &p);
    let full = generate(model.net.as_ref(), &sources, &mut |_| true);
    let mut asked = vec![0; inputs.len()];
    let got = generate(model.net.as_ref(), &sources, &mut |i| {
        asked[i] += 1;
        !(i == 1 && asked[i] > 3)
    });
    assert_eq!(asked[1], 4, "input 1 is asked until it says no");
    for i in (0..inputs.len()).filter(|&i| i != 1) {
        assert_eq!(got[i], full[i], "input {i}");
    }
    assert_ne!(got[1], full[1]);
}

#[test]
fn long_padded_t5_inputs_are_encoded_a_few_at_a_time_with_the_same_result() {
    // 4 heads x n^2 f32 biases of ~1750-token inputs: ~50 MB each, so the
    // encoder's 256 MB budget takes eight of them in two groups.
    let (model, inputs) = model_and_inputs("t5-small-ish", "summarization");
    let all: Vec<i64> = inputs.iter().flatten().copied().cycle().take(2000).collect();
    let long: Vec<Vec<i64>> = (0..8).map(|i| all[..1750 - 50 * i].to_vec()).collect();
    let n = long[0].len();
    let ids: Vec<i64> = long
        .iter()
        .flat_map(|l| l.iter().copied().chain(std::iter::repeat_n(0, n - l.len())))
        .collect();
    let mask: Vec<i64> = long
        .iter()
        .flat_map(|l| (0..n).map(|t| i64::from(t < l.len())))
        .collect();
    let shape = [long.len() as i64, n as i64];
    let padding = padding_bias(&Tensor::from_slice(&mask).view(shape), Kind::Float);
    let _guard = tch::no_grad_guard();
    let together = model.net.encode(&Tensor::from_slice(&ids).view(shape), Some(&padding));
    for (i, l) in long.iter().enumerate() {
        let alone = model.net.encode(&Tensor::from_slice(l).unsqueeze(0), None);
        let got = together.narrow(0, i as i64, 1).narrow(1, 0, l.len() as i64);
        let worst = (got - &alone).abs().max().double_value(&[]);
        assert!(worst < 1e-4, "input {i} ({} tokens): off by {worst}", l.len());
    }
    // And the tokens generated from them.
    let p = params(&model, "summarization", beams(1));
    let batched = generate(model.net.as_ref(), &sources(&long, &p), &mut |_| true);
    for (i, ids) in long.iter().enumerate() {
        let alone = generate(model.net.as_ref(), &sources(std::slice::from_ref(ids), &p), &mut |_| {
            true
        });
        assert_eq!(batched[i], alone[0], "input {i} ({} tokens)", ids.len());
    }
}

/// What a joined decode gave: each arrival's sequences (in arrival order),
/// the iteration each finished in, and the rows decoding before each
/// iteration's arrivals.
struct Joined {
    sequences: Vec<Vec<Vec<i64>>>,
    finished_at: Vec<usize>,
    rows: Vec<usize>,
}

/// Runs a joined decode where `schedule[k]` arrive at iteration k (as
/// (input, settings) pairs).
fn joined(
    model: &dyn Seq2SeqLm,
    schedule: &[Vec<(Vec<i64>, Arc<GenerationParams>)>],
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Joined {
    let iteration = RefCell::new(0);
    let mut rows = Vec::new();
    let count: usize = schedule.iter().map(Vec::len).sum();
    let mut out = vec![None; count];
    generate_joined(
        model,
        MAX_BATCH_ROWS,
        None,
        &mut |running| {
            rows.push(running);
            let k = rows.len() - 1;
            *iteration.borrow_mut() = k;
            schedule.get(k).map_or_else(Vec::new, |arrivals| {
                arrivals
                    .iter()
                    .map(|(ids, params)| Arrival::tokens(ids.clone(), Arc::clone(params)))
                    .collect()
            })
        },
        keep_going,
        &mut |i, found| {
            assert!(out[i].is_none(), "arrival {i} finished twice");
            let sequences: Vec<Vec<i64>> = found.into_iter().map(|(tokens, _)| tokens).collect();
            out[i] = Some((sequences, *iteration.borrow()));
        },
    );
    let (sequences, finished_at) = out.into_iter().map(|o| o.expect("every arrival finished")).unzip();
    Joined {
        sequences,
        finished_at,
        rows,
    }
}

#[test]
fn inputs_that_join_a_running_decode_get_the_tokens_they_get_alone() {
    for (name, task) in [
        ("bart-sum", "summarization"),
        ("t5-small-ish", "translation_en_to_fr"),
        ("t5-v1_1", "summarization"),
        ("marian-fr-en", "translation"),
    ] {
        let (model, inputs) = model_and_inputs(name, task);
        let greedy = Arc::new(params(&model, task, beams(1)));
        let beam4 = Arc::new(params(&model, task, beams(4)));
        let two = Arc::new(params(
            &model,
            task,
            GenerationSettings {
                num_beams: Some(3),
                num_return_sequences: Some(2),
                ..Default::default()
            },
        ));
        let n = inputs.len();
        let at = |k: usize, p: &Arc<GenerationParams>| (inputs[k % n].clone(), Arc::clone(p));
        // Inputs of other lengths and beam counts, arriving at iterations
        // 0, 1, 3 and 6 (one twice, into a decode that has moved on).
        let schedule = vec![
            vec![at(0, &greedy), at(1, &beam4)],
            vec![at(2, &greedy)],
            vec![],
            vec![at(3, &beam4), at(4, &two), at(1, &greedy)],
            vec![],
            vec![],
            vec![at(0, &greedy), at(5, &beam4)],
        ];
        let got = joined(model.net.as_ref(), &schedule, &mut |_| true);
        let arrivals: Vec<&(Vec<i64>, Arc<GenerationParams>)> = schedule.iter().flatten().collect();
        for (i, (ids, p)) in arrivals.iter().enumerate() {
            let alone = generate(model.net.as_ref(), &sources(std::slice::from_ref(ids), p), &mut |_| {
                true
            });
            assert_eq!(
                got.sequences[i], alone[0],
                "{name} {task}: arrival {i} ({} beams)",
                p.num_beams
            );
        }
    }
}

#[test]
fn joined_inputs_leave_the_decode_as_soon_as_they_end_or_are_stopped() {
    let (model, inputs) = model_and_inputs("bart-sum", "summarization");
    let greedy = Arc::new(params(&model, "summarization", beams(1)));
    let beam4 = Arc::new(params(&model, "summarization", beams(4)));
    // A greedy input and a 4-beam one from the start, greedy ones joining
    // at iterations 2 and 3; the one of iteration 2 is stopped on its
    // fourth question.
    let schedule = vec![
        vec![
            (inputs[0].clone(), Arc::clone(&greedy)),
            (inputs[1].clone(), Arc::clone(&beam4)),
        ],
        vec![],
        vec![(inputs[2].clone(), Arc::clone(&greedy))],
        vec![(inputs[3].clone(), Arc::clone(&greedy))],
    ];
    let arrived_at = [0, 0, 2, 3];
    let width = [1, 4, 1, 1];
    let mut asked = [0; 4];
    let counting = Counting {
        inner: model.net.as_ref(),
        rows: RefCell::new(vec![]),
        cached: RefCell::new(vec![]),
    };
    let got = joined(&counting, &schedule, &mut |i| {
        asked[i] += 1;
        !(i == 2 && asked[i] > 3)
    });
    // Before each iteration, the rows decoding are those of the inputs that
    // arrived before it and had not finished: each left at once.
    for (k, &rows) in got.rows.iter().enumerate() {
        let want: usize = (0..4)
            .filter(|&i| arrived_at[i] < k && got.finished_at[i] >= k)
            .map(|i| width[i])
            .sum();
        assert_eq!(
            rows, want,
            "iteration {k}: rows {:?}, finished at {:?}",
            got.rows, got.finished_at
        );
    }
    assert_eq!(*got.rows.last().unwrap(), 0);
    assert_eq!(asked[2], 4);
    // Asked as it starts, at iteration 2: the first inputs arrived at
    // iteration 0, were asked about again at 1 (nothing more came) and
    // started, and arrivals are asked once more after a start, so no step
    // has run yet. Input 3 starts at iteration 3, at the limit of starts
    // between two steps. Then input 2 is asked before each step, which it
    // takes with the others from its first: after iterations 3, 4 and 5.
    assert_eq!(got.finished_at[2], 5, "stopped when asked the fourth time");
    assert!(
        got.rows.windows(2).any(|w| 0 < w[1] && w[1] < w[0]),
        "some input left while others ran: {:?}",
        got.rows
    );
    // And every step's caches held the rows it fed, no more.
    let steps = counting.rows.into_inner();
    let cached = counting.cached.into_inner();
    assert_eq!(steps, cached);
}

#[test]
fn an_input_that_ends_on_its_first_step_after_waiting_still_lets_the_caller_add_more() {
    let (model, inputs) = model_and_inputs("bart-sum", "summarization");
    let settings = |tokens: usize| {
        Arc::new(params(
            &model,
            "summarization",
            GenerationSettings {
                num_beams: Some(1),
                max_new_tokens: Some(tokens),
                min_length: Some(0),
                ..Default::default()
            },
        ))
    };
    // One row at a time: the second input waits for the first, then ends
    // on its first step with nothing else running; its end makes the
    // caller add a third (as Whisper adds an input's next window).
    let mut asked = 0;
    let more = std::cell::Cell::new(false);
    let mut done = vec![];
    generate_joined(
        model.net.as_ref(),
        1,
        None,
        &mut |_| {
            asked += 1;
            if asked == 1 {
                vec![
                    Arrival::tokens(inputs[0].clone(), settings(5)),
                    Arrival::tokens(inputs[1].clone(), settings(1)),
                ]
            } else if more.replace(false) {
                vec![Arrival::tokens(inputs[2].clone(), settings(1))]
            } else {
                vec![]
            }
        },
        &mut |_| true,
        &mut |i, _| {
            done.push(i);
            if i == 1 {
                more.set(true);
            }
        },
    );
    assert_eq!(done, vec![0, 1, 2]);
}
