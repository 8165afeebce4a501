"""The backbone benchmark: anyforge against PyTorch `transformers` and
llama.cpp on the same random-weight checkpoints, the same thread counts, in
one run, interleaved; each row next to its physical bound. Writes
docs/benchmarks.md.

One command (a virtual environment outside the repo with torch, transformers,
sentencepiece and llama-cpp-python built from its PyPI sdist; see
docs/benchmarks.md):
    ~/venvs/ref/bin/python scripts/bench/backbone.py --llama-cpp-src DIR
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
CACHE = pathlib.Path(os.environ.get("ANYFORGE_BENCH_CACHE", pathlib.Path.home() / ".cache/anyforge-bench"))

SHAPES = {
    "qwen3-moe (8L, d512, 32 experts top-4)": dict(
        model_type="qwen3_moe", num_hidden_layers=8, hidden_size=512, num_attention_heads=8, num_key_value_heads=2,
        head_dim=64, num_experts=32, num_experts_per_tok=4, moe_intermediate_size=256, intermediate_size=1024,
        vocab_size=8192, norm_topk_prob=True, tie_word_embeddings=False, max_position_embeddings=4096),
    "qwen2.5-0.5b shape (dense)": dict(
        model_type="qwen2", num_hidden_layers=24, hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768),
}


def slug(name):
    return name.split(" ")[0]


def make_checkpoint(name, cfg):
    folder = CACHE / slug(name)
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    config = transformers.AutoConfig.for_model(**cfg)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    # A stand-in tokenizer (the benchmark feeds token ids) so converters load.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [p.read_text(errors="ignore") for p in list((ROOT).rglob("*.rs"))[:200]]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=4096, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


def active_params(cfg):
    """Parameters read per token: everything but the embedding table (one row
    is looked up), and only the routed experts of MoE layers."""
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", h // heads)
    attn = h * heads * hd * 2 + h * kv * hd * 2 + 2 * h
    if cfg["model_type"] == "qwen3_moe":
        ffn = h * cfg["num_experts"] + cfg["num_experts_per_tok"] * 3 * h * cfg["moe_intermediate_size"]
    else:
        ffn = 3 * h * cfg["intermediate_size"]
    return layers * (attn + ffn) + cfg["vocab_size"] * h


def batched_bound(cfg, batch):
    """How much faster `batch` sequences can decode together than one, when
    decoding is bound by reading weights: shared weights are read once per
    step, but each MoE layer reads every expert any of the tokens routed to
    (with uniform routing, E * (1 - (1 - k/E)^batch) distinct experts)."""
    if cfg["model_type"] != "qwen3_moe":
        return float(batch)
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    e, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    expert = 3 * h * cfg["moe_intermediate_size"]
    shared = active_params(cfg) - layers * k * expert
    distinct = e * (1 - (1 - k / e) ** batch)
    return batch * active_params(cfg) / (shared + layers * distinct * expert)


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def anyforge(folder, threads, args):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    return run(["cargo", "bench", "-q", "-p", "pipelines", "--bench", "backbone", "--", "model", str(folder), *map(str, args)], env)


def pytorch(folder, threads, args):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return run([sys.executable, str(HERE / "torch_peer.py"), str(folder), str(threads), *map(str, args)], env)


def llama(gguf, threads, args):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return run([sys.executable, str(HERE / "llama_peer.py"), str(gguf), str(threads), *map(str, args[:2])], env)


def cpu():
    """The CPU's model name and the widest SIMD anyforge's kernels use on it."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), platform.machine())
    flags = next((l for l in info.splitlines() if l.startswith("flags")), "")
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "portable"
    return f"{name} ({simd})"


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--llama-cpp-src", help="vendor/llama.cpp of the llama-cpp-python sdist (for GGUF conversion)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    workload = [args.prompt_len, args.decode, args.batch]
    subprocess.run(["cargo", "bench", "-q", "-p", "pipelines", "--bench", "backbone", "--no-run"], cwd=ROOT, check=True)

    machine = {t: run(["cargo", "bench", "-q", "-p", "pipelines", "--bench", "backbone", "--", "machine"],
                      dict(os.environ, RAYON_NUM_THREADS=str(t))) for t in threads}
    rows = []
    for name, cfg in SHAPES.items():
        folder = make_checkpoint(name, cfg)
        gguf = None
        if args.llama_cpp_src:
            gguf = CACHE / f"{slug(name)}.gguf"
            if not gguf.exists():
                done = subprocess.run([sys.executable, str(HERE / "to_gguf.py"), args.llama_cpp_src, str(folder), str(gguf)],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"GGUF conversion failed:\n{done.stderr[-3000:]}")
        impls = {"anyforge": lambda t: anyforge(folder, t, workload), "pytorch": lambda t: pytorch(folder, t, workload)}
        if gguf:
            impls["llama.cpp"] = lambda t: llama(gguf, t, workload)
        active = active_params(cfg)
        for t in threads:
            results = {k: [] for k in impls}
            for _ in range(args.reps):  # interleaved: A B C A B C
                for impl, fn in impls.items():
                    results[impl].append(fn(t))
                    print(name, t, impl, results[impl][-1], file=sys.stderr)
            med = {impl: {m: (statistics.median(r[m] for r in rs) if rs[0][m] is not None else None)
                          for m in ("prefill_tps", "decode_tps", "batched_decode_tps")} for impl, rs in results.items()}
            # Memory bandwidth is the machine's (all cores); one core alone
            # cannot saturate it. Compute scales with the threads used.
            bw = max(m["bandwidth_gbs"] for m in machine.values()) * 1e9
            flops = machine[t]["gemm_gflops"] * 1e9
            rows.append({"model": name, "threads": t, "active_params": active, "results": med,
                         "batched_bound": batched_bound(cfg, args.batch),
                         "decode_bound": bw / (4 * active), "prefill_bound": flops / (2 * active)})
    write_report(rows, machine, args)


def write_report(rows, machine, args):
    lines = [
        "# Backbone benchmarks",
        "",
        "Made by `scripts/bench/backbone.py` (see the end for how to run it). Random weights, f32, the same",
        "checkpoint for every implementation, the same thread count, interleaved runs (median of "
        f"{args.reps}). Workload: prefill {args.prompt_len} tokens (median of 10 in each run); decode {args.decode} tokens after a 32-token",
        f"prompt; batched decode: {args.batch} sequences decoding together (aggregate tokens/s).",
        "",
        "On this shared 2-core machine figures vary by about ±20% from run to run (the GEMM ceiling too);",
        "compare the ratios within one run, which interleaving keeps fair.",
        "",
        f"Machine: {cpu()}, {os.cpu_count()} cores; measured on {time.strftime('%Y-%m-%d')}:",
        "",
        "| threads | read bandwidth (GB/s) | f32 GEMM 1024³ (GFLOP/s) |",
        "| --- | --- | --- |",
    ]
    for t, m in machine.items():
        lines.append(f"| {t} | {m['bandwidth_gbs']:.1f} | {m['gemm_gflops']:.1f} |")
    lines += [
        "",
        "Bounds: decode ≤ the machine's read bandwidth (all cores) / (4 bytes × active parameters) tokens/s;",
        "prefill ≤ GEMM FLOP/s at that thread count / (2 × active parameters). Active parameters: all but the",
        "embedding table, and only the routed experts.",
        "",
        "| model | threads | phase | anyforge tok/s | PyTorch tok/s | llama.cpp tok/s | vs PyTorch | vs llama.cpp | bound tok/s | anyforge % of bound |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        r = row["results"]
        for phase, key, bound in [("prefill", "prefill_tps", row["prefill_bound"]), ("decode", "decode_tps", row["decode_bound"]),
                                  (f"decode ×{args.batch}", "batched_decode_tps", None)]:
            ours = r["anyforge"][key]
            torch_v = r["pytorch"][key]
            llama_v = r.get("llama.cpp", {}).get(key)
            ratio = lambda peer: "n/a" if not peer else f"{ours / peer:.2f}×"
            lines.append(f"| {row['model']} | {row['threads']} | {phase} | {fmt(ours)} | {fmt(torch_v)} | {fmt(llama_v)} | "
                         f"{ratio(torch_v)} | {ratio(llama_v)} | {fmt(bound)} | {fmt(100 * ours / bound if bound else None)} |")
    for row in rows:
        one = row["results"]["anyforge"]["decode_tps"]
        many = row["results"]["anyforge"]["batched_decode_tps"]
        lines.append("")
        lines.append(f"- {row['model']}, {row['threads']} thread(s): batched decode of {args.batch} gives "
                     f"{many / one:.2f}× the aggregate tokens/s of one sequence; reading weights bounds it at "
                     f"{row['batched_bound']:.2f}× (each step reads every expert any of the {args.batch} tokens chose).")
    lines += ["", "## Running it", "", "```sh",
              "python3 -m venv ~/venvs/ref && ~/venvs/ref/bin/pip install torch transformers tokenizers safetensors sentencepiece",
              "~/venvs/ref/bin/pip download --no-deps --no-binary llama-cpp-python llama-cpp-python -d /tmp/llama",
              "tar xzf /tmp/llama/llama_cpp_python-*.tar.gz -C /tmp/llama && ~/venvs/ref/bin/pip install /tmp/llama/llama_cpp_python-*.tar.gz",
              "~/venvs/ref/bin/python scripts/bench/backbone.py --llama-cpp-src /tmp/llama/llama_cpp_python-*/vendor/llama.cpp",
              "```", ""]
    (ROOT / "docs/benchmarks.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
