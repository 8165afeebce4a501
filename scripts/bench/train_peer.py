"""PyTorch peer for the training-step benchmark: prints one JSON line.

The same step as `cargo bench -p training --bench step`: the starter
model's shape (transformers' Qwen3MoeForCausalLM), a batch shaped like a
starter recipe's mixed batch (each task's share of 3,072 tokens in
sequences of that task's length), the loss taken on target positions only
(the head runs on those rows), forward and backward, no optimizer step.

usage: train_peer.py THREADS STEPS
"""
import json
import statistics
import sys
import time

import torch
import transformers

# (task, mix weight, prompt length, target length): training/benches/step.rs.
SHAPES = [
    ("text-to-image", 4.0, 22, 73),
    ("caption", 2.0, 78, 22),
    ("image-edit", 5.0, 100, 73),
    ("text-to-video", 1.0, 16, 438),
    ("text-to-mesh", 2.0, 8, 150),
    ("text-to-speech", 4.0, 90, 260),
    ("transcribe", 1.0, 270, 30),
]
VOCAB = 2007
WARM_UP = 5


def main():
    threads, steps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    config = transformers.Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, moe_intermediate_size=256, intermediate_size=512,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, max_position_embeddings=1024,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False)
    model = transformers.Qwen3MoeForCausalLM(config).float().train()
    total = sum(w for _, w, _, _ in SHAPES)
    g = torch.Generator().manual_seed(12345)
    parts = []
    for _, weight, prompt, target in SHAPES:
        count = max(1, int(3072 * weight / total / (prompt + target)))
        ids = torch.randint(0, VOCAB, (count, prompt + target), generator=g)
        # Position i predicts token i + 1: the target positions.
        rows = torch.arange(prompt - 1, prompt + target - 1)
        parts.append((weight / total, ids, rows))
    targets = sum(ids.shape[0] * rows.numel() for _, ids, rows in parts)

    def step():
        loss = 0.0
        for weight, ids, rows in parts:
            hidden = model.model(input_ids=ids).last_hidden_state[:, rows]
            logits = model.lm_head(hidden)
            labels = ids[:, rows + 1]
            loss = loss + weight * torch.nn.functional.cross_entropy(
                logits.reshape(-1, VOCAB), labels.reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    times = []
    for i in range(steps + WARM_UP):
        t = time.perf_counter()
        step()
        if i >= WARM_UP:
            times.append(time.perf_counter() - t)
    median = statistics.median(times)
    print(json.dumps({"bench": "training-step", "impl": "pytorch", "threads": threads,
                      "step_ms": round(median * 1e3, 1),
                      "target_tokens_per_s": round(targets / median)}))


if __name__ == "__main__":
    main()
