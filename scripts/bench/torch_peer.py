"""PyTorch transformers peer for the backbone benchmark: prints one JSON line.

usage: torch_peer.py DIR THREADS PROMPT_LEN DECODE_TOKENS BATCH
"""
import json
import statistics
import sys
import time

import torch
import transformers


# Prefills timed (median): as the anyforge bench, whose three were ±30% at
# two threads on a shared machine.
PREFILL_REPS = 10


def prompt(n, vocab, salt):
    return [(i * 7919 + salt * 104729 + 13) % vocab for i in range(n)]


def main():
    folder, threads, prompt_len, decode, batch = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    t = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t
    vocab = min(model.config.vocab_size, 8192)
    with torch.inference_mode():
        model(torch.tensor([prompt(16, vocab, 99)]))
        prefill = []
        for rep in range(PREFILL_REPS):
            ids = torch.tensor([prompt(prompt_len, vocab, rep)])
            t = time.perf_counter()
            model(ids)
            prefill.append(prompt_len / (time.perf_counter() - t))

        out = model(torch.tensor([prompt(32, vocab, 7)]), use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t = time.perf_counter()
        for _ in range(decode):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        decode_tps = decode / (time.perf_counter() - t)

        ids = torch.tensor([prompt(32, vocab, 100 + b) for b in range(batch)])
        out = model(ids, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t = time.perf_counter()
        for _ in range(decode):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        batched = decode * batch / (time.perf_counter() - t)
    print(json.dumps({"impl": "pytorch", "load_s": load_s, "prefill_tps": statistics.median(prefill),
                      "decode_tps": decode_tps, "batched_decode_tps": batched}))


if __name__ == "__main__":
    main()
