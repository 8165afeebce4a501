"""The codec benchmark: anyforge's decoders against the reference PyTorch
implementations (transformers' JanusVQVAE, the snac package) on the same
random weights, the same codes and thread counts, interleaved in one run;
each row with its achieved GFLOP/s next to the machine's GEMM ceiling.
Writes docs/codec-benchmarks.md.

    ~/venvs/ref/bin/python scripts/bench/codec_bench.py      (torch, transformers, snac, safetensors)
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


def make_janus_vq():
    """Janus-Pro's VQ-16 (the reference config's defaults), random weights,
    decoding a 16x16 grid to 256x256."""
    folder = CACHE / "janus-vq"
    codes = folder / "codes.json"
    if not codes.exists():
        import torch
        from transformers import JanusVQVAE, JanusVQVAEConfig

        torch.manual_seed(0)
        JanusVQVAE(JanusVQVAEConfig(num_patches=16)).save_pretrained(folder)
        g = torch.Generator().manual_seed(1)
        grid = torch.randint(0, 16384, (16, 16), generator=g).tolist()
        codes.write_text(json.dumps({"kind": "image", "height": 16, "width": 16, "codes": grid}))
    return folder, codes


def make_snac():
    """SNAC at 24 kHz as Orpheus uses it (hubertsiuzdak/snac_24khz's config),
    random weights, decoding 10 s of codes."""
    folder = CACHE / "snac-24khz"
    codes = folder / "codes.json"
    if not codes.exists():
        import torch
        from safetensors.torch import save_file
        from snac import SNAC

        config = dict(sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
                      decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=4096, codebook_dim=8,
                      vq_strides=[4, 2, 1], noise=True, depthwise=True)
        torch.manual_seed(0)
        model = SNAC(**config)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
        hop = 512  # product of the encoder rates
        steps = 10 * 24000 // hop // 4 * 4  # finest steps, a multiple of the coarsest stride
        g = torch.Generator().manual_seed(1)
        levels = [torch.randint(0, 4096, (steps // s,), generator=g).tolist() for s in config["vq_strides"]]
        codes.write_text(json.dumps({"kind": "audio", "sample_rate": 24000, "codes": levels}))
    return folder, codes


def simd():
    """The widest vector unit kernels::sgemm runs on this CPU."""
    flags = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "portable"


def run(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    subprocess.run(["cargo", "bench", "-q", "-p", "encoders", "--bench", "codecs", "--no-run"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "bench", "-q", "-p", "pipelines", "--bench", "backbone", "--no-run"], cwd=ROOT, check=True)
    cases = {"image VQ decode, Janus-Pro VQ-16, 256x256": ("image", *make_janus_vq()),
             "SNAC 24 kHz decode, 10 s": ("audio", *make_snac())}
    machine = {t: run(["cargo", "bench", "-q", "-p", "pipelines", "--bench", "backbone", "--", "machine"],
                      dict(os.environ, RAYON_NUM_THREADS=str(t))) for t in threads}
    for t in threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
        machine[t]["mkl_gflops"] = run([sys.executable, str(HERE / "codec_peer.py"), "gemm", str(t)], env)["gemm_gflops"]
    rows = []
    for name, (kind, folder, codes) in cases.items():
        for t in threads:
            ours, theirs, flops = [], [], None
            for _ in range(2):  # interleaved
                env = dict(os.environ, RAYON_NUM_THREADS=str(t))
                ours.append(run(["cargo", "bench", "-q", "-p", "encoders", "--bench", "codecs", "--",
                                 str(folder), str(codes), str(args.reps)], env)["seconds"])
                env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
                peer = run([sys.executable, str(HERE / "codec_peer.py"), kind, str(folder), str(codes), str(t),
                            str(args.reps)], env)
                theirs.append(peer["seconds"])
                flops = peer["flops"]
            a, p = statistics.median(ours), statistics.median(theirs)
            rows.append(dict(name=name, threads=t, ours=a, peer=p, flops=flops, gemm=machine[t]["gemm_gflops"],
                             mkl=machine[t]["mkl_gflops"]))
            print(rows[-1], flush=True)
    write_report(rows, machine)


def write_report(rows, machine):
    lines = [
        "# Codec benchmarks",
        "",
        "Made by `scripts/bench/codec_bench.py`. Decode only, f32, random weights in the published models'",
        "shapes, the same codes for both implementations, the same thread count, interleaved runs",
        "(median of 2 runs of the median of 3 decodes). FLOPs are PyTorch's count of the reference",
        "decode (`torch.utils.flop_counter`); GFLOP/s is that count over each implementation's time.",
        "",
        "On this shared 2-core machine figures vary by about ±20% from run to run; compare the ratios",
        "within one run.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; measured on {time.strftime('%Y-%m-%d')}.",
        "",
        f"GEMM ceilings: f32 1024³ with anyforge's kernel (`kernels::sgemm`, {simd()}) and with PyTorch's",
        "(MKL), at the same thread count.",
        "",
        "| decode | threads | GFLOP | anyforge s | PyTorch s | anyforge vs PyTorch | anyforge GFLOP/s | PyTorch GFLOP/s | GEMM ceiling GFLOP/s (ours / MKL) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        g = r["flops"] / 1e9
        lines.append(f"| {r['name']} | {r['threads']} | {g:.1f} | {r['ours']:.3f} | {r['peer']:.3f} | "
                     f"{r['peer'] / r['ours']:.2f}× | {g / r['ours']:.1f} | {g / r['peer']:.1f} | {r['gemm']:.1f} / {r['mkl']:.1f} |")
    lines += ["", "## Running it", "", "```sh",
              "~/venvs/ref/bin/pip install torch transformers safetensors snac",
              "~/venvs/ref/bin/python scripts/bench/codec_bench.py", "```", ""]
    (ROOT / "docs/codec-benchmarks.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
