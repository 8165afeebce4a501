"""PyTorch side of the codec benchmark: decode the same codes with the
reference implementation, print one JSON line (median seconds, FLOPs).

    codec_peer.py KIND DIR CODES.json THREADS REPS
    codec_peer.py gemm THREADS          (PyTorch's GEMM throughput)
"""
import json
import statistics
import sys
import time

import torch


def gemm_gflops():
    """PyTorch's (MKL's) f32 GEMM on 1024^3, best of 6."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(6):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 1024**3 / best / 1e9


def main():
    if sys.argv[1] == "gemm":
        torch.set_num_threads(int(sys.argv[2]))
        print(json.dumps({"gemm_gflops": gemm_gflops()}))
        return
    kind, folder, codes_path, threads, reps = sys.argv[1:6]
    torch.set_num_threads(int(threads))
    codes = json.load(open(codes_path))
    if kind == "image":
        from transformers import JanusVQVAE

        model = JanusVQVAE.from_pretrained(folder, dtype=torch.float32).eval()
        grid = torch.tensor(codes["codes"]).reshape(1, -1)
        model.quantize.quant_state_dims = [codes["height"], codes["width"]]
        run = lambda: model.decode(grid)
    else:
        from safetensors.torch import load_file
        from snac import SNAC

        model = SNAC(**json.load(open(f"{folder}/config.json"))).eval()
        model.load_state_dict(load_file(f"{folder}/model.safetensors"))
        # Fold the weight norm once, as anyforge does at load (otherwise
        # PyTorch would recompute it on every call).
        from torch.nn.utils import parametrize

        for module in model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")
        levels = [torch.tensor(level).reshape(1, -1) for level in codes["codes"]]
        run = lambda: model.decode(levels)
    with torch.inference_mode():
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            run()
        flops = counter.get_total_flops()
        times = []
        for _ in range(int(reps)):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
    print(json.dumps({"impl": "pytorch", "seconds": statistics.median(times), "flops": flops}))


if __name__ == "__main__":
    main()
