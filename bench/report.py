#!/usr/bin/env python3
"""Merges helix_bench's JSON and the peers' JSON of one run into report.md, report.png and
variants.png.

Every row is one kernel x variant x shape x dtype: its time, GB/s of the case's traffic
(helix's byte count for that case, used for every row of it, peers included), % of the copy
roofline (the fastest of the copy_* rows of the case, or for the tables, which read nothing,
of the fill_* rows, measured in the same run: with the case's bytes, the best copy's time
over the row's time), and the speed-up of each helix
variant over each peer (peer time / variant time). report.png: helix against the peers;
variants.png: helix's schedule variants; both in % of the best copy."""
import json
import pathlib
import re
import sys

# The peers, with their speed-up columns. ggml and the C++ loop run inside helix_bench.
PEERS = [
    ("torch_eager_own_alloc", "vs eager"),
    ("torch_eager_reused_memory", "vs eager (reused memory)"),
    ("torch_compile_own_alloc", "vs compile"),
    ("torch_compile_reused_memory", "vs compile (reused memory)"),
    ("cpp_loop", "vs C++ loop"),
    ("ggml", "vs ggml"),
]
# report.png's series: helix's rows (no-table form beside the tuned xPos one, ggml's math) and
# the peers, a torch peer at the faster of its two allocation modes.
SERIES = [
    ("helix tuned (xPos angle table)", ("tuned",), dict(color="tab:blue", marker="o", s=70)),
    ("helix tuned_inv_freq (no table)", ("tuned_inv_freq",), dict(color="tab:cyan", marker="D", s=45)),
    ("ggml_rope_ext (no table)", ("ggml",), dict(color="tab:orange", marker="s", s=45)),
    ("C++ loop (-O3 -march=native)", ("cpp_loop",), dict(color="tab:green", marker="^", s=45)),
    ("torch.compile (faster alloc mode)", ("torch_compile_own_alloc", "torch_compile_reused_memory"),
     dict(color="tab:purple", marker="v", s=45)),
    ("torch eager (faster alloc mode)", ("torch_eager_own_alloc", "torch_eager_reused_memory"),
     dict(color="tab:red", marker="X", s=45)),
]
VARIANT_KERNELS = ("apply_rotary", "rotate_half", "sinusoidal_table")
SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
CASES = json.loads((pathlib.Path(__file__).parent / "cases.json").read_text())


def is_roofline(variant):
    return variant.startswith(("copy_", "fill_"))


def key(name):
    kernel, variant, shape, dtype = name.split("/")[:4]
    return kernel, variant, shape, dtype


def order(kernel, shape, dtype):
    """Rotary cases and dtypes in bench/cases.json's order, anything else after them with its
    numbers in numeric order (n8192 before n131072)."""
    names = [c["name"] for c in CASES["rotary"]]
    dtypes = CASES["dtypes"]
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", shape)]
    return (kernel, names.index(shape) if shape in names else len(names), natural,
            dtypes.index(dtype) if dtype in dtypes else len(dtypes), dtype)


def load(run_dir):
    """Seconds per row, the case's bytes and roofline rate (bytes/s), the peers' variant names,
    the rows that failed, and helix_bench's context."""
    helix = json.loads((run_dir / "helix.json").read_text())
    seconds, case_bytes, copy_rates, own_roofline, errors = {}, {}, {}, {}, {}
    # Rotary cases have copy_* rows and tables fill_* rows (the best one is the roofline); the
    # other kernels carry helix_bench's own roofline in pct_of_copy.
    for b in helix["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue  # with --benchmark_repetitions: the median stands for the case
        kernel, variant, shape, dtype = k = key(b["name"])
        if b.get("error_occurred"):
            errors[k] = b.get("error_message", "error")
            continue
        seconds[k] = b["real_time"] * SECONDS[b["time_unit"]]
        case = kernel, shape, dtype
        if is_roofline(variant):  # a copy measured like every variant: the best wins
            case_bytes[case] = b["bytes_per_second"] * seconds[k]
            copy_rates[case] = max(copy_rates.get(case, 0), b["bytes_per_second"])
        else:
            case_bytes.setdefault(case, b["bytes_per_second"] * seconds[k])
            own_roofline[case] = b["bytes_per_second"] * 100 / b["pct_of_copy"]
    rooflines = {**own_roofline, **copy_rates}  # measured copy rows first
    peers = {peer for peer, _ in PEERS}  # the columns' and, below, every row of the peers' files
    for path in sorted(run_dir.glob("peers_*.json")):
        for b in json.loads(path.read_text())["benchmarks"]:
            k = key(b["name"])
            seconds[k] = b["real_time"] * SECONDS[b.get("time_unit", "ms")]
            peers.add(k[1])
    return seconds, case_bytes, rooflines, peers, errors, helix.get("context", {})


def pct_of_copy(seconds, case_bytes, rooflines, k):
    kernel, _, shape, dtype = k
    case = kernel, shape, dtype
    if k not in seconds or case not in rooflines:
        return None
    return 100 * case_bytes[case] / seconds[k] / rooflines[case]


def ggml_section(seconds, pct, ctx):
    """ggml against helix's no-table form (the same math) and the tuned xPos row."""
    cases = sorted({(s, d) for (kern, v, s, d) in seconds if kern == "apply_rotary" and v == "ggml"},
                   key=lambda c: order("apply_rotary", *c))
    if not cases:
        return []
    lines = [
        "## ggml",
        "",
        f"`apply_rotary/ggml` is ggml's `ggml_rope_ext` (the CPU kernel llama.cpp runs; ggml "
        f"{ctx.get('ggml_version', '?')}, as vendored by the ggml-python sdist bench/run.sh pins, built with "
        "`-march=native`) in NEOX mode (half-split pairing) on ggml's CPU graph "
        "plan and thread pool, with helix's thread count. It forms its angles from the positions "
        "(theta = pos * 10000^(-2i/d)), without a table and without xPos: the same math as helix's "
        "`tuned_inv_freq` rows, its like-for-like comparison. The plain `tuned` rows read an xPos angle table "
        "(freqs and scale: more traffic, a different computation) and are shown for reference. % of copy: the "
        "best copy of the case's bytes (q, k and the xPos tables, read and written) over the row's time; "
        "\"vs ggml\": ggml's time over helix's.",
        "",
        "| shape | dtype | ggml ms | tuned_inv_freq ms | tuned_inv_freq vs ggml | tuned ms | tuned vs ggml "
        "| ggml % of copy | tuned_inv_freq % of copy | tuned % of copy |",
        "|" + "---|" * 10,
    ]

    def ms(v, s, d):
        t = seconds.get(("apply_rotary", v, s, d))
        return f"{t * 1e3:.3g}" if t else "n/a"

    def ratio(v, s, d):
        t = seconds.get(("apply_rotary", v, s, d))
        return f"{seconds['apply_rotary', 'ggml', s, d] / t:.2f}x" if t else "n/a"

    def pct_str(v, s, d):
        p = pct(("apply_rotary", v, s, d))
        return f"{p:.0f}%" if p is not None else "n/a"

    for s, d in cases:
        lines.append(f"| {s} | {d} | {ms('ggml', s, d)} | {ms('tuned_inv_freq', s, d)} | "
                     f"{ratio('tuned_inv_freq', s, d)} | {ms('tuned', s, d)} | {ratio('tuned', s, d)} | "
                     f"{pct_str('ggml', s, d)} | {pct_str('tuned_inv_freq', s, d)} | {pct_str('tuned', s, d)} |")
    return lines + [""]


def dot_plot(ax, cases, series, ylim, title):
    """One dot per series and case (x: case/dtype; y: % of the best copy, log scale), the
    series side by side within a case; series: [(label, [pct or None per case], style)]."""
    from matplotlib.ticker import FixedLocator, NullLocator

    width = 0.8 / max(1, len(series))
    for j, (label, values, style) in enumerate(series):
        points = [(i + (j - (len(series) - 1) / 2) * width, v) for i, v in enumerate(values) if v is not None]
        ax.scatter([x for x, _ in points], [v for _, v in points], label=label, zorder=3,
                   edgecolors="black", linewidths=0.4, **style)
    # Shade every other shape, so its dtypes read as one group.
    shapes = [(kernel, shape) for kernel, shape, _ in cases]
    for i in range(len(cases)):
        if len(dict.fromkeys(shapes[: i + 1])) % 2 == 0:
            ax.axvspan(i - 0.5, i + 0.5, color="0.93", zorder=0, lw=0)
    ax.axhline(100, color="black", lw=1.2, zorder=1)
    ax.axhline(90, color="0.3", lw=1, ls="--", zorder=1)
    ax.set_yscale("log")
    ax.set_ylim(*ylim)
    # 90% is labelled on its line: as a tick it would overlap 100%'s.
    ax.yaxis.set_major_locator(FixedLocator([t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500)
                                             if ylim[0] <= t <= ylim[1]]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}%")
    ax.annotate("90%", (0, 90), xycoords=("axes fraction", "data"), xytext=(3, -3), textcoords="offset points",
                va="top", fontsize=8, color="0.3")
    ax.grid(axis="y", color="0.8", lw=0.6, zorder=0)
    ax.set_xlim(-0.5, len(cases) - 0.5)
    ax.set_xticks(range(len(cases)), [f"{s}/{d}" for _, s, d in cases], rotation=40, ha="right",
                  rotation_mode="anchor", fontsize=9)
    ax.set_title(title, loc="left")


def case_width(n_series):
    """Inches per case on the x axis: room for n_series dots side by side."""
    return max(0.6, 0.12 * n_series)


def plots(run_dir, seconds, pct, peers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ylabel = "% of the best copy (log scale)"
    # report.png: the apply_rotary cases that have a helix row, and the peers.
    cases = sorted({(k, s, d) for (k, v, s, d) in seconds if k == "apply_rotary" and v == "tuned"},
                   key=lambda c: order(*c))
    series = []
    for label, variants, style in SERIES:
        values = [max((p for v in variants if (p := pct((k, v, s, d))) is not None), default=None)
                  for k, s, d in cases]
        if any(v is not None for v in values):
            series.append((label, values, style))
    # variants.png: every helix variant of the scheduled kernels; apply_rotary one panel per
    # storage type (its many variants need the width), the other kernels side by side below.
    panels = []
    for kernel in VARIANT_KERNELS:
        rows = {k: p for k in seconds if k[0] == kernel and not is_roofline(k[1]) and k[1] not in peers
                and (p := pct(k)) is not None}
        if not rows:
            continue
        dtypes = sorted({d for *_, d in rows}, key=lambda d: order(kernel, "", d))
        for dtype in dtypes if kernel == "apply_rotary" else [None]:
            part = {k: p for k, p in rows.items() if dtype in (None, k[3])}
            title = f"{kernel}{'' if dtype is None else ' ' + dtype}: helix's schedule variants"
            panels.append((kernel, title, sorted({(k, s, d) for k, _, s, d in part}, key=lambda c: order(*c)),
                           sorted({v for _, v, _, _ in part}, key=lambda v: (v != "tuned", v)), part))
    values = [v for _, vs, _ in series for v in vs if v is not None] + [p for *_, rows in panels for p in rows.values()]
    if not values:
        return []
    ylim = (min(1.0, min(values) / 1.5), max(150.0, max(values) * 1.5))  # one y axis for both figures
    written = []

    if series:
        fig, ax = plt.subplots(figsize=(max(10, case_width(len(series)) * len(cases) + 3), 7))
        dot_plot(ax, cases, series, ylim, "apply_rotary: helix and its peers, per shape and storage type")
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        fig.savefig(run_dir / "report.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append("report.png")

    if panels:
        all_variants = sorted({v for *_, vs, _ in panels for v in vs}, key=lambda v: (v != "tuned", v))
        colors = list(plt.cm.tab10.colors) + list(plt.cm.tab20.colors[1::2])
        markers = "oDs^vX<>Ph*pd"
        styles = {v: dict(color=colors[i % len(colors)], marker=markers[i % len(markers)],
                          s=70 if v == "tuned" else 40) for i, v in enumerate(all_variants)}
        layout = [[p] for p in panels if p[0] == "apply_rotary"]
        others = [p for p in panels if p[0] != "apply_rotary"]
        if others:
            layout.append(others)
        width = max(10, max(sum(case_width(len(p[3])) * (len(p[2]) + 1) for p in row) for row in layout) + 3)
        fig = plt.figure(figsize=(width, 6 * len(layout)), layout="constrained")
        for subfig, row in zip([fig] if len(layout) == 1 else fig.subfigures(len(layout), 1), layout):
            axes = subfig.subplots(1, len(row), squeeze=False, width_ratios=[len(p[2]) + 1 for p in row])[0]
            for ax, (_, title, kernel_cases, variants, rows) in zip(axes, row):
                dot_plot(ax, kernel_cases, [(v, [rows.get((k, v, s, d)) for k, s, d in kernel_cases], styles[v])
                                            for v in variants], ylim, title)
            axes[0].set_ylabel(ylabel)
        # One legend: a variant is drawn alike in every panel.
        handles = [plt.scatter([], [], edgecolors="black", linewidths=0.4, **styles[v]) for v in all_variants]
        fig.legend(handles, all_variants, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                   title="helix variant")
        fig.savefig(run_dir / "variants.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append("variants.png")
    return written


def main(run_dir):
    run_dir = pathlib.Path(run_dir)
    seconds, case_bytes, rooflines, peers, errors, ctx = load(run_dir)

    def pct(k):
        return pct_of_copy(seconds, case_bytes, rooflines, k)

    rows = []
    for k in sorted(seconds, key=lambda k: (order(k[0], k[2], k[3]), k[1])):
        kernel, variant, shape, dtype = k
        if (kernel, shape, dtype) not in case_bytes:
            continue
        p = pct(k)
        speedups = []
        for peer, _ in PEERS:
            t = seconds.get((kernel, peer, shape, dtype))
            speedups.append(f"{t / seconds[k]:.2f}x" if t and variant not in peers and not is_roofline(variant)
                            else "")
        rows.append([kernel, variant, shape, dtype, f"{seconds[k] * 1e3:.3g}",
                     f"{case_bytes[kernel, shape, dtype] / seconds[k] / 1e9:.2f}",
                     f"{p:.0f}%" if p is not None else "n/a"] + speedups)

    header = ["kernel", "variant", "shape", "dtype", "ms", "GB/s", "% of copy"] + [label for _, label in PEERS]
    caches = ", ".join(f"L{c['level']} {c['type'].lower()} {c['size'] // 1024} KiB" for c in ctx.get("caches", []))
    won = {}
    for (kernel, variant, shape, dtype), t in seconds.items():
        if is_roofline(variant) and t < won.get((kernel, shape, dtype), ("", 1e30))[1]:
            won[kernel, shape, dtype] = (variant, t)
    pictures = plots(run_dir, seconds, pct, peers)
    lines = [
        f"helix_bench run of {ctx.get('date', '?')} on {ctx.get('cpu_model', '?')} ({ctx.get('host_name', '?')}), "
        f"{ctx.get('num_cpus', '?')} CPUs, caches: {caches}; helix threads {ctx.get('helix_threads', '?')}, "
        f"device {ctx.get('helix_device', '?')}.",
        "",
        "Store plans (Stores::Auto, chosen on this machine; the tuned rows run them): "
        + (", ".join(f"{k[len('store_plan_'):]}: {v}" for k, v in sorted(ctx.items()) if k.startswith("store_plan_"))
           or "none recorded"),
        "",
        "Best copy (the roofline) per case: "
        + "; ".join(f"{s}/{d}: {w[0]}" for (k, s, d), w in sorted(won.items(), key=lambda i: order(*i[0]))),
        "",
    ]
    if pictures:
        lines += ["The pictures: % of the best copy per shape and storage type (log scale; lines at 90% and 100%). "
                  "report.png: helix's tuned rows (xPos angle table), their no-table form tuned_inv_freq and the "
                  "peers, a torch peer at the faster of its two allocation modes; variants.png: every helix "
                  "variant of apply_rotary, rotate_half and sinusoidal_table.", ""]
    if "report.png" in pictures:
        lines += ["![apply_rotary: helix and its peers, % of the best copy per shape](report.png)", ""]
    if "variants.png" in pictures:
        lines += ["![helix's schedule variants, % of the best copy per shape](variants.png)", ""]
    lines += ggml_section(seconds, pct, ctx)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if errors:
        lines += ["", "Variants that could not run a case:", ""]
        lines += [f"- {'/'.join(k)}: {msg}" for k, msg in sorted(errors.items())]
    python = run_dir / "python.md"  # bench/python_peers.py's section, when it ran
    if python.exists():
        lines += ["", python.read_text()]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {', '.join(str(run_dir / f) for f in ['report.md'] + pictures)}")


if __name__ == "__main__":
    main(sys.argv[1])
