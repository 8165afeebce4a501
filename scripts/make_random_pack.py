"""Builds the random-weight test pack in assets/packs/random with the reference tools.

    ~/venvs/ref/bin/python scripts/make_random_pack.py

Needs torch, transformers, tokenizers, safetensors and snac (see README).
Seeded: running it again writes the same files. The weights are random
(the default pack, assets/packs/default, is the trained starter pack); the
layout is what matters, and the tests use it to exercise every task: a
Qwen3-MoE backbone whose vocabulary holds text, image codes (Janus VQ), SNAC audio
codes in the Orpheus frame layout, and mesh coordinate tokens, with the
codecs beside it and a pack.yaml tying them together (docs/packs.md).
"""

import hashlib
import json
import math
import pathlib
import shutil
import struct
import wave

import torch
import yaml
import transformers
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "packs" / "random"
TEXT_VOCAB = 512
IMAGE_CODES = 256
AUDIO_CODES = 256
AUDIO_SLOTS = 7  # SNAC frame positions with strides [4, 2, 1], Orpheus order
MESH_BINS = 64

# Plain sentences in the register of the tasks (prompts, captions, edits,
# mesh text), so the tokenizer learns useful merges. Fixed, so the pack is
# reproducible.
CORPUS_LINES = [
    "a red circle on a blue background",
    "a green square in the top left corner",
    "a yellow triangle on a white background",
    "make the square green", "remove the circle", "add a blue sky",
    "a cube", "a pyramid", "a flat plane", "a tall box", "a low table",
    "Hello, this is anyforge speaking.", "Good morning. How are you today?",
    "Describe this image.", "Transcribe this audio.", "What happens in this video?",
    "The quick brown fox jumps over the lazy dog.",
    "Mixture of experts models route each token to a few experts.",
    "Speech, images, video and meshes from one model.",
]
MESH_TEXT = "".join(f"v {x} {y} {z}\n" for x in range(0, 64, 7) for y in range(0, 64, 9) for z in (0, 31, 63)) + "".join(
    f"f {a} {a + 1} {a + 2}\n" for a in range(1, 60))
SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|image_start|>", "<|image_end|>", "<|audio_start|>", "<|audio_end|>",
    "<|video_start|>", "<|video_end|>", "<|mesh_start|>", "<|mesh_end|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def user_turn(body):
    return "<|im_start|>user\n" + body + "<|im_end|>\n<|im_start|>assistant\n"


TASKS = {
    "chat": {},
    "caption": {"template": user_turn("{{ media }}Describe this.")},
    "transcribe": {"template": user_turn("{{ audio }}Transcribe this audio.")},
    "text-to-image": {"template": user_turn("Draw: {{ prompt }}")},
    "image-edit": {"template": user_turn("{{ image }}Edit: {{ prompt }}")},
    "text-to-speech": {"template": user_turn("{{ voice_text }} {{ voice_audio }}Say at speed {{ speed }}: {{ prompt }}")},
    "text-to-video": {"template": user_turn("Film {{ seconds }} seconds: {{ prompt }}")},
    "image-to-video": {"template": user_turn("{{ image }}Animate {{ seconds }} seconds: {{ prompt }}")},
    "text-to-mesh": {"template": user_turn("Model: {{ prompt }}")},
}


def train_tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TEXT_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = ["\n".join(CORPUS_LINES * 4), MESH_TEXT]
    tok.train_from_iterator(corpus, trainer)
    assert tok.get_vocab_size() <= TEXT_VOCAB
    # Markers, then one token per code, all special: they never come out of
    # encoding plain text, and they sit at fixed ids the pack names.
    tok.add_special_tokens([AddedToken(s, special=True) for s in SPECIALS])
    codes = [f"<|img_{i}|>" for i in range(IMAGE_CODES)]
    codes += [f"<|snac_{s}_{i}|>" for s in range(AUDIO_SLOTS) for i in range(AUDIO_CODES)]
    codes += [f"<|mesh_{i}|>" for i in range(MESH_BINS)]
    tok.add_special_tokens([AddedToken(c, special=True) for c in codes])
    return tok


def backbone(folder, vocab_size, eos_ids):
    torch.manual_seed(0)
    config = transformers.Qwen3MoeConfig(
        vocab_size=vocab_size, hidden_size=64, head_dim=16, intermediate_size=128,
        moe_intermediate_size=64, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
        max_position_embeddings=4096, bos_token_id=None, eos_token_id=eos_ids,
        tie_word_embeddings=False,
    )
    model = transformers.Qwen3MoeForCausalLM(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    json.dump({"eos_token_id": eos_ids, "do_sample": True, "temperature": 1.0, "top_p": 1.0},
              open(folder / "generation_config.json", "w"), indent=1)


def image_codec(folder):
    torch.manual_seed(1)
    config = transformers.JanusVQVAEConfig(
        embed_dim=8, num_embeddings=IMAGE_CODES, latent_channels=32, base_channels=32,
        channel_multiplier=[1, 1, 2, 2, 2], num_res_blocks=1, num_patches=8,
    )
    model = transformers.JanusVQVAE(config).eval()
    model.half().save_pretrained(folder, safe_serialization=True)


def audio_codec(folder):
    from snac import SNAC

    torch.manual_seed(2)
    config = {"sampling_rate": 24000, "encoder_dim": 8, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 64,
              "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": AUDIO_CODES,
              "codebook_dim": 4, "vq_strides": [4, 2, 1], "noise": True, "depthwise": True}
    model = SNAC(**config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def voice(path, rate=24000, seconds=0.5):
    """A short voiced-vowel-like signal: a 140 Hz harmonic series under a
    slow amplitude envelope (stands in for a recorded speaker prompt)."""
    n = int(rate * seconds)
    frames = bytearray()
    for i in range(n):
        t = i / rate
        env = math.sin(math.pi * i / n)
        s = sum(math.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 8))
        frames += struct.pack("<h", int(max(-1.0, min(1.0, 0.25 * env * s)) * 32767))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def block_strings(dumper, value):
    """Multi-line strings (the templates) as YAML literal blocks."""
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "backbone").mkdir(parents=True)
    tok = train_tokenizer()
    tok.save(str(OUT / "backbone" / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    image_first = tok.token_to_id("<|img_0|>")
    audio_first = tok.token_to_id("<|snac_0_0|>")
    mesh_first = tok.token_to_id("<|mesh_0|>")
    json.dump({"chat_template": CHAT_TEMPLATE, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
              open(OUT / "backbone" / "tokenizer_config.json", "w"), indent=1)
    backbone(OUT / "backbone", tok.get_vocab_size(), [ids["<|im_end|>"], ids["<|endoftext|>"]])
    image_codec(OUT / "image")
    audio_codec(OUT / "audio")
    voice(OUT / "voices" / "default.wav")

    weights = sorted(p for p in OUT.rglob("*.safetensors"))
    manifest = {
        "name": "anyforge-random",
        "description": "Small random-weight pack that exercises every task; not trained.",
        "licence": "Apache-2.0",
        "backbone": "backbone",
        "modalities": {
            "image": {"codec": "image", "layout": "vocab", "first_token": image_first,
                      "begin": "<|image_start|>", "end": "<|image_end|>"},
            "audio": {"codec": "audio", "layout": "vocab", "first_token": audio_first, "slots": "position",
                      "begin": "<|audio_start|>", "end": "<|audio_end|>"},
            "video": {"begin": "<|video_start|>", "end": "<|video_end|>"},
            "mesh": {"layout": "vocab", "bins": MESH_BINS, "first_token": mesh_first,
                     "begin": "<|mesh_start|>", "end": "<|mesh_end|>"},
        },
        "defaults": {"image_grid": [8, 8], "video_fps": 4, "video_seconds": 2.0, "max_mesh_faces": 48,
                     "max_speech_seconds": 4.0, "guidance_scale": 3.0},
        "voices": {"default": {"audio": "voices/default.wav", "text": "Hello, this is anyforge speaking."}},
        "tasks": TASKS,
        "sha256": {str(p.relative_to(OUT)): sha256(p) for p in weights},
    }
    yaml.SafeDumper.add_representer(str, block_strings)
    (OUT / "pack.yaml").write_text("# anyforge model pack (docs/packs.md); made by scripts/make_random_pack.py\n"
                                   + yaml.safe_dump(manifest, sort_keys=False, width=120))
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e6:.1f} MB); vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
