#!/usr/bin/env python3
"""PyTorch peers of helix_bench, on the same cases and the same thread count.

For each case: PyTorch eager running the reference code (Zeta's apply_rotary_pos_emb /
SinusoidalEmbeddings, as tests/make_golden.py states it), and torch.compile of the same
function. Outputs are preallocated where the peer allows (the eager rotation writes into
q_out/k_out with out= / copy_; the compiled one returns fresh tensors, so its allocation is
part of it). Run it twice, once as is and once with glibc's malloc told to keep freed
memory (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_), to report the peers with their
allocation cost (page faults on fresh memory) and with it avoided.

Writes Google-Benchmark-like JSON: {"benchmarks": [{"name", "real_time" (ms), ...}]}.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from make_golden import SinusoidalEmbeddings, apply_rotary_pos_emb, rotate_half  # noqa: E402

# The cases of bench/helix_bench.cpp: name, batch, q heads, k heads, q rows, n, d.
ROTARY_CASES = [
    ("decode_1_of_4096", 1, 32, 8, 1, 4096, 128),
    ("decode_16_of_4096", 1, 32, 8, 16, 4096, 128),
    ("decode_64_of_4096", 1, 32, 8, 64, 4096, 128),
    ("prefill_4096", 1, 32, 32, 4096, 4096, 128),
    ("prefill_16384", 1, 32, 32, 16384, 16384, 128),
    ("gqa_4096_k8", 1, 32, 8, 4096, 4096, 128),
    ("prefill_4096_d64", 1, 32, 32, 4096, 4096, 64),
    ("prefill_4096_d80", 1, 32, 32, 4096, 4096, 80),
    ("prefill_4096_d256", 1, 32, 32, 4096, 4096, 256),
]
TABLE_SIZES = [8192, 131072, 1 << 20]


def apply_into(q, k, freqs, scale, q_out, k_out):
    """The reference rotation written into preallocated outputs (intermediates still allocate)."""
    q2, k2 = apply_rotary_pos_emb(q, k, freqs, scale)
    q_out.copy_(q2)
    k_out.copy_(k2)


SYNC = lambda: None  # noqa: E731 (torch.cuda.synchronize with --device cuda)


def best_ms(fn, min_time=0.3, max_reps=50):
    fn()  # warm up (and compile)
    SYNC()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        SYNC()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tag", default="own_alloc", help="suffix naming the allocation mode")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    global SYNC
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.set_default_device(args.device)
    if args.device == "cuda":
        SYNC = torch.cuda.synchronize
    results = []

    def record(name, ms):
        results.append({"name": name, "real_time": ms, "time_unit": "ms"})
        print(f"{name}: {ms:.3f} ms", flush=True)

    compiled = None if args.no_compile else torch.compile(apply_rotary_pos_emb, dynamic=False)
    for name, b, hq, hk, lq, n, d in ROTARY_CASES:
        q, k = torch.randn(b, hq, lq, d), torch.randn(b, hk, n, d)
        freqs, scale = SinusoidalEmbeddings(d, scale_base=512, use_xpos=True)(k)
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        shape = f"{name}/f32"
        record(f"apply_rotary/torch_eager_{args.tag}/{shape}", best_ms(lambda: apply_into(q, k, freqs, scale, q_out, k_out)))
        del q_out, k_out
        if compiled:
            record(f"apply_rotary/torch_compile_{args.tag}/{shape}", best_ms(lambda: compiled(q, k, freqs, scale)))
    x = torch.randn(1, 32, 4096, 128)
    out = torch.empty_like(x)
    record(f"rotate_half/torch_eager_{args.tag}/b1_h32_n4096_d128/f32", best_ms(lambda: out.copy_(rotate_half(x))))
    emb = SinusoidalEmbeddings(128, scale_base=512, use_xpos=True)
    for n in TABLE_SIZES:
        dummy = torch.empty(n, 0)
        record(f"sinusoidal_table/torch_eager_{args.tag}/n{n}_d128_xpos/f32", best_ms(lambda: emb(dummy)))
    with open(args.out, "w") as f:
        json.dump({"context": {"torch": torch.__version__, "threads": args.threads}, "benchmarks": results}, f, indent=1)


if __name__ == "__main__":
    main()
