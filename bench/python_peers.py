#!/usr/bin/env python3
"""helix from Python against the PyTorch functions models call, on the bench shapes.

- The binding's cost: one decode step (q (1, 32, 1, 128), k (1, 8, 1, 128), position ids, the
  cos/sin table, in place) through helix.torch (eager: straight to the extension), through
  torch.ops.helix (the dispatcher: what autograd and torch.compile run), through the
  DLPack path (helix.apply_rotary_pos_emb on the same tensors), and, from helix_bench's JSON
  of the same run when given, the C++ call.
- helix.torch's HF drop-in (out of place, as HF returns fresh tensors) against HF
  transformers' eager apply_rotary_pos_emb, torch.compile of it, and rotary-embedding-torch's
  rotate_queries_or_keys (its own layout: interleaved, freqs from inv_freq), on the decode step
  and the prefill shapes of bench/cases.json, float32 and bfloat16.

Median of repeated timings per row, the same thread count for PyTorch and helix. Writes
<out>/python.json and the report's section <out>/python.md.
"""
import argparse
import json
import os
import statistics
import time

import torch
from rotary_embedding_torch import RotaryEmbedding
from transformers.models.llama import modeling_llama

import helix
import helix.torch as ht

CASES = json.loads(open(os.path.join(os.path.dirname(__file__), "cases.json")).read())


def timed(fn, reps, inner):
    fn()  # warm up (compilation, first-call dispatch)
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def hf_tables(positions, d, theta=500000.0):
    inv = 1.0 / (theta ** (torch.arange(0, d, 2).float() / d))
    f = positions[..., None].float() * inv
    emb = torch.cat([f, f], -1)
    return emb.cos(), emb.sin(), inv


def rows_for(shape, q_shape, k_shape, dtype, reps, inner, decode):
    d = q_shape[-1]
    n = q_shape[-2]
    positions = torch.full((1, n), 1234) if decode else torch.arange(n)[None]
    cos, sin, inv = hf_tables(positions, d)
    cos_d, sin_d = cos.to(dtype), sin.to(dtype)
    q, k = torch.randn(q_shape).to(dtype), torch.randn(k_shape).to(dtype)
    hf_compiled = torch.compile(modeling_llama.apply_rotary_pos_emb, fullgraph=True)
    rot = RotaryEmbedding(dim=d)
    out = {
        "helix_torch": lambda: ht.apply_rotary_pos_emb(q, k, cos_d, sin_d),
        "hf_eager": lambda: modeling_llama.apply_rotary_pos_emb(q, k, cos_d, sin_d),
        "hf_compile": lambda: hf_compiled(q, k, cos_d, sin_d),
        "rotary_embedding_torch": lambda: (rot.rotate_queries_or_keys(q), rot.rotate_queries_or_keys(k)),
    }
    if decode:  # the binding's own cost: in place, a table of every position, ids
        table_cos = torch.cos(torch.arange(4096)[:, None].float() * inv)
        table_sin = torch.sin(torch.arange(4096)[:, None].float() * inv)
        ids = positions.to(torch.int32)
        table = helix.RotaryTable.cos_sin(table_cos, table_sin)
        pos = helix.Positions.ids(ids)
        out["helix_torch_in_place"] = lambda: ht.apply_rotary(q, k, cos=table_cos, sin=table_sin, positions=ids,
                                                              inplace=True)
        # The dispatcher's path (what autograd and torch.compile run), called directly.
        op_args = ("cos_sin", table_cos, table_sin, None, 1.0, "ids", 0, ids, None, "same", 0, None, None, "half_split",
                   0, False, False)
        out["helix_torch_ops_in_place"] = lambda: torch.ops.helix.apply_rotary_(q, k, *op_args)
        out["helix_extension_in_place"] = lambda: helix.apply_rotary_pos_emb(q, k, table=table, positions=pos,
                                                                            in_place=True)
    return {f"{shape}/{name}/{str(dtype)[6:]}": timed(fn, reps, inner) for name, fn in out.items()}


def cpp_decode_us(helix_json):
    """helix_bench's decode step with position ids (cos/sin table, float32), in us."""
    if not helix_json or not os.path.exists(helix_json):
        return None
    for b in json.load(open(helix_json))["benchmarks"]:
        if b["name"].startswith("decode_step/tuned_cos_sin/b1_") and "/float32/" in b["name"] and \
                b.get("aggregate_name", "median") == "median":
            return b["real_time"] * {"us": 1, "ns": 1e-3, "ms": 1e3}[b["time_unit"]]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", required=True)
    ap.add_argument("--helix-json", help="helix_bench's JSON of the same run (for the C++ decode step)")
    ap.add_argument("--prefill", default="gqa_4096_k8,prefill_4096", help="bench/cases.json rotary cases")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    helix.set_num_threads(args.threads)

    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        times.update(rows_for("decode_step_b1", (1, 32, 1, 128), (1, 8, 1, 128), dtype, 7, 2000, True))
        for case in CASES["rotary"]:
            if case["name"] in args.prefill.split(","):
                b, n, d = case["batch"], case["n"], case["d"]
                times.update(rows_for(case["name"], (b, case["q_heads"], n, d), (b, case["k_heads"], n, d), dtype,
                                      5, 1, False))

    os.makedirs(args.out, exist_ok=True)
    json.dump({"context": {"threads": args.threads, "torch": torch.__version__},
               "benchmarks": [{"name": k, "real_time": v * 1e3, "time_unit": "ms"} for k, v in times.items()]},
              open(os.path.join(args.out, "python.json"), "w"), indent=1)

    cpp = cpp_decode_us(args.helix_json)
    lines = ["## helix from Python and PyTorch", "",
             f"Median times, {args.threads} threads, torch {torch.__version__}. Decode step: q (1, 32, 1, 128), "
             "k (1, 8, 1, 128) at position 1234.", ""]
    for dtype in ("float32", "bfloat16"):
        dec = {k.split("/")[1]: v * 1e6 for k, v in times.items() if k.startswith("decode_step_b1/") and k.endswith(dtype)}
        lines.append(f"- {dtype} decode step, us: " + ", ".join(f"{k} {v:.1f}" for k, v in dec.items()) +
                     (f"; C++ call (helix_bench) {cpp:.2f}, so helix.torch adds {dec['helix_torch_in_place'] - cpp:.1f} "
                      f"(through torch.ops {dec['helix_torch_ops_in_place'] - cpp:.1f}) and the DLPack path "
                      f"{dec['helix_extension_in_place'] - cpp:.1f}" if cpp and dtype == "float32" else ""))
    lines += ["", "| shape | dtype | helix.torch (HF drop-in) ms | HF eager ms | HF compile ms | rotary-embedding-torch ms |"
              " helix vs eager | vs compile |", "|---|---|---|---|---|---|---|---|"]
    shapes = sorted({k.split("/")[0] for k in times})
    for shape in shapes:
        for dtype in ("float32", "bfloat16"):
            t = {k.split("/")[1]: v * 1e3 for k, v in times.items() if k.startswith(shape + "/") and k.endswith(dtype)}
            lines.append(f"| {shape} | {dtype} | {t['helix_torch']:.3f} | {t['hf_eager']:.3f} | {t['hf_compile']:.3f} | "
                         f"{t['rotary_embedding_torch']:.3f} | {t['hf_eager'] / t['helix_torch']:.1f}x | "
                         f"{t['hf_compile'] / t['helix_torch']:.1f}x |")
    open(os.path.join(args.out, "python.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
