//! The generation engine: one scheduler thread runs steps over every active
//! sequence (continuous batching). New requests join between steps; prompts
//! are prefilled in chunks within a per-step token budget, so a long prompt
//! never stalls sequences that are decoding; a request whose handle is
//! dropped or cancelled leaves at the next step and frees its slot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cancel::CancelToken;
use super::constraint::{fold_logits, mask_logits, Allowed, TokenConstraint};
use super::sampling::{Sampler, SamplingParams};
use crate::backbone::{Backbone, LogitsFor, SequenceCache, SequenceStep};
use crate::error::{PipelineError, Result};
use crate::tokenizer::{StreamDecoder, TextTokenizer};

/// Scheduling limits. Configuration, with defaults for a small CPU server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Sequences decoded together in one step.
    pub max_batch: usize,
    /// Tokens (decode plus prefill) one step may process.
    pub max_step_tokens: usize,
    /// Requests waiting for a slot before `submit` refuses more.
    pub max_queue: usize,
    /// Longest prompt plus completion, in tokens.
    pub max_context: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch: 16,
            max_step_tokens: 256,
            max_queue: 256,
            max_context: 4096,
        }
    }
}

/// What to generate from.
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// The structure the output must follow; generation stops when it is
    /// complete. Without one, any token may follow and end-of-sequence ends.
    pub constraint: Option<Box<dyn TokenConstraint>>,
    /// Classifier-free guidance: a second, unconditional prompt run in the
    /// same steps; each step samples from `uncond + scale * (cond - uncond)`.
    pub guidance: Option<Guidance>,
    /// Detokenize the output as it comes (events carry text). Media
    /// outputs turn this off: their tokens are codes, not text.
    pub text: bool,
    /// Cancels the request from outside (besides dropping its handle).
    pub cancel: Option<CancelToken>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Guidance {
    pub unconditional: Vec<u32>,
    pub scale: f32,
}

impl GenerationRequest {
    pub fn new(prompt: Vec<u32>, params: SamplingParams) -> GenerationRequest {
        GenerationRequest {
            prompt,
            params,
            constraint: None,
            guidance: None,
            text: true,
            cancel: None,
        }
    }

    pub fn with_constraint(mut self, constraint: Box<dyn TokenConstraint>) -> Self {
        self.constraint = Some(constraint);
        self
    }

    pub fn with_guidance(mut self, guidance: Guidance) -> Self {
        self.guidance = Some(guidance);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token, a stop token or a stop string.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
    /// The request was cancelled.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What a request receives, in order: one `Token` per emitted token, then
/// one `Finished` (or `Error`). Text held back while it might begin a stop
/// string or an unfinished character arrives with the next token, or in
/// `Finished::text` at the end.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Token {
        id: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Finished {
        reason: FinishReason,
        usage: Usage,
        text: String,
    },
    Error(String),
}

/// A submitted request: iterate its events; dropping it cancels generation.
pub struct RequestHandle {
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl RequestHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn recv(&self) -> Option<Event> {
        self.events.recv().ok()
    }
}

impl Iterator for RequestHandle {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.events.recv().ok()
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

struct Submission {
    request: GenerationRequest,
    events: Sender<Event>,
    cancel: Arc<AtomicBool>,
}

/// The handle's own flag or the request's linked token.
fn cancelled(own: &AtomicBool, linked: Option<&CancelToken>) -> bool {
    own.load(Ordering::Relaxed) || linked.is_some_and(CancelToken::is_cancelled)
}

/// One prompt of a sequence and its cache: a plain request has one lane, a
/// guided request a second for the unconditional prompt.
struct Lane {
    prompt: Vec<u32>,
    /// Prompt tokens already prefilled.
    prefilled: usize,
    cache: SequenceCache,
    /// This step's next-token logits, once the lane has them.
    logits: Option<Vec<f32>>,
}

/// A sequence in flight.
struct Active {
    lanes: Vec<Lane>,
    guidance_scale: f32,
    constraint: Option<Box<dyn TokenConstraint>>,
    /// The token to feed next once the prompt is in.
    pending: Option<u32>,
    generated: Vec<u32>,
    sampler: Sampler,
    /// The detokenizer, when the request wants text.
    decoder: Option<StreamDecoder>,
    /// Text produced but held back while it could still begin a stop string.
    held: String,
    /// A stop string ended the text: nothing held is sent after it.
    stopped_by_string: bool,
    events: Sender<Event>,
    cancel: Arc<AtomicBool>,
    linked: Option<CancelToken>,
}

impl Active {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.lanes[0].prompt.len(),
            completion_tokens: self.generated.len(),
        }
    }
}

pub struct Engine {
    submit: Option<Sender<Submission>>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    generated: Arc<std::sync::atomic::AtomicU64>,
    worker: Option<JoinHandle<()>>,
    config: EngineConfig,
    vocab_size: usize,
}

impl Engine {
    pub fn new(
        model: Arc<Backbone>,
        tokenizer: Arc<TextTokenizer>,
        config: EngineConfig,
    ) -> Engine {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let generated = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let vocab_size = model.config().vocab_size;
        let eos = tokenizer
            .eos_ids()
            .iter()
            .chain(&model.config().eos_token_ids)
            .copied()
            .collect();
        let scheduler = Scheduler {
            eos,
            model,
            tokenizer,
            config: config.clone(),
            incoming: rx,
            queued: queued.clone(),
            running: running.clone(),
            generated: generated.clone(),
            waiting: VecDeque::new(),
            active: Vec::new(),
        };
        let worker = std::thread::Builder::new()
            .name("anyforge-engine".into())
            .spawn(move || scheduler.run())
            .ok();
        Engine {
            submit: Some(tx),
            queued,
            running,
            generated,
            worker,
            config,
            vocab_size,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Sequences being generated (as of the last step).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Tokens generated since the engine started (all requests).
    pub fn generated_tokens(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }

    fn check_prompt(&self, field: &str, prompt: &[u32]) -> Result<()> {
        if prompt.is_empty() {
            return Err(PipelineError::Request(format!(
                "{field}: needs at least one token"
            )));
        }
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= self.vocab_size) {
            return Err(PipelineError::Request(format!(
                "{field}: token {bad} is outside the vocabulary of {}",
                self.vocab_size
            )));
        }
        if prompt.len() >= self.config.max_context {
            return Err(PipelineError::Request(format!(
                "{field}: {} tokens do not fit the context of {}",
                prompt.len(),
                self.config.max_context
            )));
        }
        Ok(())
    }

    /// Queues a request. Refused at once when the parameters are invalid, the
    /// prompt does not fit the context, or the queue is full.
    pub fn submit(&self, request: GenerationRequest) -> Result<RequestHandle> {
        request.params.validate(self.vocab_size)?;
        self.check_prompt("prompt", &request.prompt)?;
        if let Some(g) = &request.guidance {
            self.check_prompt("guidance.unconditional", &g.unconditional)?;
            if !(g.scale.is_finite() && g.scale >= 0.0) {
                return Err(PipelineError::Request(format!(
                    "guidance scale: {} is not a finite number >= 0",
                    g.scale
                )));
            }
        }
        if self.queued.load(Ordering::Relaxed) >= self.config.max_queue {
            return Err(PipelineError::Busy(self.config.max_queue));
        }
        let (events, receiver) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let tx = self
            .submit
            .as_ref()
            .ok_or_else(|| PipelineError::Request("the engine has stopped".into()))?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(Submission {
            request,
            events,
            cancel: cancel.clone(),
        })
        .map_err(|_| PipelineError::Request("the engine has stopped".into()))?;
        Ok(RequestHandle {
            events: receiver,
            cancel,
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the channel ends the scheduler once its work is done.
        self.submit.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

struct Scheduler {
    model: Arc<Backbone>,
    tokenizer: Arc<TextTokenizer>,
    config: EngineConfig,
    incoming: Receiver<Submission>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    generated: Arc<std::sync::atomic::AtomicU64>,
    waiting: VecDeque<Submission>,
    active: Vec<Active>,
    /// End-of-sequence ids from the tokenizer and the model config, gathered once.
    eos: Vec<u32>,
}

impl Scheduler {
    fn run(mut self) {
        loop {
            if !self.receive() {
                return;
            }
            self.admit();
            self.running.store(self.active.len(), Ordering::Relaxed);
            if self.active.is_empty() {
                continue;
            }
            if let Err(e) = self.step() {
                // A failed step fails every sequence in it; the engine goes on.
                for seq in self.active.drain(..) {
                    let _ = seq.events.send(Event::Error(e.to_string()));
                }
            }
            self.running.store(self.active.len(), Ordering::Relaxed);
        }
    }

    /// Takes new submissions: waits when idle, polls when busy. False once
    /// the engine is gone and no work is left.
    fn receive(&mut self) -> bool {
        loop {
            let idle = self.active.is_empty() && self.waiting.is_empty();
            let next = if idle {
                match self.incoming.recv_timeout(Duration::from_secs(3600)) {
                    Ok(s) => Some(s),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return false,
                }
            } else {
                match self.incoming.try_recv() {
                    Ok(s) => Some(s),
                    Err(TryRecvError::Empty) => return true,
                    Err(TryRecvError::Disconnected) => return !idle,
                }
            };
            if let Some(s) = next {
                self.waiting.push_back(s);
            }
        }
    }

    /// Moves waiting requests into the batch while lanes are free (a
    /// guided request takes two; an empty batch takes any request).
    fn admit(&mut self) {
        loop {
            let lanes: usize = self.active.iter().map(|a| a.lanes.len()).sum();
            let Some(next) = self.waiting.front() else {
                break;
            };
            let wanted = 1 + usize::from(next.request.guidance.is_some());
            if lanes > 0 && lanes + wanted > self.config.max_batch {
                break;
            }
            let Some(s) = self.waiting.pop_front() else {
                break;
            };
            self.queued.fetch_sub(1, Ordering::Relaxed);
            if cancelled(&s.cancel, s.request.cancel.as_ref()) {
                continue;
            }
            let request = s.request;
            let sampler = Sampler::new(request.params, &request.prompt);
            let mut lanes = vec![self.lane(request.prompt)];
            let mut guidance_scale = 1.0;
            if let Some(g) = request.guidance {
                lanes.push(self.lane(g.unconditional));
                guidance_scale = g.scale;
            }
            self.active.push(Active {
                lanes,
                guidance_scale,
                constraint: request.constraint,
                pending: None,
                generated: Vec::new(),
                sampler,
                decoder: request.text.then(StreamDecoder::default),
                held: String::new(),
                stopped_by_string: false,
                events: s.events,
                cancel: s.cancel,
                linked: request.cancel,
            });
        }
    }

    fn lane(&self, prompt: Vec<u32>) -> Lane {
        Lane {
            prompt,
            prefilled: 0,
            cache: self.model.new_cache(),
            logits: None,
        }
    }

    fn step(&mut self) -> Result<()> {
        self.active.retain(|seq| {
            let cancelled = cancelled(&seq.cancel, seq.linked.as_ref());
            if cancelled {
                let _ = seq.events.send(Event::Finished {
                    reason: FinishReason::Cancelled,
                    usage: seq.usage(),
                    text: String::new(),
                });
            }
            !cancelled
        });
        // Decoding sequences first (one token per lane), then prefill chunks
        // in the budget that is left. Plan entries: (sequence, lane, tokens).
        let mut budget = self.config.max_step_tokens;
        let mut plan: Vec<(usize, usize, Vec<u32>)> = Vec::new();
        for (i, seq) in self.active.iter().enumerate() {
            if let Some(t) = seq.pending {
                for j in 0..seq.lanes.len() {
                    plan.push((i, j, vec![t]));
                    budget = budget.saturating_sub(1);
                }
            }
        }
        for (i, seq) in self.active.iter().enumerate() {
            if seq.pending.is_some() {
                continue;
            }
            for (j, lane) in seq.lanes.iter().enumerate() {
                if lane.prefilled < lane.prompt.len() && budget > 0 {
                    let n = budget.min(lane.prompt.len() - lane.prefilled);
                    plan.push((
                        i,
                        j,
                        lane.prompt[lane.prefilled..lane.prefilled + n].to_vec(),
                    ));
                    budget -= n;
                }
            }
        }
        if plan.is_empty() {
            return Ok(());
        }
        plan.sort_by_key(|(i, j, _)| (*i, *j));
        let logits = {
            let mut caches: Vec<Vec<Option<&mut SequenceCache>>> = self
                .active
                .iter_mut()
                .map(|s| s.lanes.iter_mut().map(|l| Some(&mut l.cache)).collect())
                .collect();
            let mut steps: Vec<SequenceStep> = plan
                .iter()
                .map(|(i, j, tokens)| SequenceStep {
                    tokens,
                    cache: caches[*i][*j].take().expect("each lane once per step"),
                })
                .collect();
            self.model.forward(&mut steps, LogitsFor::Last)?
        };
        let mut touched = Vec::new();
        for ((i, j, tokens), logits) in plan.iter().zip(logits) {
            let seq = &mut self.active[*i];
            let lane = &mut seq.lanes[*j];
            if seq.pending.is_none() {
                lane.prefilled += tokens.len();
                if lane.prefilled < lane.prompt.len() {
                    continue;
                }
            }
            lane.logits = Some(logits.flatten_all()?.to_vec1::<f32>()?);
            touched.push(*i);
        }
        touched.dedup();
        let mut finished = Vec::new();
        for i in touched {
            let seq = &mut self.active[i];
            if seq.lanes.iter().any(|l| l.logits.is_none()) {
                continue;
            }
            seq.pending = None;
            let row = seq.guided_logits();
            if let Some(reason) = self.advance(i, row)? {
                finished.push((i, reason));
            }
        }
        // Highest index first, so earlier indices stay valid.
        finished.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, reason) in finished {
            let mut seq = self.active.swap_remove(i);
            let text = match reason {
                // A stop string already cut the text; nothing after it is sent.
                _ if seq.stopped_by_string => String::new(),
                _ => {
                    if let Some(decoder) = &mut seq.decoder {
                        let tail = decoder.finish(&self.tokenizer)?;
                        seq.held.push_str(&tail);
                    }
                    std::mem::take(&mut seq.held)
                }
            };
            let _ = seq.events.send(Event::Finished {
                reason,
                usage: seq.usage(),
                text,
            });
        }
        Ok(())
    }

    /// Samples one token for sequence `i`, emits it, and says whether it is done.
    fn advance(&mut self, i: usize, mut logits: Vec<f32>) -> Result<Option<FinishReason>> {
        let eos = &self.eos;
        let seq = &mut self.active[i];
        if let Some(constraint) = &mut seq.constraint {
            match constraint.allowed() {
                Allowed::Any => {}
                Allowed::Only(ranges) => mask_logits(&mut logits, &ranges),
                Allowed::Folded { only, into, fold } => {
                    fold_logits(&mut logits, into, &fold);
                    mask_logits(&mut logits, &only);
                }
                Allowed::Done => return Ok(Some(FinishReason::Stop)),
            }
        }
        let sampled = seq.sampler.sample(&logits);
        if let Some(constraint) = &mut seq.constraint {
            constraint.accept(sampled.token);
        }
        self.generated.fetch_add(1, Ordering::Relaxed);
        let params = seq.sampler.params();
        let wants_logprobs = params.logprobs.is_some();
        // A constraint that ends by structure never permits these.
        let is_stop_token = params.stop_token_ids.contains(&sampled.token)
            || (!params.ignore_eos && eos.contains(&sampled.token));
        if is_stop_token {
            // A stop token ends generation and is not part of the text (it
            // counts in usage, as vLLM counts it).
            seq.generated.push(sampled.token);
            return Ok(Some(FinishReason::Stop));
        }
        seq.generated.push(sampled.token);
        if let Some(decoder) = &mut seq.decoder {
            seq.held
                .push_str(&decoder.push(&self.tokenizer, sampled.token)?);
        }
        let logprob = wants_logprobs.then(|| TokenLogprob {
            token: sampled.token,
            logprob: sampled.logprob,
            top: sampled.top.clone(),
        });
        // A stop string ends the text where it begins.
        let stop_at = params
            .stop
            .iter()
            .filter_map(|s| seq.held.find(s.as_str()))
            .min();
        if let Some(at) = stop_at {
            let text: String = seq.held[..at].to_owned();
            seq.held.clear();
            seq.stopped_by_string = true;
            let _ = seq.events.send(Event::Token {
                id: sampled.token,
                text,
                logprob,
            });
            return Ok(Some(FinishReason::Stop));
        }
        // Hold back a tail that could still grow into a stop string.
        let keep = params
            .stop
            .iter()
            .map(|s| longest_suffix_prefix(&seq.held, s))
            .max()
            .unwrap_or(0);
        let emit_to = seq.held.len() - keep;
        let text: String = seq.held[..emit_to].to_owned();
        seq.held.drain(..emit_to);
        if seq
            .events
            .send(Event::Token {
                id: sampled.token,
                text,
                logprob,
            })
            .is_err()
        {
            seq.cancel.store(true, Ordering::Relaxed);
        }
        if let Some(constraint) = &mut seq.constraint {
            if constraint.finished() {
                return Ok(Some(FinishReason::Stop));
            }
        }
        let longest = seq.lanes.iter().map(|l| l.prompt.len()).max().unwrap_or(0);
        let length = seq.generated.len() >= params.max_tokens
            || longest + seq.generated.len() >= self.config.max_context;
        if length {
            return Ok(Some(FinishReason::Length));
        }
        seq.pending = Some(sampled.token);
        Ok(None)
    }
}

impl Active {
    /// The logits to sample from: the lane's own, or with guidance
    /// `uncond + scale * (cond - uncond)`. Clears the lanes for the next step.
    fn guided_logits(&mut self) -> Vec<f32> {
        let mut cond = self.lanes[0].logits.take().unwrap_or_default();
        if let Some(uncond) = self.lanes.get_mut(1).and_then(|l| l.logits.take()) {
            let s = self.guidance_scale;
            for (c, u) in cond.iter_mut().zip(uncond) {
                *c = u + s * (*c - u);
            }
        }
        cond
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            stop.is_char_boundary(n)
                && text.is_char_boundary(text.len() - n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::longest_suffix_prefix;

    #[test]
    fn stop_string_prefixes_are_held_back() {
        assert_eq!(longest_suffix_prefix("hello wor", "world"), 3);
        assert_eq!(longest_suffix_prefix("hello", "world"), 0);
        assert_eq!(
            longest_suffix_prefix("ab", "b"),
            0,
            "a whole match is not a proper prefix"
        );
    }
}
