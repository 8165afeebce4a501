"""llama.cpp peer (through llama-cpp-python) for the backbone benchmark.

usage: llama_peer.py MODEL.gguf THREADS PROMPT_LEN DECODE_TOKENS
(llama-cpp-python's high-level API runs one sequence, so no batched figure.)
"""
import json
import statistics
import sys
import time

import numpy as np
from llama_cpp import Llama


# Prefills timed (median): as the anyforge bench, whose three were ±30% at
# two threads on a shared machine.
PREFILL_REPS = 10


def prompt(n, vocab, salt):
    return [(i * 7919 + salt * 104729 + 13) % vocab for i in range(n)]


def main():
    path, threads, prompt_len, decode = sys.argv[1], *map(int, sys.argv[2:5])
    t = time.perf_counter()
    llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512, verbose=False)
    load_s = time.perf_counter() - t
    vocab = min(llm.n_vocab(), 8192)
    llm.eval(prompt(16, vocab, 99))
    prefill = []
    for rep in range(PREFILL_REPS):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt(prompt_len, vocab, rep))
        prefill.append(prompt_len / (time.perf_counter() - t))
    llm.reset()
    llm.eval(prompt(32, vocab, 7))
    t = time.perf_counter()
    for _ in range(decode):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([nxt])
    decode_tps = decode / (time.perf_counter() - t)
    print(json.dumps({"impl": "llama.cpp", "load_s": load_s, "prefill_tps": statistics.median(prefill),
                      "decode_tps": decode_tps, "batched_decode_tps": None}))


if __name__ == "__main__":
    main()
