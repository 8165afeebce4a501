#!/usr/bin/env python3
"""Load check for `anyforge serve`, loopback only and bounded in time.

Starts the server on a free loopback port with a small engine queue, then
runs waves of concurrent chat requests (more clients than the batch and the
queue hold), and checks that:
  * overflow is answered 429 with Retry-After (never a dropped connection
    or a 5xx),
  * the server stays healthy and serves a request after each wave,
  * resident memory is flat: the last wave ends no higher than the first
    one did (within a tolerance), so nothing accumulates per request.

Standard library only. Prints a JSON report; exit status 1 when a check
fails.

    python3 scripts/bench/load_check.py [--bin target/release/anyforge]
        [--clients 32] [--waves 3] [--seconds 15]
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(port, method, path, body=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


CHAT = {
    "messages": [{"role": "user", "content": "Tell me about circles and squares."}],
    "max_tokens": 24,
    "temperature": 0.8,
}


def wave(port, clients, seconds):
    """`clients` threads post chats back to back for `seconds`."""
    counts = {}
    retry_after_missing = 0
    errors = []
    latencies = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client():
        nonlocal retry_after_missing
        while time.monotonic() < stop:
            t = time.monotonic()
            try:
                status, headers, _ = request(port, "POST", "/v1/chat/completions", CHAT)
            except OSError as e:  # a refused or dropped connection
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                counts[status] = counts.get(status, 0) + 1
                if status == 200:
                    latencies.append(time.monotonic() - t)
                if status == 429 and "retry-after" not in {k.lower() for k in headers}:
                    retry_after_missing += 1
            if status == 429:
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else None
    return {
        "status_counts": {str(k): v for k, v in sorted(counts.items())},
        "connection_errors": len(errors),
        "retry_after_missing": retry_after_missing,
        "p50_latency_s": round(p50, 3) if p50 else None,
        "completed_per_s": round(counts.get(200, 0) / seconds, 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/anyforge")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--waves", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=0.10,
                    help="allowed growth of RSS from the first wave's end to the last's")
    args = ap.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "anyforge.yaml")
        with open(config, "w") as f:
            f.write(
                f"data_dir: data\nlimits:\n  engine:\n"
                f"    max_batch: {args.max_batch}\n    max_queue: {args.max_queue}\n"
            )
        env = dict(os.environ, ANYFORGE_LOG="warn")
        server = subprocess.Popen(
            [args.bin, "serve", "--addr", f"127.0.0.1:{port}", "--config", config],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if request(port, "GET", "/health", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("the server did not come up")
                time.sleep(0.1)
            request(port, "POST", "/v1/chat/completions", CHAT)  # warm-up
            report = {"clients": args.clients, "seconds_per_wave": args.seconds,
                      "max_batch": args.max_batch, "max_queue": args.max_queue,
                      "rss_kib_idle": rss_kib(server.pid), "waves": []}
            for _ in range(args.waves):
                w = wave(port, args.clients, args.seconds)
                w["rss_kib_after"] = rss_kib(server.pid)
                w["healthy_after"] = request(port, "GET", "/health")[0] == 200
                w["served_after"] = request(port, "POST", "/v1/chat/completions", CHAT)[0] == 200
                report["waves"].append(w)
            _, _, metrics = request(port, "GET", "/metrics")
            report["metrics_queue_depth"] = next(
                (line.split()[-1] for line in metrics.decode().splitlines()
                 if line.startswith("anyforge_queue_depth")), None)
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()

    first, last = report["waves"][0], report["waves"][-1]
    checks = {
        "overflow_answered_429": all("429" in w["status_counts"] for w in report["waves"]),
        "retry_after_on_every_429": all(w["retry_after_missing"] == 0 for w in report["waves"]),
        "no_5xx_or_dropped_connections": all(
            w["connection_errors"] == 0 and not any(k.startswith("5") for k in w["status_counts"])
            for w in report["waves"]),
        "healthy_and_serving_after_each_wave": all(
            w["healthy_after"] and w["served_after"] for w in report["waves"]),
        "memory_flat": last["rss_kib_after"] <= first["rss_kib_after"] * (1 + args.tolerance),
        "clean_exit_on_sigterm": server.returncode == 0,
    }
    report["checks"] = checks
    print(json.dumps(report, indent=2))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
