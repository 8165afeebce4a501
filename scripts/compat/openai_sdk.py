"""The official OpenAI Python SDK against a running `anyforge serve`.

    python scripts/compat/openai_sdk.py http://127.0.0.1:8080/v1

Exits non-zero on the first mismatch. Run by server/tests/openai_sdk.rs
when ANYFORGE_OPENAI_PYTHON names a Python with the `openai` package
(.ci/run installs one).
"""
import base64
import io
import json
import struct
import sys
import wave

import openai
from openai import OpenAI

base = sys.argv[1]
client = OpenAI(base_url=base, api_key="unused")
model = client.models.list().data[0].id

reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4, seed=1)
assert reply.choices[0].message.role == "assistant", reply
assert reply.usage.completion_tokens <= 4, reply.usage
again = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4, seed=1)
assert again.choices[0].message.content == reply.choices[0].message.content, "same seed, same reply"

chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True))
assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length"), chunks[-1]

png = io.BytesIO()
image = client.images.generate(model=model, prompt="a red circle", size="128x128", n=2, response_format="b64_json", extra_body={"seed": 3})
assert len(image.data) == 2
first = base64.b64decode(image.data[0].b64_json)
assert first[:8] == b"\x89PNG\r\n\x1a\n", first[:8]

edit = client.images.edit(model=model, image=("in.png", first, "image/png"), prompt="make it green")
assert base64.b64decode(edit.data[0].b64_json)[:4] == b"\x89PNG"

magic = {"mp3": (b"ID3", b"\xff\xfb", b"\xff\xf3"), "wav": (b"RIFF",), "flac": (b"fLaC",), "opus": (b"OggS",), "aac": (b"\xff\xf1", b"\xff\xf9", b"ADIF")}
for fmt, heads in magic.items():
    audio = client.audio.speech.create(model=model, input="Hello there.", voice="default", response_format=fmt)
    assert audio.content.startswith(heads), (fmt, audio.content[:8])
pcm = client.audio.speech.create(model=model, input="Hello.", voice="default", response_format="pcm").content
assert len(pcm) % 2 == 0 and len(pcm) > 0

# Streamed speech: SSE deltas of pcm as it is generated, then done.
events = []
with client.audio.speech.with_streaming_response.create(
    model=model, input="Hello there, streamed.", voice="default", response_format="pcm", stream_format="sse"
) as response:
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: "):]))
assert events[-1]["type"] == "speech.audio.done", events[-1]
streamed = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
assert events[:-1] and all(e["type"] == "speech.audio.delta" for e in events[:-1])
assert len(streamed) == events[-1]["usage"]["output_tokens"] and len(streamed) % 2 == 0

wav = io.BytesIO()
with wave.open(wav, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(16000)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * ((i // 40) % 2 * 2 - 1))) for i in range(8000)))
text = client.audio.transcriptions.create(model=model, file=("a.wav", wav.getvalue(), "audio/wav"))
assert isinstance(text.text, str)

import time

video = client.videos.create(model=model, prompt="a ball rolling", seconds="1", size="64x64")
assert video.status in ("queued", "in_progress"), video
for _ in range(600):
    video = client.videos.retrieve(video.id)
    if video.status not in ("queued", "in_progress"):
        break
    time.sleep(0.2)
assert video.status == "completed", video
mp4 = client.videos.download_content(video.id).content
assert mp4[4:8] == b"ftyp", mp4[:12]
assert any(v.id == video.id for v in client.videos.list())
started = client.videos.create(model=model, prompt="from a picture", seconds="1", size="64x64",
                               input_reference=("ref.png", first, "image/png"))
assert started.id != video.id
assert client.videos.delete(video.id).deleted

try:
    client.audio.speech.create(model=model, input="Hi", voice="nobody")
    raise AssertionError("an unknown voice was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "voice", e.body

print("openai", openai.__version__, "compatible")
