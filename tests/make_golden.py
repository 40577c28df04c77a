#!/usr/bin/env python3
"""Regenerates tests/golden/: helix's reference semantics run in PyTorch (float32, CPU).

The functions below are Zeta's SinusoidalEmbeddings, rotate_half and apply_rotary_pos_emb
(lucidrains' local-attention), with two changes SPEC section 1 states: theta is a parameter
(Zeta fixes 10000) and a scalar or absent scale works (Zeta's default crashes).

Each array is written as raw little-endian float32 to <name>.f32 and listed in MANIFEST as
"<name> <dim0> <dim1> ..." (integer arrays too: positions, offsets and cu_seqlens are small
integers, exact in float32). Torch is optional for helix (this script alone needs it):
    python -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy transformers==4.57.6
    /tmp/torch/bin/python tests/make_golden.py
"""
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent / "golden"


class SinusoidalEmbeddings(torch.nn.Module):
    def __init__(self, dim, scale_base=None, use_xpos=False, theta=10000):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)
        self.use_xpos = use_xpos
        self.scale_base = scale_base
        assert not (use_xpos and scale_base is None), "scale_base must be set when use_xpos is true"
        scale = (torch.arange(0, dim, 2) + 0.4 * dim) / (1.4 * dim)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, x):
        seq_len = x.shape[-2]
        t = torch.arange(seq_len, device=x.device).type_as(self.inv_freq)
        freqs = torch.einsum("i , j -> i j", t, self.inv_freq)
        freqs = torch.cat((freqs, freqs), dim=-1)
        if not self.use_xpos:
            return freqs, torch.ones(1, device=x.device)
        power = (t - (seq_len // 2)) / self.scale_base
        scale = self.scale ** power[:, None]
        scale = torch.cat((scale, scale), dim=-1)
        return freqs, scale


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


# The other pairing and partial rotary, as the peers write them.
def rotate_every_two(x):
    """HF GPT-J's rotate_every_two: pairs (2i, 2i + 1)."""
    x1 = x[..., ::2]
    x2 = x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def interleaved_tables(dim, seq_len, scale_base=None, theta=10000):
    """rotary-embedding-torch's interleaved layout: each frequency repeated (f0 f0 f1 f1 ...)."""
    emb = SinusoidalEmbeddings(dim, scale_base=scale_base, use_xpos=scale_base is not None, theta=theta)
    t = torch.arange(seq_len).type_as(emb.inv_freq)
    freqs = torch.einsum("i , j -> i j", t, emb.inv_freq).repeat_interleave(2, dim=-1)
    if scale_base is None:
        return freqs, torch.ones(1)
    power = (t - (seq_len // 2)) / scale_base
    return freqs, (emb.scale ** power[:, None]).repeat_interleave(2, dim=-1)


def apply_rotary_partial(q, k, freqs, scale=1, rotate=rotate_half):
    """rotary-embedding-torch / HF partial rotary: the first freqs.shape[-1] features rotate
    (with `rotate`'s pairing), the rest pass through."""
    rot = freqs.shape[-1]
    q_len = q.shape[-2]
    inv_scale = scale**-1
    q_scale = scale[-q_len:, :] if isinstance(scale, torch.Tensor) and scale.ndim == 2 else scale
    q_freqs = freqs[-q_len:, :]

    def rotated(x, f, s):
        x_rot, x_pass = x[..., :rot], x[..., rot:]
        return torch.cat(((x_rot * f.cos() * s) + (rotate(x_rot) * f.sin() * s), x_pass), dim=-1)

    return rotated(q, q_freqs, q_scale), rotated(k, freqs, inv_scale)


def apply_rotary_pos_emb(q, k, freqs, scale=1):
    q_len = q.shape[-2]
    q_freqs = freqs[..., -q_len:, :]
    inv_scale = scale**-1
    if isinstance(scale, torch.Tensor) and scale.ndim == 2:
        scale = scale[-q_len:, :]
    q = (q * q_freqs.cos() * scale) + (rotate_half(q) * q_freqs.sin() * scale)
    k = (k * freqs.cos() * inv_scale) + (rotate_half(k) * freqs.sin() * inv_scale)
    return q, k


# Positions, table forms and the backward pass, as the peers' PyTorch references write
# them (CPU-runnable).
def fa_rotate_half(x, interleaved):
    """flash-attention's rotate_half (flash_attn/layers/rotary.py)."""
    if not interleaved:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def fa_apply_rotary_emb_torch(x, cos, sin, interleaved=False):
    """flash-attention's apply_rotary_emb_torch: x (b, s, h, d), cos and sin (s, rotary_dim / 2)
    or (b, s, rotary_dim / 2), each column repeated for the two members of its pair
    (einops "... d -> ... 1 (2 d)", or "(d 2)" interleaved)."""
    ro_dim = cos.shape[-1] * 2
    widen = (lambda t: t.repeat_interleave(2, dim=-1)) if interleaved else (lambda t: torch.cat((t, t), dim=-1))
    cos, sin = widen(cos).unsqueeze(-2), widen(sin).unsqueeze(-2)
    rot = x[..., :ro_dim]
    return torch.cat([rot * cos + fa_rotate_half(rot, interleaved) * sin, x[..., ro_dim:]], dim=-1)


def cos_sin_tables(rotary_dim, n, theta=10000):
    """flash-attention's and vLLM's tables: cos and sin of t * inv_freq, (n, rotary_dim / 2)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    freqs = torch.einsum("i,j->ij", torch.arange(n, dtype=torch.float), inv_freq)
    return freqs.cos(), freqs.sin()


def vllm_forward_native(positions, query, key, head_size, cos_sin_cache, rotary_dim, is_neox_style):
    """vLLM's RotaryEmbedding.forward_native: the cache rows of the token positions, the
    first rotary_dim features of each head rotated (NeoX: halves; GPT-J: even/odd)."""
    cos, sin = cos_sin_cache.index_select(0, positions.flatten()).chunk(2, dim=-1)

    def rotate(x):
        shape = x.shape
        x = x.view(positions.numel(), -1, head_size)
        x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
        c, s = cos.unsqueeze(-2), sin.unsqueeze(-2)
        if is_neox_style:
            x1, x2 = torch.chunk(x_rot, 2, dim=-1)
        else:
            x1, x2 = x_rot[..., ::2], x_rot[..., 1::2]
        o1, o2 = x1 * c - x2 * s, x2 * c + x1 * s
        o = torch.cat((o1, o2), dim=-1) if is_neox_style else torch.stack((o1, o2), dim=-1).flatten(-2)
        return torch.cat((o, x_pass), dim=-1).reshape(shape)

    return rotate(query), rotate(key)


def main():
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.f32"):
        old.unlink()
    manifest = []
    gen = torch.Generator().manual_seed(20261128)

    def save(name, tensor):
        tensor = tensor.detach().contiguous().to(torch.float32)
        tensor.numpy().astype("<f4").tofile(OUT / f"{name}.f32")
        manifest.append(" ".join([name] + [str(s) for s in tensor.shape]))

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    # The seed's usage examples.
    emb = SinusoidalEmbeddings(dim=512, use_xpos=True, scale_base=1000)
    freqs, scale = emb(torch.zeros(1, 10, 512))
    save("seed_sinusoidal_freqs", freqs)
    save("seed_sinusoidal_scale", scale)

    x = randn(2, 3, 4)
    save("seed_rotate_half_x", x)
    save("seed_rotate_half_out", rotate_half(x))

    q, k = randn(2, 3, 4), randn(2, 3, 4)
    freqs, scale = randn(3, 4), torch.rand(3, 4, generator=gen) + 0.5
    save("seed_apply_q", q)
    save("seed_apply_k", k)
    save("seed_apply_freqs", freqs)
    save("seed_apply_scale", scale)
    q2, k2 = apply_rotary_pos_emb(q, k, freqs, scale)
    save("seed_apply_q_out", q2)
    save("seed_apply_k_out", k2)

    # inv_freq across widths and bases: row 1 of the table is inv_freq itself. PyTorch's
    # own float32 answer depends on the tensor's length: its vectorized loop (Sleef powf,
    # within 1 ulp) takes whole blocks of 2 vectors and libm powf the rest. "_elementwise"
    # evaluates each element alone, which always takes libm's path.
    for dim in (2, 64, 80, 128, 256, 512):
        for theta in (10000, 500000, 1000000):
            freqs, _ = SinusoidalEmbeddings(dim, theta=theta)(torch.zeros(2, dim))
            save(f"inv_freq_d{dim}_theta{theta}", freqs[1])
            exponent = torch.arange(0, dim, 2).float() / dim
            alone = torch.stack([1.0 / (theta ** exponent[i : i + 1])[0] for i in range(dim // 2)])
            save(f"inv_freq_d{dim}_theta{theta}_elementwise", alone)

    # Long tables with xPos (small scale_base: large exponents), and a shorter query.
    emb = SinusoidalEmbeddings(dim=16, use_xpos=True, scale_base=64, theta=10000)
    freqs, scale = emb(torch.zeros(2048, 16))
    save("xpos_d16_n2048_freqs", freqs)
    save("xpos_d16_n2048_scale", scale)
    q, k = randn(2, 2, 50, 16), randn(1, 1, 2048, 16)
    q2, k2 = apply_rotary_pos_emb(q, k, freqs, scale)
    save("xpos_d16_n2048_q", q)
    save("xpos_d16_n2048_k", k)
    save("xpos_d16_n2048_q_out", q2)
    save("xpos_d16_n2048_k_out", k2)

    # No xPos, a Llama-3-like base, scale absent (= 1).
    emb = SinusoidalEmbeddings(dim=128, theta=500000)
    freqs, _ = emb(torch.zeros(40, 128))
    q, k = randn(1, 3, 7, 128), randn(1, 1, 40, 128)
    q2, k2 = apply_rotary_pos_emb(q, k, freqs)
    save("plain_d128_theta500000_freqs", freqs)
    save("plain_d128_theta500000_q", q)
    save("plain_d128_theta500000_k", k)
    save("plain_d128_theta500000_q_out", q2)
    save("plain_d128_theta500000_k_out", k2)

    # GPT-J's rotate_every_two.
    x = randn(2, 3, 8)
    save("gptj_rotate_every_two_x", x)
    save("gptj_rotate_every_two_out", rotate_every_two(x))

    # Interleaved tables with xPos and their rotation (rotary-embedding-torch's layout).
    freqs, scale = interleaved_tables(16, 64, scale_base=32)
    q, k = randn(1, 2, 10, 16), randn(1, 1, 64, 16)
    q2, k2 = apply_rotary_partial(q, k, freqs, scale, rotate=rotate_every_two)
    for name, tensor in (("freqs", freqs), ("scale", scale), ("q", q), ("k", k), ("q_out", q2), ("k_out", k2)):
        save(f"interleaved_xpos_d16_n64_{name}", tensor)

    # Partial rotary (GPT-NeoX / Phi style): 8 of 24 features, half-split; and 12 of 20,
    # interleaved. The rest pass through.
    for prefix, d, rot, interleaved in (("partial_neox_d24_r8", 24, 8, False), ("partial_interleaved_d20_r12", 20, 12, True)):
        if interleaved:
            freqs, _ = interleaved_tables(rot, 12, theta=10000)
        else:
            freqs, _ = SinusoidalEmbeddings(rot)(torch.zeros(12, rot))
        q, k = randn(1, 2, 5, d), randn(1, 1, 12, d)
        q2, k2 = apply_rotary_partial(q, k, freqs, rotate=rotate_every_two if interleaved else rotate_half)
        for name, tensor in (("freqs", freqs), ("q", q), ("k", k), ("q_out", q2), ("k_out", k2)):
            save(f"{prefix}_{name}", tensor)

    # flash-attention, per-sequence offsets (seqlen_offsets): sequence b uses the table rows
    # [offsets[b], offsets[b] + s); the last one ends at the table's last row. Partial rotary.
    for interleaved in (False, True):
        prefix = f"fa_offsets_{'interleaved' if interleaved else 'half_split'}"
        cos, sin = cos_sin_tables(16, 40)
        x, offsets = randn(3, 5, 2, 24), torch.tensor([0, 7, 35])
        out = torch.stack([fa_apply_rotary_emb_torch(x[b : b + 1], cos[o : o + 5], sin[o : o + 5], interleaved)[0]
                           for b, o in enumerate(offsets.tolist())])
        for name, tensor in (("x", x), ("cos", cos), ("sin", sin), ("offsets", offsets), ("out", out)):
            save(f"{prefix}_{name}", tensor)

    # flash-attention varlen: packed sequences of lengths 1, 3, 0 and 7 (cu_seqlens), token i of
    # sequence s at offsets[s] + i.
    cos, sin = cos_sin_tables(16, 20)
    cu_seqlens, offsets, x = torch.tensor([0, 1, 4, 4, 11]), torch.tensor([2, 0, 5, 13]), randn(11, 2, 16)
    out = torch.cat([fa_apply_rotary_emb_torch(x[None, cu_seqlens[i] : cu_seqlens[i + 1]],
                                               cos[o : o + int(cu_seqlens[i + 1] - cu_seqlens[i])],
                                               sin[o : o + int(cu_seqlens[i + 1] - cu_seqlens[i])])[0]
                     for i, o in enumerate(offsets.tolist())])
    for name, tensor in (("x", x), ("cos", cos), ("sin", sin), ("cu_seqlens", cu_seqlens), ("offsets", offsets),
                         ("out", out)):
        save(f"fa_varlen_{name}", tensor)

    # vLLM: unsorted, repeated token positions into cos_sin_cache; partial rotary (16 of 32).
    cos, sin = cos_sin_tables(16, 64)
    cache = torch.cat((cos, sin), dim=-1)
    positions = torch.tensor([5, 0, 63, 5, 17, 17, 2, 40, 63])
    for neox in (True, False):
        prefix = f"vllm_{'neox' if neox else 'gptj'}"
        query, key = randn(9, 4 * 32), randn(9, 2 * 32)
        q2, k2 = vllm_forward_native(positions, query, key, 32, cache, 16, neox)
        for name, tensor in (("positions", positions), ("cache", cache), ("query", query), ("key", key),
                             ("query_out", q2), ("key_out", k2)):
            save(f"{prefix}_{name}", tensor)

    # The backward pass: torch.autograd through Zeta's apply_rotary_pos_emb with xPos, and
    # through flash-attention's (interleaved, per-sequence offsets).
    emb = SinusoidalEmbeddings(dim=16, use_xpos=True, scale_base=32)
    freqs, scale = emb(torch.zeros(10, 16))
    q, k = randn(1, 2, 6, 16).requires_grad_(), randn(1, 1, 10, 16).requires_grad_()
    grad_q, grad_k = randn(1, 2, 6, 16), randn(1, 1, 10, 16)
    q2, k2 = apply_rotary_pos_emb(q, k, freqs, scale)
    torch.autograd.backward((q2, k2), (grad_q, grad_k))
    for name, tensor in (("freqs", freqs), ("scale", scale), ("grad_q_out", grad_q), ("grad_k_out", grad_k),
                         ("grad_q", q.grad), ("grad_k", k.grad)):
        save(f"backward_zeta_xpos_{name}", tensor)
    cos, sin = cos_sin_tables(16, 12)
    x, offsets, grad = randn(2, 4, 2, 16).requires_grad_(), torch.tensor([3, 8]), randn(2, 4, 2, 16)
    out = torch.stack([fa_apply_rotary_emb_torch(x[b : b + 1], cos[o : o + 4], sin[o : o + 4], True)[0]
                       for b, o in enumerate(offsets.tolist())])
    out.backward(grad)
    for name, tensor in (("cos", cos), ("sin", sin), ("offsets", offsets), ("grad_out", grad), ("grad_x", x.grad)):
        save(f"backward_fa_interleaved_{name}", tensor)

    scaling_goldens(save, randn)

    (OUT / "MANIFEST").write_text("\n".join(manifest) + "\n")
    print(f"wrote {len(manifest)} arrays to {OUT} with torch {torch.__version__}")


# Frequency scaling as HF transformers itself computes it: its ROPE_INIT_FUNCTIONS and the
# rotary embedding modules of the models (the pinned version: rope_scaling's semantics
# changed across versions). Configs: real model families' rope_scaling (Phi-3.5-mini's
# LongRoPE factors from its config.json).
TRANSFORMERS_VERSION = "4.57.6"
PHI35_SHORT = [1.0, 1.0199999809265137, 1.0299999713897705, 1.0299999713897705, 1.0499999523162842,
               1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0699999332427979,
               1.0999999046325684, 1.1099998950958252, 1.1599998474121094, 1.1599998474121094, 1.1699998378753662,
               1.2899998426437378, 1.339999794960022, 1.679999828338623, 1.7899998426437378, 1.8199998140335083,
               1.8499997854232788, 1.8799997568130493, 1.9099997282028198, 1.9399996995925903, 1.9899996519088745,
               2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346,
               2.0199997425079346, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914,
               2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914,
               2.0799996852874756, 2.0899996757507324, 2.189999580383301, 2.2199995517730713, 2.5899994373321533,
               2.729999542236328, 2.749999523162842, 2.8399994373321533]
PHI35_LONG = [1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601, 1.5899999141693115,
              1.600000023841858, 1.6200000047683716, 2.620000123977661, 3.2300000190734863, 3.2300000190734863,
              4.789999961853027, 7.400000095367432, 7.700000286102295, 9.09000015258789, 12.199999809265137,
              17.670000076293945, 24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523,
              32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992, 50.340003967285156,
              50.45000457763672, 57.55000305175781, 57.93000411987305, 58.21000289916992, 60.1400032043457,
              62.61000442504883, 62.62000274658203, 62.71000289916992, 63.1400032043457, 63.1400032043457,
              63.77000427246094, 63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688,
              64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938, 64.4800033569336,
              64.51000213623047, 64.52999877929688, 64.83999633789062]
# name: (head_dim, theta, max_position_embeddings, rope_scaling, extra config, sequence lengths)
SCALING_CASES = {
    "linear": (128, 10000.0, 4096, {"rope_type": "linear", "factor": 4.0}, {}, [16384]),
    "dynamic": (128, 10000.0, 4096, {"rope_type": "dynamic", "factor": 2.0}, {}, [2048, 8192, 16384]),
    "llama31": (128, 500000.0, 131072, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, {}, [131072]),
    "qwen25_yarn": (128, 1000000.0, 131072, {"rope_type": "yarn", "factor": 4.0,
                                             "original_max_position_embeddings": 32768}, {}, [131072]),
    "deepseek_v2_yarn": (64, 10000.0, 163840, {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                                               "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707,
                                               "mscale_all_dim": 0.707}, {}, [163840]),
    "yarn_mscale_ratio": (64, 10000.0, 16384, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096,
                                               "mscale": 1.0, "mscale_all_dim": 0.5, "truncate": False}, {}, [16384]),
    "phi35_longrope": (96, 10000.0, 131072, {"rope_type": "longrope", "short_factor": PHI35_SHORT,
                                             "long_factor": PHI35_LONG},
                       {"original_max_position_embeddings": 4096}, [4096, 8192]),
}


def scaling_goldens(save, randn):
    import transformers
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as hf_apply

    assert transformers.__version__ == TRANSFORMERS_VERSION, transformers.__version__
    for name, (dim, theta, max_pos, rope_scaling, extra, seq_lens) in SCALING_CASES.items():
        config = LlamaConfig(hidden_size=dim * 2, num_attention_heads=2, head_dim=dim, rope_theta=theta,
                             max_position_embeddings=max_pos, rope_scaling=dict(rope_scaling), **extra)
        for key in ("short_factor", "long_factor"):
            if key in rope_scaling:  # float32 values (Phi-3.5's config), exact as float32
                save(f"scaling_{name}_{key}", torch.tensor(rope_scaling[key], dtype=torch.float32))
        for seq_len in seq_lens:
            tag = f"scaling_{name}_n{seq_len}"
            inv_freq, attention = ROPE_INIT_FUNCTIONS[rope_scaling["rope_type"]](config, "cpu", seq_len=seq_len)
            save(f"{tag}_inv_freq", inv_freq)
            save(f"{tag}_attention", torch.tensor([attention], dtype=torch.float32))
            # A rotation by the model's own module (a fresh one: dynamic and longrope keep
            # state), at positions up to seq_len - 1 (which sets HF's sequence length).
            rope = LlamaRotaryEmbedding(config)
            picks = [0, 1, 777, seq_len // 3, seq_len // 2 + 1, seq_len - 2, seq_len - 1]
            positions = torch.tensor(picks)[None, :]
            q, k = randn(1, 2, len(picks), dim), randn(1, 1, len(picks), dim)
            cos, sin = rope(q, positions)
            q2, k2 = hf_apply(q, k, cos, sin)
            for part, tensor in (("positions", positions[0]), ("q", q), ("k", k), ("q_out", q2), ("k_out", k2)):
                save(f"{tag}_{part}", tensor)


if __name__ == "__main__":
    main()
