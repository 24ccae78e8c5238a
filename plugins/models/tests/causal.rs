//! Continuous batching of decoder-only generation on the GPT-2 fixture: the
//! sequences that join a running decode get the tokens they get alone, and
//! finished or stopped sequences leave the batch at once, their KV cache
//! rows with them.

mod common;

use std::cell::RefCell;

use inferd_models::auto::{load_causal_lm, CausalModel};
use inferd_models::core::decoding::CausalLm;
use inferd_models::core::layers::KvCache;
use inferd_models::generation::causal::{generate, generate_joined, Control, FinishReason, Request};
use inferd_models::generation::{resolve_text_generation, GenerationSettings};
use tch::{Device, Tensor};

use common::{fixtures, reference};

/// Counts the rows each forward pass computes and its caches hold after.
struct Counting<'a> {
    inner: &'a dyn CausalLm,
    rows: RefCell<Vec<(usize, usize)>>,
}

impl CausalLm for Counting<'_> {
    fn new_cache(&self) -> Vec<KvCache> {
        self.inner.new_cache()
    }
    fn forward_last(&self, input_ids: &Tensor, position_ids: &Tensor, mask: &Tensor, cache: &mut [KvCache]) -> Tensor {
        let logits = self.inner.forward_last(input_ids, position_ids, mask, cache);
        self.rows
            .borrow_mut()
            .push((input_ids.size()[0] as usize, cache[0].rows()));
        logits
    }
    fn max_positions(&self) -> usize {
        self.inner.max_positions()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
}

/// The GPT-2 fixture, in float32 on the CPU.
fn gpt2() -> CausalModel {
    load_causal_lm(
        &fixtures().join("models").join("gpt2-gen"),
        Device::Cpu,
        Default::default(),
        Default::default(),
    )
    .unwrap()
}

#[test]
fn sequences_leave_the_decode_as_soon_as_they_end_or_are_stopped() {
    let mut model = gpt2();
    let pad = model.tokenizer.pad_id();
    // (arrives at iteration, prompt, new tokens); the third is stopped after
    // its fourth token.
    let schedule: [(usize, &str, usize); 4] = [
        (0, "Once upon a time", 24),
        (0, "Hello", 6),
        (2, "A longer prompt than the others have", 12),
        (5, "Short", 3),
    ];
    let prompts: Vec<Vec<i64>> = schedule
        .iter()
        .map(|s| {
            let ids = model.tokenizer.encode_untruncated(s.1).unwrap();
            ids.into_iter().map(i64::from).collect()
        })
        .collect();
    let request = |k: usize| {
        let (prompt, tokens) = (prompts[k].clone(), schedule[k].2);
        let asked = GenerationSettings {
            max_new_tokens: Some(tokens),
            min_new_tokens: Some(tokens),
            do_sample: Some(false),
            ..Default::default()
        };
        let params =
            resolve_text_generation(&model.settings, &asked, prompt.len(), 1024, model.eos_token_id, 0).unwrap();
        Request::new(prompt, params)
    };
    let counting = Counting {
        inner: model.model.as_ref(),
        rows: RefCell::new(vec![]),
    };
    let iteration = RefCell::new(0);
    let mut running = Vec::new();
    let mut finished_at = vec![None; schedule.len()];
    let mut tokens = vec![Vec::new(); schedule.len()];
    generate_joined(
        &counting,
        pad,
        &mut |rows| {
            running.push(rows);
            let k = running.len() - 1;
            *iteration.borrow_mut() = k;
            (0..schedule.len())
                .filter(|&i| schedule[i].0 == k)
                .map(request)
                .collect()
        },
        &mut |i, token| {
            tokens[i].push(token);
            if i == 2 && tokens[i].len() == 4 {
                Control::Stop(FinishReason::Cancelled)
            } else {
                Control::Continue
            }
        },
        &mut |i, generated| {
            assert!(finished_at[i].is_none(), "sequence {i} finished twice");
            finished_at[i] = Some((*iteration.borrow(), generated));
        },
    );
    let finished_at: Vec<_> = finished_at
        .into_iter()
        .map(|f| f.expect("every sequence finished"))
        .collect();
    assert_eq!(finished_at[2].1.finish, FinishReason::Cancelled);
    assert_eq!(finished_at[2].1.tokens.len(), 4);
    // The rows decoding before each iteration are the sequences that
    // arrived before it and had not finished: each left at once.
    for (k, &rows) in running.iter().enumerate() {
        let want = (0..schedule.len())
            .filter(|&i| schedule[i].0 < k && finished_at[i].0 >= k)
            .count();
        assert_eq!(rows, want, "iteration {k}: rows {running:?}");
    }
    assert!(
        running.windows(2).any(|w| 0 < w[1] && w[1] < w[0]),
        "some sequence left while others ran: {running:?}"
    );
    // Every forward pass's caches held its rows and no more.
    for (fed, cached) in counting.rows.into_inner() {
        assert_eq!(fed, cached);
    }
    // And each sequence's tokens are those it gets alone.
    for (i, (_, got)) in finished_at.iter().enumerate() {
        let alone = generate(model.model.as_ref(), vec![request(i)], pad, |_, _| Control::Continue);
        let want = if i == 2 {
            &alone[0].tokens[..4]
        } else {
            &alone[0].tokens[..]
        };
        assert_eq!(got.tokens, want, "sequence {i}");
    }
}

/// Requests prefilled together are left padded among themselves, with the
/// pad token (GPT-2's EOS): the processors that read a row's history (the
/// repetition penalty, banned n-grams, min_length) must see only the
/// padding of the row's own request, or a short prompt beside a long one
/// would have EOS penalised or banned. Each gets the tokens it gets alone.
#[test]
fn requests_prefilled_together_see_only_their_own_padding() {
    let mut model = gpt2();
    let pad = model.tokenizer.pad_id();
    // The corpus prompt whose greedy continuation ends with EOS early
    // (the reference's min_new_tokens case starts with it), and a longer one.
    let refs = reference("text_generation.json");
    let eos_prompt = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["params"]["min_new_tokens"].is_number())
        .expect("the min_new_tokens case")["prompts"][0]
        .as_str()
        .unwrap()
        .to_string();
    let long = "A prompt much longer than the other one, so that the other is padded on the left by many tokens";
    let prompts: Vec<Vec<i64>> = [eos_prompt.as_str(), long]
        .iter()
        .map(|text| {
            let ids = model.tokenizer.encode_untruncated(text).unwrap();
            ids.into_iter().map(i64::from).collect()
        })
        .collect();
    assert!(prompts[1].len() > prompts[0].len() + 8);
    for settings in [
        GenerationSettings {
            repetition_penalty: Some(1.5),
            ..Default::default()
        },
        GenerationSettings {
            no_repeat_ngram_size: Some(1),
            ..Default::default()
        },
        GenerationSettings {
            min_length: Some(prompts[0].len() + 3),
            ..Default::default()
        },
    ] {
        let asked = GenerationSettings {
            max_new_tokens: Some(12),
            do_sample: Some(false),
            ..settings
        };
        let request = |prompt: &Vec<i64>| {
            let params =
                resolve_text_generation(&model.settings, &asked, prompt.len(), 1024, model.eos_token_id, 0).unwrap();
            Request::new(prompt.clone(), params)
        };
        let together = generate(
            model.model.as_ref(),
            prompts.iter().map(request).collect(),
            pad,
            |_, _| Control::Continue,
        );
        for (k, prompt) in prompts.iter().enumerate() {
            let alone = generate(model.model.as_ref(), vec![request(prompt)], pad, |_, _| {
                Control::Continue
            });
            assert_eq!(together[k], alone[0], "prompt {k} under {asked:?}");
        }
    }
}

/// Sequences that all end in their prefill leave nothing running, yet more
/// may wait their turn (the rest of a batch held back by the budgets): the
/// decode asks for arrivals again before it returns.
#[test]
fn arrivals_are_asked_again_after_a_prefill_that_ends_everything() {
    let mut model = gpt2();
    let pad = model.tokenizer.pad_id();
    let prompt: Vec<i64> = model
        .tokenizer
        .encode_untruncated("Once upon a time")
        .unwrap()
        .into_iter()
        .map(i64::from)
        .collect();
    let request = |tokens: usize| {
        let asked = GenerationSettings {
            max_new_tokens: Some(tokens),
            do_sample: Some(false),
            ..Default::default()
        };
        let params =
            resolve_text_generation(&model.settings, &asked, prompt.len(), 1024, model.eos_token_id, 0).unwrap();
        Request::new(prompt.clone(), params)
    };
    // One token (done in its prefill), then one of three tokens.
    let mut waiting = vec![vec![request(3)], vec![request(1)]];
    let mut finished = vec![];
    generate_joined(
        model.model.as_ref(),
        pad,
        &mut |_| waiting.pop().unwrap_or_default(),
        &mut |_, _| Control::Continue,
        &mut |i, generated| finished.push((i, generated.tokens.len())),
    );
    assert_eq!(finished, [(0, 1), (1, 3)]);
}
