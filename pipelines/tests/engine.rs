//! The generation engine over a reference checkpoint: continuous batching,
//! chunked prefill, sampling, stops, cancellation and backpressure give the
//! same tokens the reference implementation does where they should.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use candle_core::Device;
use common::fixture;
use pipelines::backbone::Backbone;
use pipelines::generate::{
    Allowed, CancelToken, Engine, EngineConfig, Event, FinishReason, GenerationRequest, Guidance,
    SamplingParams, TokenConstraint,
};
use pipelines::tokenizer::{ChatMessage, TextTokenizer};

struct Setup {
    engine: Engine,
    tokenizer: Arc<TextTokenizer>,
    prompts: Vec<Vec<u32>>,
    greedy: Vec<Vec<u32>>,
}

fn setup(config: EngineConfig) -> Setup {
    let dir = fixture("qwen3_moe");
    let model = Arc::new(Backbone::load(&dir, &Device::Cpu).unwrap());
    let tokenizer = Arc::new(TextTokenizer::load(&dir).unwrap());
    let cases = common::cases(&dir);
    let prompts = cases.iter().map(|c| c.ids.clone()).collect();
    let greedy = cases.iter().map(|c| c.greedy.clone()).collect();
    Setup {
        engine: Engine::new(model, tokenizer.clone(), config),
        tokenizer,
        prompts,
        greedy,
    }
}

fn greedy_params(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature: 0.0,
        ignore_eos: true,
        ..SamplingParams::default()
    }
}

/// Tokens, text and the finish reason of a finished request.
fn collect(events: impl Iterator<Item = Event>) -> (Vec<u32>, String, FinishReason) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    for event in events {
        match event {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Finished {
                reason, text: tail, ..
            } => return (ids, text + &tail, reason),
            Event::Error(e) => panic!("{e}"),
        }
    }
    panic!("the engine closed the stream without finishing");
}

#[test]
fn concurrent_requests_match_the_reference_greedy_continuations() {
    // Three sequences batched together, prompts prefilled 4 tokens a step
    // while the others decode.
    let s = setup(EngineConfig {
        max_batch: 3,
        max_step_tokens: 6,
        ..EngineConfig::default()
    });
    let handles: Vec<_> = s
        .prompts
        .iter()
        .map(|p| {
            s.engine
                .submit(GenerationRequest::new(p.clone(), greedy_params(8)))
                .unwrap()
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let (ids, text, reason) = collect(handle);
        assert_eq!(ids, s.greedy[i], "prompt {i}");
        assert_eq!(reason, FinishReason::Length);
        assert_eq!(text, s.tokenizer.decode(&s.greedy[i], true).unwrap());
    }
}

#[test]
fn same_seed_same_text_and_logprobs_rank_the_alternatives() {
    let s = setup(EngineConfig::default());
    let sample = |seed| {
        let params = SamplingParams {
            max_tokens: 12,
            temperature: 0.9,
            top_p: 0.95,
            seed: Some(seed),
            ignore_eos: true,
            ..SamplingParams::default()
        };
        collect(
            s.engine
                .submit(GenerationRequest::new(s.prompts[0].clone(), params))
                .unwrap(),
        )
        .0
    };
    assert_eq!(sample(11), sample(11));
    assert_ne!(sample(11), sample(12));
    let params = SamplingParams {
        logprobs: Some(3),
        ..greedy_params(4)
    };
    for event in s
        .engine
        .submit(GenerationRequest::new(s.prompts[1].clone(), params))
        .unwrap()
    {
        if let Event::Token {
            id,
            logprob: Some(lp),
            ..
        } = event
        {
            assert_eq!(lp.top.len(), 3);
            assert_eq!(lp.top[0].0, id, "greedy picks the most likely token");
            assert!((lp.top[0].1 - lp.logprob).abs() < 1e-6 && lp.logprob <= 0.0);
            assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }
}

#[test]
fn stop_tokens_and_stop_strings_end_generation() {
    let s = setup(EngineConfig::default());
    let expected = &s.greedy[2];
    let params = SamplingParams {
        stop_token_ids: vec![expected[3]],
        ..greedy_params(8)
    };
    let (ids, _, reason) = collect(
        s.engine
            .submit(GenerationRequest::new(s.prompts[2].clone(), params))
            .unwrap(),
    );
    // The stop token ends generation without being emitted.
    assert_eq!(
        (ids.as_slice(), reason),
        (&expected[..3], FinishReason::Stop)
    );
    // A stop string taken from the middle of the reference text.
    let full = s.tokenizer.decode(expected, true).unwrap();
    let cut = full.char_indices().nth(full.chars().count() / 2).unwrap().0;
    let stop: String = full[cut..].chars().take(2).collect();
    let params = SamplingParams {
        stop: vec![stop.clone()],
        ..greedy_params(8)
    };
    let (_, text, reason) = collect(
        s.engine
            .submit(GenerationRequest::new(s.prompts[2].clone(), params))
            .unwrap(),
    );
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(
        text,
        full[..full.find(&stop).unwrap()],
        "text ends where the stop string begins"
    );
}

#[test]
fn cancelling_frees_the_slot_and_a_full_queue_refuses() {
    let s = setup(EngineConfig {
        max_batch: 1,
        max_queue: 1,
        ..EngineConfig::default()
    });
    let long = s
        .engine
        .submit(GenerationRequest::new(
            s.prompts[0].clone(),
            greedy_params(100_000),
        ))
        .unwrap();
    assert!(matches!(long.recv(), Some(Event::Token { .. })));
    // The one slot is busy: one request may wait, the next is refused.
    let waiting = s
        .engine
        .submit(GenerationRequest::new(
            s.prompts[1].clone(),
            greedy_params(8),
        ))
        .unwrap();
    let refused = s.engine.submit(GenerationRequest::new(
        s.prompts[2].clone(),
        greedy_params(8),
    ));
    assert!(refused.err().unwrap().to_string().contains("queue is full"));
    drop(long);
    let (ids, _, _) = collect(waiting);
    assert_eq!(
        ids, s.greedy[1],
        "the waiting request ran once the cancelled one left"
    );
}

#[test]
fn a_linked_token_cancels_running_and_waiting_requests() {
    let s = setup(EngineConfig {
        max_batch: 1,
        ..EngineConfig::default()
    });
    let token = CancelToken::new();
    let linked = |prompt: &Vec<u32>| {
        let mut r = GenerationRequest::new(prompt.clone(), greedy_params(100_000));
        r.cancel = Some(token.clone());
        s.engine.submit(r).unwrap()
    };
    let running = linked(&s.prompts[0]);
    let waiting = linked(&s.prompts[1]);
    assert!(matches!(running.recv(), Some(Event::Token { .. })));
    assert_eq!(s.engine.running(), 1);
    token.cancel();
    let (_, _, reason) = collect(running);
    assert_eq!(reason, FinishReason::Cancelled);
    // The waiting one never starts; its stream ends without a token.
    assert!(waiting
        .into_iter()
        .all(|e| !matches!(e, Event::Token { .. })));
    let (ids, _, _) = collect(
        s.engine
            .submit(GenerationRequest::new(
                s.prompts[2].clone(),
                greedy_params(8),
            ))
            .unwrap(),
    );
    assert_eq!(ids, s.greedy[2][..8], "the engine serves the next request");
    // The count is updated once the step that finished the request is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.engine.running() != 0 {
        assert!(std::time::Instant::now() < deadline, "still running");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn invalid_requests_name_the_field() {
    let s = setup(EngineConfig {
        max_context: 64,
        ..EngineConfig::default()
    });
    let submit = |prompt: Vec<u32>, params| {
        s.engine
            .submit(GenerationRequest::new(prompt, params))
            .err()
            .unwrap()
            .to_string()
    };
    assert!(submit(vec![1; 64], greedy_params(1)).contains("context"));
    assert!(submit(vec![], greedy_params(1)).contains("prompt"));
    assert!(submit(vec![100_000], greedy_params(1)).contains("vocabulary"));
    assert!(submit(
        vec![1],
        SamplingParams {
            top_p: 2.0,
            ..greedy_params(1)
        }
    )
    .contains("top_p"));
}

#[test]
fn chat_template_renders_as_transformers_does() {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("summary.json")).unwrap()).unwrap();
    let chat = &summary["chat"];
    let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
    let tokenizer = TextTokenizer::load(&fixture("qwen3_moe")).unwrap();
    let rendered = tokenizer.apply_chat_template(&messages, true).unwrap();
    assert_eq!(rendered, chat["rendered"].as_str().unwrap());
    let ids: Vec<u32> = serde_json::from_value(chat["ids"].clone()).unwrap();
    assert_eq!(tokenizer.encode(&rendered, false).unwrap(), ids);
}

/// Allows `count` tokens from `range`, then says the block is complete.
struct RangeBlock {
    range: std::ops::Range<u32>,
    count: usize,
    seen: Vec<u32>,
}

impl TokenConstraint for RangeBlock {
    fn allowed(&mut self) -> Allowed {
        if self.seen.len() == self.count {
            Allowed::Done
        } else {
            Allowed::Only(vec![self.range.clone()])
        }
    }
    fn accept(&mut self, token: u32) {
        self.seen.push(token);
    }
}

#[test]
fn a_constraint_keeps_samples_in_its_set_and_ends_the_block() {
    let s = setup(EngineConfig::default());
    let params = SamplingParams {
        max_tokens: 50,
        temperature: 1.5,
        seed: Some(3),
        ..SamplingParams::default()
    };
    let block = RangeBlock {
        range: 40..47,
        count: 9,
        seen: Vec::new(),
    };
    let request =
        GenerationRequest::new(s.prompts[0].clone(), params).with_constraint(Box::new(block));
    let (ids, _, reason) = collect(s.engine.submit(request).unwrap());
    assert_eq!(ids.len(), 9, "the block ends when the constraint is done");
    assert!(ids.iter().all(|t| (40..47).contains(t)), "{ids:?}");
    assert_eq!(reason, FinishReason::Stop);
}

#[test]
fn guidance_scale_one_is_the_conditional_and_zero_the_unconditional_prompt() {
    let s = setup(EngineConfig {
        max_step_tokens: 5,
        ..EngineConfig::default()
    });
    let guided = |scale| {
        let guidance = Guidance {
            unconditional: s.prompts[1].clone(),
            scale,
        };
        let request =
            GenerationRequest::new(s.prompts[0].clone(), greedy_params(8)).with_guidance(guidance);
        collect(s.engine.submit(request).unwrap()).0
    };
    assert_eq!(guided(1.0), s.greedy[0]);
    assert_eq!(guided(0.0), s.greedy[1]);
    let strong = guided(3.0);
    assert_eq!(strong.len(), 8);
    assert_ne!(
        strong, s.greedy[0],
        "a strong guidance changes the greedy path"
    );
}
