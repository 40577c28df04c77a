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
import re
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from make_golden import SinusoidalEmbeddings, apply_rotary_pos_emb, rotate_half  # noqa: E402

# The cases helix_bench runs: one list, bench/cases.json.
CASES = json.loads(open(os.path.join(os.path.dirname(__file__), "cases.json")).read())


def apply_into(q, k, freqs, scale, q_out, k_out):
    """The reference rotation written into preallocated outputs (intermediates still allocate).
    With 16-bit q and k the float32 tables promote the arithmetic to float32 and copy_ rounds
    once to the storage type: helix's semantics."""
    q2, k2 = apply_rotary_pos_emb(q, k, freqs, scale)
    q_out.copy_(q2)
    k_out.copy_(k2)


def apply_in_dtype(q, k, freqs, scale):
    """The reference rotation returning q's storage type (the compiled peer)."""
    q2, k2 = apply_rotary_pos_emb(q, k, freqs, scale)
    return q2.to(q.dtype), k2.to(k.dtype)


def rotate_at(x, positions, form, tables):
    """x (..., n, d) rotated at `positions` (broadcasting against x's rows) the way a model with
    each table form writes it: gathering rows of the angle table (Zeta) or of cos/sin tables
    (flash-attention, vLLM), or forming the angles from inv_freq (FlashInfer's pos_ids). Float32
    math, the result in x's storage type."""
    if form == "angles":
        f = tables["freqs"][positions]
        cos, sin = f.cos(), f.sin()
    elif form == "cos_sin":
        cos, sin = tables["cos"][positions], tables["sin"][positions]
        cos, sin = torch.cat((cos, cos), dim=-1), torch.cat((sin, sin), dim=-1)
    else:
        f = positions.to(torch.float32)[..., None] * tables["inv_freq"]
        f = torch.cat((f, f), dim=-1)
        cos, sin = f.cos(), f.sin()
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


def decode_step(q, k, ids, form, tables):
    """One decode step in place: q (b, h, 1, d), k (b, h_kv, 1, d), ids (b, 1)."""
    positions = ids[:, None, :]  # (b, 1, 1): against the heads and the row
    q.copy_(rotate_at(q, positions, form, tables))
    k.copy_(rotate_at(k, positions, form, tables))


def varlen_positions(cu_seqlens, total):
    """Token t of sequence s at t - cu_seqlens[s] (flash-attention varlen, TransformerEngine thd)."""
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    # (arange on cu_seqlens' device: torch.compile does not apply the default device to it)
    return torch.arange(total, device=cu_seqlens.device) - torch.repeat_interleave(cu_seqlens[:-1], lengths)


def varlen_prefill(q, k, cu_seqlens, form, tables):
    """q (total, h, d) and k (total, h_kv, d) rotated at their positions inside their sequences."""
    positions = varlen_positions(cu_seqlens, q.shape[0])[:, None]  # against the heads
    return rotate_at(q, positions, form, tables), rotate_at(k, positions, form, tables)


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
    ap.add_argument("--filter", default=".", help="regex on the row names (as helix_bench's --benchmark_filter)")
    args = ap.parse_args()
    global SYNC
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.set_default_device(args.device)
    if args.device == "cuda":
        SYNC = torch.cuda.synchronize
    results = []

    def wanted(name):
        return re.search(args.filter, name) is not None

    def record(name, fn):
        if not wanted(name):
            return
        ms = best_ms(fn)
        results.append({"name": name, "real_time": ms, "time_unit": "ms"})
        print(f"{name}: {ms:.3f} ms", flush=True)

    # One compiled graph per case and storage type (each a recompilation of the function).
    torch._dynamo.config.recompile_limit = 1000
    compiled = None if args.no_compile else torch.compile(apply_in_dtype, dynamic=False)
    for c in CASES["rotary"]:
        for dtype in CASES["dtypes"]:
            shape = f"{c['name']}/{dtype}"
            if not any(wanted(f"apply_rotary/torch_{kind}_{args.tag}/{shape}") for kind in ("eager", "compile")):
                continue  # no tensors made for cases filtered out
            q = torch.randn(c["batch"], c["q_heads"], c["q_rows"], c["d"]).to(getattr(torch, dtype))
            k = torch.randn(c["batch"], c["k_heads"], c["n"], c["d"]).to(getattr(torch, dtype))
            freqs, scale = SinusoidalEmbeddings(c["d"], scale_base=512, use_xpos=True)(k)
            q_out, k_out = torch.empty_like(q), torch.empty_like(k)
            record(f"apply_rotary/torch_eager_{args.tag}/{shape}", lambda: apply_into(q, k, freqs, scale, q_out, k_out))
            del q_out, k_out
            if compiled:
                record(f"apply_rotary/torch_compile_{args.tag}/{shape}", lambda: compiled(q, k, freqs, scale))
    # The backward pass: torch.autograd through the reference (the forward outside the timing).
    for c in CASES["rotary"]:
        for dtype in CASES["dtypes"]:
            name = f"apply_rotary/torch_eager_backward_{args.tag}/{c['name']}/{dtype}"
            if not wanted(name):
                continue
            q = torch.randn(c["batch"], c["q_heads"], c["q_rows"], c["d"]).to(getattr(torch, dtype)).requires_grad_()
            k = torch.randn(c["batch"], c["k_heads"], c["n"], c["d"]).to(getattr(torch, dtype)).requires_grad_()
            freqs, scale = SinusoidalEmbeddings(c["d"], scale_base=512, use_xpos=True)(k)
            q2, k2 = apply_in_dtype(q, k, freqs, scale)
            grads = (torch.randn_like(q2), torch.randn_like(k2))
            record(name, lambda: torch.autograd.grad((q2, k2), (q, k), grads, retain_graph=True))
            del q, k, q2, k2, grads

    # Positions: decode steps with position ids and a varlen prefill, per table form.
    pos = CASES["positions"]
    heads = f"_h{pos['q_heads']}_kv{pos['k_heads']}_d{pos['d']}"
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, pos["d"], 2).float() / pos["d"]))
    angles = torch.arange(pos["table_rows"]).float()[:, None] * inv_freq
    tables = {"freqs": torch.cat((angles, angles), dim=-1), "cos": angles.cos(), "sin": angles.sin(),
              "inv_freq": inv_freq}
    compiled_decode = None if args.no_compile else torch.compile(decode_step, dynamic=False)
    compiled_varlen = None if args.no_compile else torch.compile(varlen_prefill, dynamic=False)
    lengths = torch.tensor(pos["varlen_lengths"])
    cu_seqlens = torch.cat((torch.zeros(1, dtype=torch.long), lengths.cumsum(0)))
    total = int(cu_seqlens[-1])
    for dtype in CASES["dtypes"]:
        for form in ("angles", "cos_sin", "inv_freq"):
            for batch in pos["decode_batches"]:
                shape = f"b{batch}{heads}/{dtype}"
                q = torch.randn(batch, pos["q_heads"], 1, pos["d"]).to(getattr(torch, dtype))
                k = torch.randn(batch, pos["k_heads"], 1, pos["d"]).to(getattr(torch, dtype))
                ids = torch.randint(0, pos["table_rows"], (batch, 1))
                record(f"decode_step/torch_eager_{form}_{args.tag}/{shape}", lambda: decode_step(q, k, ids, form, tables))
                if compiled_decode:
                    record(f"decode_step/torch_compile_{form}_{args.tag}/{shape}",
                           lambda: compiled_decode(q, k, ids, form, tables))
            shape = f"mixed{heads}/{dtype}"
            if not any(wanted(f"varlen_prefill/torch_{kind}_{form}_{args.tag}/{shape}") for kind in ("eager", "compile")):
                continue
            q = torch.randn(total, pos["q_heads"], pos["d"]).to(getattr(torch, dtype))
            k = torch.randn(total, pos["k_heads"], pos["d"]).to(getattr(torch, dtype))
            record(f"varlen_prefill/torch_eager_{form}_{args.tag}/{shape}",
                   lambda: varlen_prefill(q, k, cu_seqlens, form, tables))
            if compiled_varlen:
                record(f"varlen_prefill/torch_compile_{form}_{args.tag}/{shape}",
                       lambda: compiled_varlen(q, k, cu_seqlens, form, tables))
            del q, k

    x = torch.randn(*CASES["rotate_half"])
    out = torch.empty_like(x)
    b, h, n, d = CASES["rotate_half"]
    record(f"rotate_half/torch_eager_{args.tag}/b{b}_h{h}_n{n}_d{d}/float32", lambda: out.copy_(rotate_half(x)))
    dim = CASES["table_dim"]
    emb = SinusoidalEmbeddings(dim, scale_base=512, use_xpos=True)
    for n in CASES["table_rows"]:
        dummy = torch.empty(n, 0)
        record(f"sinusoidal_table/torch_eager_{args.tag}/n{n}_d{dim}_xpos/float32", lambda: emb(dummy))
    with open(args.out, "w") as f:
        json.dump({"context": {"torch": torch.__version__, "threads": args.threads}, "benchmarks": results}, f, indent=1)


if __name__ == "__main__":
    main()
