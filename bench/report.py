#!/usr/bin/env python3
"""Merges helix_bench's JSON and the peers' JSON of one run into report.md and report.png.

Every row is one kernel x variant x shape x dtype: GB/s of the minimal traffic (helix's
byte count for that case, used for the peers too), % of the copy roofline (the fastest of
the copy_* rows of the case, measured in the same run), and the speed-up of the variant
over each peer (peer time / variant time)."""
import json
import pathlib
import sys

PEERS = [
    ("torch_eager_own_alloc", "vs eager"),
    ("torch_eager_reused_memory", "vs eager (reused memory)"),
    ("torch_compile_own_alloc", "vs compile"),
    ("torch_compile_reused_memory", "vs compile (reused memory)"),
    ("cpp_loop", "vs C++ loop"),
]


def key(name):
    kernel, variant, shape, dtype = name.split("/")[:4]
    return kernel, variant, shape, dtype


def main(run_dir):
    run_dir = pathlib.Path(run_dir)
    helix = json.loads((run_dir / "helix.json").read_text())
    times, rates, copy_rates, own_roofline, errors = {}, {}, {}, {}, {}
    # Rotary cases have copy_* rows (the best one is the roofline); the other kernels carry
    # helix_bench's own roofline in pct_of_copy.
    for b in helix["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue  # with --benchmark_repetitions: the median stands for the case
        kernel, variant, shape, dtype = key(b["name"])
        if b.get("error_occurred"):
            errors[kernel, variant, shape, dtype] = b.get("error_message", "error")
            continue
        times[kernel, variant, shape, dtype] = b["real_time"]
        rates[kernel, shape, dtype] = b["bytes_per_second"] * b["real_time"]  # bytes * time unit
        if variant.startswith("copy_"):  # a copy measured like every variant: the best wins
            copy_rates[kernel, shape, dtype] = max(copy_rates.get((kernel, shape, dtype), 0), b["bytes_per_second"])
        else:
            own_roofline[kernel, shape, dtype] = b["bytes_per_second"] * 100 / b["pct_of_copy"]
    copy_rates = {**own_roofline, **copy_rates}  # measured copy rows first
    for peers in sorted(run_dir.glob("peers_*.json")):
        for b in json.loads(peers.read_text())["benchmarks"]:
            times[key(b["name"])] = b["real_time"]

    rows, plot = [], {}
    helix_variants = sorted({k[1] for k in times if k[1] not in {p for p, _ in PEERS} and not k[1].startswith("copy_")},
                            key=lambda v: (v != "tuned", v))
    for (kernel, variant, shape, dtype), ms in sorted(times.items()):
        bytes_ms = rates.get((kernel, shape, dtype))
        if bytes_ms is None:
            continue
        gbs = bytes_ms / ms / 1e9
        copy = copy_rates.get((kernel, shape, dtype))
        pct = f"{100 * gbs * 1e9 / copy:.0f}%" if copy else "n/a"
        speedups = []
        for peer, _ in PEERS:
            p = times.get((kernel, peer, shape, dtype))
            speedups.append(f"{p / ms:.2f}x" if p and variant in helix_variants else "")
        rows.append([kernel, variant, shape, dtype, f"{gbs:.2f}", pct] + speedups)
        if kernel == "apply_rotary" and dtype == "float32":
            plot.setdefault(variant, {})[shape] = gbs

    header = ["kernel", "variant", "shape", "dtype", "GB/s", "% of copy"] + [label for _, label in PEERS]
    ctx = helix.get("context", {})
    caches = ", ".join(f"L{c['level']} {c['type'].lower()} {c['size'] // 1024} KiB" for c in ctx.get("caches", []))
    won = {}
    for (kernel, variant, shape, dtype), ms in times.items():
        if variant.startswith("copy_") and ms < won.get((kernel, shape, dtype), ("", 1e30))[1]:
            won[kernel, shape, dtype] = (variant[len("copy_"):], ms)
    lines = [
        f"helix_bench run of {ctx.get('date', '?')} on {ctx.get('cpu_model', '?')} ({ctx.get('host_name', '?')}), "
        f"{ctx.get('num_cpus', '?')} CPUs, caches: {caches}; helix threads {ctx.get('helix_threads', '?')}, "
        f"device {ctx.get('helix_device', '?')}.",
        "",
        "Best copy (the roofline) per case: " + "; ".join(f"{s}/{d}: {w[0]}" for (k, s, d), w in sorted(won.items())),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if errors:
        lines += ["", "Variants that could not run a case:", ""]
        lines += [f"- {'/'.join(k)}: {msg}" for k, msg in sorted(errors.items())]
    python = run_dir / "python.md"  # bench/python_peers.py's section, when it ran
    if python.exists():
        lines += ["", python.read_text()]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({s for v in plot.values() for s in v})
    variants = sorted(plot, key=lambda v: (v != "tuned", not v.startswith("copy_"), v))
    fig, ax = plt.subplots(figsize=(14, 6))
    width = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        ax.bar([x + i * width for x in range(len(shapes))], [plot[v].get(s, 0) for s in shapes], width, label=v,
               color=plt.cm.tab20(i))
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(shapes))], shapes, rotation=30, ha="right")
    ax.set_ylabel("GB/s (minimal traffic)")
    ax.set_yscale("log")
    ax.set_title("apply_rotary float32 with xPos: helix variants and peers")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(run_dir / "report.png", dpi=110)
    print(f"wrote {run_dir / 'report.md'} and {run_dir / 'report.png'}")


if __name__ == "__main__":
    main(sys.argv[1])
