"""The training-step benchmark: anyforge against PyTorch, interleaved.

Runs `cargo bench -p training --bench step` and scripts/bench/train_peer.py
(transformers' Qwen3-MoE on the same shapes) REPS times each at 1 and 2
threads, alternating, and prints a markdown table of the medians and their
ratio. Needs a Python with torch and transformers (scripts/bench/README or
docs/benchmarks.md say how the reference venv is made).

usage: python scripts/bench/training.py [--reps N] [--steps N]
"""
import argparse
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
    print("| threads | anyforge step (ms) | PyTorch step (ms) | speed vs PyTorch |")
    print("|---:|---:|---:|---:|")
    for threads, ours, peer in rows:
        print(f"| {threads} | {ours:.1f} | {peer:.1f} | {peer / ours:.2f}× |")


if __name__ == "__main__":
    main()
