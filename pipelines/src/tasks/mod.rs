//! Generation tasks over a model pack: each is a plan (a prompt with its
//! media blocks, a constraint on what may be generated, and how the
//! generated tokens decode) run through the shared engine, so concurrent
//! tasks and the `n` outputs of one task batch together.

mod constrain;
mod obj_text;
mod plans;
mod prompt;
mod speech_stream;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use modalities::{Audio, Image, Media, Video};
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};
use crate::generate::{
    CancelToken, Engine, EngineConfig, Event, FinishReason, GenerationRequest, Guidance,
    RequestHandle, SamplingParams, TokenConstraint,
};
use crate::pack::Pack;
pub use crate::pack::TaskName;
pub use speech_stream::{SpeechStream, StreamWindow};

/// Most outputs one request may ask for.
pub const MAX_N: usize = 16;
/// Longest side of a requested output size in pixels.
pub const MAX_PIXELS_SIDE: u32 = 4096;

/// What a task request may set; one serde struct shared by the CLI, the
/// workflow YAML and the HTTP bodies. Unset fields take the pack's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskOptions {
    /// The text prompt or instruction.
    pub prompt: String,
    /// Output `i` uses `seed + i`; a random seed when unset (reported back).
    pub seed: Option<u64>,
    /// How many outputs.
    pub n: usize,
    /// Image size in codes: rows, columns.
    pub size: Option<[usize; 2]>,
    /// Output image size in pixels, width and height: the decoded image
    /// (each video frame) is scaled to it without smoothing.
    pub pixels: Option<[u32; 2]>,
    /// Classifier-free guidance scale (text-to-image, image-edit); 1 turns it off.
    pub guidance_scale: Option<f32>,
    /// A voice of the pack (text-to-speech).
    pub voice: Option<String>,
    /// Speech rate, 1 is the voice's own (text-to-speech).
    pub speed: f32,
    /// Video length, or the longest speech, in seconds.
    pub seconds: Option<f64>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    /// Longest text answer (chat, caption, transcribe).
    pub max_tokens: Option<usize>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            prompt: String::new(),
            seed: None,
            n: 1,
            size: None,
            pixels: None,
            guidance_scale: None,
            voice: None,
            speed: 1.0,
            seconds: None,
            temperature: None,
            top_k: None,
            top_p: None,
            max_tokens: None,
        }
    }
}

impl TaskOptions {
    /// Checks each field's range, naming the field that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(PipelineError::Request(format!("{field}: {why}")));
        if !(1..=MAX_N).contains(&self.n) {
            return bad("n", format!("{} is not in 1..={MAX_N}", self.n));
        }
        if let Some([h, w]) = self.size {
            if h == 0 || w == 0 || h * w > 64 * 64 {
                return bad("size", format!("{h} x {w} codes is not in 1..=4096 codes"));
            }
        }
        if let Some([w, h]) = self.pixels {
            if !(1..=MAX_PIXELS_SIDE).contains(&w) || !(1..=MAX_PIXELS_SIDE).contains(&h) {
                return bad(
                    "pixels",
                    format!("{w} x {h} is not in 1..={MAX_PIXELS_SIDE} a side"),
                );
            }
        }
        if let Some(g) = self
            .guidance_scale
            .filter(|g| !(g.is_finite() && (0.0..=50.0).contains(g)))
        {
            return bad("guidance_scale", format!("{g} is not in [0, 50]"));
        }
        if !(0.5..=2.0).contains(&self.speed) {
            return bad("speed", format!("{} is not in [0.5, 2]", self.speed));
        }
        if let Some(s) = self
            .seconds
            .filter(|s| !(s.is_finite() && *s > 0.0 && *s <= 600.0))
        {
            return bad("seconds", format!("{s} is not in (0, 600]"));
        }
        Ok(())
    }
}

/// One chat message: text and media parts, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Media(Media),
}

impl Message {
    pub fn text(role: &str, text: &str) -> Message {
        Message {
            role: role.into(),
            parts: vec![Part::Text(text.into())],
        }
    }
}

/// The media a task reads.
#[derive(Debug, Clone, Default)]
pub struct TaskInputs {
    pub image: Option<Image>,
    /// White where an edit regenerates, black where it keeps the image.
    pub mask: Option<Image>,
    pub audio: Option<Audio>,
    pub video: Option<Video>,
    /// `chat`: the conversation (the prompt, when set, is a last user turn).
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutput {
    Text(String),
    Media(Media),
}

/// What a task produced, with what it took.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub task: TaskName,
    pub seed: u64,
    pub outputs: Vec<TaskOutput>,
    /// The generated tokens of each output, markers included.
    pub tokens: Vec<Vec<u32>>,
    pub prompt_tokens: usize,
    pub seconds: f64,
}

impl TaskResult {
    pub fn generated_tokens(&self) -> usize {
        self.tokens.iter().map(Vec::len).sum()
    }
}

type MakeConstraint = Box<dyn Fn() -> Box<dyn TokenConstraint> + Send + Sync>;
type Finish = Box<dyn Fn(&[u32], &str) -> Result<TaskOutput> + Send + Sync>;

/// A task ready to run: the prompt, sampling, the structure of the output
/// and how its tokens become the output.
pub(crate) struct Plan {
    prompt: Vec<u32>,
    guidance: Option<Guidance>,
    params: SamplingParams,
    constraint: Option<MakeConstraint>,
    /// The output is a structure that must be complete (media), not text
    /// that may stop at its length limit.
    structured: bool,
    finish: Finish,
}

/// Runs tasks on a pack, through one engine shared by every request.
pub struct Runner {
    pack: Arc<Pack>,
    engine: Engine,
    obj_tokens: OnceLock<obj_text::ObjTokens>,
}

impl Runner {
    pub fn new(pack: Arc<Pack>, config: EngineConfig) -> Runner {
        let engine = pack.model.engine(config);
        Runner {
            pack,
            engine,
            obj_tokens: OnceLock::new(),
        }
    }

    pub fn pack(&self) -> &Pack {
        &self.pack
    }

    /// Requests waiting for the engine.
    pub fn queue_depth(&self) -> usize {
        self.engine.queued()
    }

    /// Sequences being generated.
    pub fn running(&self) -> usize {
        self.engine.running()
    }

    /// Tokens generated since the runner started.
    pub fn generated_tokens(&self) -> u64 {
        self.engine.generated_tokens()
    }

    /// Runs `task` to completion.
    pub fn run(
        &self,
        task: TaskName,
        options: &TaskOptions,
        inputs: &TaskInputs,
    ) -> Result<TaskResult> {
        self.run_until(task, options, inputs, &CancelToken::new())
    }

    /// Runs `task` until it completes or `cancel` is set; a cancelled task
    /// leaves the engine at its next step and returns
    /// [`PipelineError::Cancelled`].
    pub fn run_until(
        &self,
        task: TaskName,
        options: &TaskOptions,
        inputs: &TaskInputs,
        cancel: &CancelToken,
    ) -> Result<TaskResult> {
        let started = Instant::now();
        let (plan, seed) = self.plan(task, options, inputs)?;
        let handles = (0..options.n as u64)
            .map(|i| self.submit_plan(&plan, seed.wrapping_add(i), cancel))
            .collect::<Result<Vec<RequestHandle>>>()?;
        let mut outputs = Vec::new();
        let mut tokens = Vec::new();
        for handle in handles {
            let (ids, text, reason) = collect(handle)?;
            if reason == FinishReason::Cancelled {
                return Err(PipelineError::Cancelled);
            }
            if plan.structured && reason != FinishReason::Stop {
                return Err(PipelineError::Request(format!(
                    "{task}: the output did not complete within {} tokens or the context",
                    plan.params.max_tokens
                )));
            }
            outputs.push((plan.finish)(&ids, &text)?);
            tokens.push(ids);
        }
        Ok(TaskResult {
            task,
            seed,
            outputs,
            tokens,
            prompt_tokens: plan.prompt.len(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Starts text-to-speech and returns its audio as it is decoded, chunk
    /// by chunk, at the codec's rate and the voice's own speed (time
    /// stretching needs the whole utterance).
    pub fn speech_stream(
        &self,
        options: &TaskOptions,
        window: StreamWindow,
        cancel: &CancelToken,
    ) -> Result<SpeechStream> {
        if options.speed != 1.0 {
            return Err(PipelineError::Request(format!(
                "speed: streamed speech is spoken at speed 1, not {}; ask for the whole audio to change the speed",
                options.speed
            )));
        }
        if options.n != 1 {
            return Err(PipelineError::Request(format!(
                "n: speech streams one utterance, not {}",
                options.n
            )));
        }
        let task = TaskName::TextToSpeech;
        let (plan, seed) = self.plan(task, options, &TaskInputs::default())?;
        let layout = self
            .pack
            .audio
            .clone()
            .ok_or_else(|| PipelineError::Request("the pack has no audio modality".into()))?;
        let handle = self.submit_plan(&plan, seed, cancel)?;
        Ok(SpeechStream::new(handle, layout, window, seed))
    }

    /// Refuses a task the pack's manifest does not list (a trained world
    /// pack has no chat, though its backbone would babble one).
    fn serves(&self, task: TaskName) -> Result<()> {
        if self.pack.supports(task) {
            return Ok(());
        }
        let tasks: Vec<&str> = self
            .pack
            .manifest
            .tasks
            .keys()
            .map(|t| t.as_str())
            .collect();
        Err(PipelineError::Request(format!(
            "the pack {} does not serve {task} (it serves: {})",
            self.pack.manifest.name,
            tasks.join(", ")
        )))
    }

    /// A checked task's plan, and the seed its first output uses.
    fn plan(
        &self,
        task: TaskName,
        options: &TaskOptions,
        inputs: &TaskInputs,
    ) -> Result<(Plan, u64)> {
        options.validate()?;
        self.serves(task)?;
        let seed = options.seed.unwrap_or_else(rand_seed);
        let plan = plans::build(self, task, options, inputs)?;
        let context = self.engine.config().max_context;
        let longest = plan
            .prompt
            .len()
            .max(plan.guidance.as_ref().map_or(0, |g| g.unconditional.len()));
        if plan.structured && longest + plan.params.max_tokens > context {
            return Err(PipelineError::Request(format!(
                "{task}: a {}-token prompt and up to {} output tokens do not fit the context of {context}; ask for a smaller size or fewer seconds",
                longest, plan.params.max_tokens
            )));
        }
        Ok((plan, seed))
    }

    /// Queues one output of a plan.
    fn submit_plan(&self, plan: &Plan, seed: u64, cancel: &CancelToken) -> Result<RequestHandle> {
        let mut params = plan.params.clone();
        params.seed = Some(seed);
        let mut request = GenerationRequest::new(plan.prompt.clone(), params);
        request.guidance = plan.guidance.clone();
        request.constraint = plan.constraint.as_ref().map(|make| make());
        request.text = !plan.structured;
        request.cancel = Some(cancel.clone());
        self.engine.submit(request)
    }

    /// Starts a chat reply and returns its event stream (text as it comes).
    pub fn chat_stream(&self, options: &TaskOptions, inputs: &TaskInputs) -> Result<RequestHandle> {
        let (prompt, mut params) = self.chat_prompt(options, inputs)?;
        params.seed = options.seed;
        self.submit_text(prompt, params)
    }

    /// A chat's prompt (media blocks spliced in) and the pack's sampling
    /// for it, for callers that set more of the sampling (the HTTP API).
    pub fn chat_prompt(
        &self,
        options: &TaskOptions,
        inputs: &TaskInputs,
    ) -> Result<(Vec<u32>, SamplingParams)> {
        options.validate()?;
        self.serves(TaskName::Chat)?;
        let plan = plans::build(self, TaskName::Chat, options, inputs)?;
        Ok((plan.prompt, plan.params))
    }

    /// The prompt tokens a request of `task` reads (the pack's template,
    /// media blocks spliced in): what a recipe must write to teach the task.
    pub fn prompt(
        &self,
        task: TaskName,
        options: &TaskOptions,
        inputs: &TaskInputs,
    ) -> Result<Vec<u32>> {
        options.validate()?;
        self.serves(task)?;
        Ok(plans::build(self, task, options, inputs)?.prompt)
    }

    /// Generates text (never media codes) after `prompt`.
    pub fn submit_text(&self, prompt: Vec<u32>, params: SamplingParams) -> Result<RequestHandle> {
        let text = self.pack.text_ranges();
        let mut request = GenerationRequest::new(prompt, params);
        request.constraint = Some(Box::new(constrain::TextOnly(text)));
        self.engine.submit(request)
    }

    /// The tokens that may appear in OBJ text, found once per runner.
    fn obj_tokens(&self) -> obj_text::ObjTokens {
        self.obj_tokens
            .get_or_init(|| {
                let tokenizer = &self.pack.model.tokenizer;
                let vocab = self.pack.model.backbone.config().vocab_size as u32;
                obj_text::obj_tokens((0..vocab).map(|id| (id, tokenizer.token_text(id))))
            })
            .clone()
    }
}

/// The tokens, text and finish reason of a request.
fn collect(handle: RequestHandle) -> Result<(Vec<u32>, String, FinishReason)> {
    let (mut ids, mut text) = (Vec::new(), String::new());
    for event in handle {
        match event {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Finished {
                reason, text: tail, ..
            } => {
                text.push_str(&tail);
                return Ok((ids, text, reason));
            }
            Event::Error(e) => return Err(PipelineError::Request(e)),
        }
    }
    Err(PipelineError::Request(
        "the engine stopped mid-request".into(),
    ))
}

/// Seeds stay within JSON's exact integers (53 bits).
fn rand_seed() -> u64 {
    crate::generate::sampling::entropy_seed() >> 11
}
