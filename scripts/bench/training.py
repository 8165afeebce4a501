"""The training-step benchmark: anyforge against PyTorch, interleaved.

Runs `cargo bench -p training --bench step` and scripts/bench/train_peer.py
(transformers' Qwen3-MoE on the same shapes) REPS times each at 1 and 2
threads, alternating, and prints a markdown table of the medians and their
ratio, and writes them to docs/training-benchmarks.md. Needs a Python with
torch and transformers (docs/benchmarks.md, "Running it", says how the
reference venv is made).

usage: python scripts/bench/training.py [--reps N] [--steps N] [--out FILE]
"""
import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(cmd, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "docs/training-benchmarks.md"))
    args = p.parse_args()
    subprocess.run(["cargo", "bench", "-q", "-p", "training", "--bench", "step", "--no-run"],
                   cwd=ROOT, check=True)
    ours_cmd = ["cargo", "bench", "-q", "-p", "training", "--bench", "step", "--", str(args.steps)]
    rows = []
    for threads in (1, 2):
        ours, peer = [], []
        for _ in range(args.reps):
            ours.append(run(ours_cmd, threads)["step_ms"])
            peer_cmd = [sys.executable, str(ROOT / "scripts/bench/train_peer.py"), str(threads), str(args.steps)]
            peer.append(run(peer_cmd, threads)["step_ms"])
        rows.append((threads, statistics.median(ours), statistics.median(peer)))
    table = ["| threads | anyforge step (ms) | PyTorch step (ms) | speed vs PyTorch |", "|---:|---:|---:|---:|"]
    table += [f"| {t} | {ours:.1f} | {peer:.1f} | {peer / ours:.2f}× |" for t, ours, peer in rows]
    print("\n".join(table))
    report = f"""# Training-step benchmark

Made by `scripts/bench/training.py`: one training step of the starter model
(4 layers, hidden 128, 8 experts top-2, vocabulary 2,007), forward and
backward without the optimizer, on a batch shaped like the starter recipe's
mixed batch (each task's share of 3,072 tokens in sequences of its length;
training/benches/step.rs), the loss on target positions only. The peer is
PyTorch `transformers`' Qwen3-MoE on the same shapes and loss
(scripts/bench/train_peer.py). Interleaved runs, the median of {args.reps},
each the median of {args.steps} steps after 5 of warm-up.

Machine: {machine()}; measured on {datetime.date.today()}.

{chr(10).join(table)}

anyforge splits each step's batch over one worker per thread; PyTorch
threads each operation. docs/training.md ("Training speed") says what made
the step faster and what is left.
"""
    pathlib.Path(args.out).write_text(report)


def machine():
    name = "unknown CPU"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    avx512 = " (AVX-512)" if "avx512f" in pathlib.Path("/proc/cpuinfo").read_text() else ""
    return f"{name}{avx512}, {os.cpu_count()} cores"

if __name__ == "__main__":
    main()
