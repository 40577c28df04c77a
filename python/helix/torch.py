"""helix.torch: helix's rotary operations as PyTorch custom operators, and drop-ins for the
functions models already call.

The operators (``torch.ops.helix.*``, registered with :mod:`torch.library`) have fake
implementations, so ``torch.compile(fullgraph=True)`` traces through them without a graph
break, and autograd formulas that run helix's own backward kernels (the conjugate
rotation: for q' = s R(a) q, dq = s R(-a) dq'). Gradients flow to q and k, not to the tables
(cos, sin, freqs, scale: models keep them as buffers). Nothing is copied: the kernels read
the tensors where they are (any strides with a contiguous last dimension) and write fresh
outputs (the functional operators) or the inputs themselves (``apply_rotary_`` and
``inplace=True``). CPU tensors, and CUDA tensors on the current stream where the package
has helix's CUDA kernels (``helix._helix.has_cuda()``: builds linked with helix_cuda).

Drop-ins, exact in semantics (float32 math, one rounding to the storage type):

- HF transformers: :func:`apply_rotary_pos_emb` (Llama family, half-split) and
  :func:`gptj_apply_rotary_pos_emb` (GPT-J, interleaved); :func:`patch_transformers` puts the
  first in place of a model module's own.
- rotary-embedding-torch: :func:`rotate_queries_or_keys`.
- Zeta: :class:`SinusoidalEmbeddings` and :func:`zeta_apply_rotary_pos_emb`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

import helix

# ---- the operators --------------------------------------------------------------------------
#
# One schema serves every table form and position mode: the table is `form` with its tensors
# (first, second) and a scale (a table or a number); positions are a kind with its start or
# tensors, for q and for k ("same" = q's).

# PyTorch dtypes as DLPack (type code, bits): int 0, uint 1, float 2, bfloat 4, complex 5,
# bool 6. helix takes float32, float16, bfloat16, int32 and int64 and names the others.
_DLPACK_TYPES = {torch.float32: (2, 32), torch.float16: (2, 16), torch.bfloat16: (4, 16), torch.int32: (0, 32),
                 torch.int64: (0, 64), torch.float64: (2, 64), torch.int16: (0, 16), torch.int8: (0, 8),
                 torch.uint8: (1, 8), torch.bool: (6, 8), torch.complex64: (5, 64), torch.complex128: (5, 128)}


def _raw(t: Optional[torch.Tensor]):
    """A tensor as the extension's raw descriptor (no DLPack export: it costs more than a
    decode step's kernel)."""
    if t is None:
        return None
    return (t.data_ptr(), t.shape, t.stride(), _DLPACK_TYPES.get(t.dtype, (255, 8 * t.element_size())), t.is_cuda)


_PAIRINGS = {"half_split": helix.Pairing.HalfSplit, "interleaved": helix.Pairing.Interleaved}


def _pair_shared(scale: torch.Tensor, pairing: str) -> bool:
    if scale.shape[-1] == 1:
        return True
    if pairing == "half_split":
        half = scale.shape[-1] // 2
        return bool(torch.equal(scale[..., :half], scale[..., half:]))
    return bool(torch.equal(scale[..., 0::2], scale[..., 1::2]))


def _run(q, k, q_out, k_out, form, first, second, scale_table, scale_value, pos_kind, pos_start, pos_tensor,
         pos_offsets, k_pos_kind, k_pos_start, k_pos_tensor, k_pos_offsets, pairing, rotary_dim, conjugate, backward):
    # The gradient of q' = s R(a) q is R(-a) (s dq'), which is s R(-a) dq' (the conjugate
    # call) when both members of each pair share their scale, as xPos tables do. Checked on
    # the real tensors (not while tracing).
    if backward and scale_table is not None and not _pair_shared(scale_table, pairing):
        raise helix.Error("helix.torch.apply_rotary: scale: expected a table whose pairs share their scale (as xPos's "
                          "do) for the backward pass, given one that differs within a pair")
    if pairing not in _PAIRINGS:
        raise helix.Error(f"helix.torch.apply_rotary: pairing: expected half_split or interleaved, given {pairing!r}")
    rq, rk = _raw(q), _raw(k)
    helix._helix.apply_rotary_raw(
        rq, rk, rq if q_out is q else _raw(q_out), rk if k_out is k else _raw(k_out), form, _raw(first),
        _raw(second), _raw(scale_table), scale_value, pos_kind, pos_start, _raw(pos_tensor), _raw(pos_offsets),
        k_pos_kind, k_pos_start, _raw(k_pos_tensor), _raw(k_pos_offsets), _PAIRINGS[pairing], rotary_dim, conjugate,
        torch.cuda.current_stream(q.device).cuda_stream if q.is_cuda else 0)


# Everything after q and k, in _run's order (one schema text for both operators).
_REST = ("str form, Tensor first, Tensor? second, Tensor? scale_table, float scale_value, str pos_kind, int pos_start, "
         "Tensor? pos_tensor, Tensor? pos_offsets, str k_pos_kind, int k_pos_start, Tensor? k_pos_tensor, "
         "Tensor? k_pos_offsets, str pairing, int rotary_dim, bool conjugate, bool backward")


@torch.library.custom_op("helix::apply_rotary", mutates_args=(),
                         schema=f"(Tensor q, Tensor? k, {_REST}) -> (Tensor, Tensor)")
def _apply_rotary(q, k, *rest):
    q_out = torch.empty_like(q)
    k_out = torch.empty_like(k) if k is not None else q.new_empty(0)
    _run(q, k, q_out, k_out if k is not None else None, *rest)
    return q_out, k_out


@_apply_rotary.register_fake
def _(q, k, *args):
    return torch.empty_like(q), (torch.empty_like(k) if k is not None else q.new_empty(0))


def _setup_context(ctx, inputs, output):
    rest = inputs[2:]  # everything but q and k: the tables, positions and switches
    ctx.tensor_slots = [i for i, a in enumerate(rest) if isinstance(a, torch.Tensor)]
    ctx.plain = [None if isinstance(a, torch.Tensor) else a for a in rest]
    ctx.has_k = inputs[1] is not None
    ctx.save_for_backward(*[rest[i] for i in ctx.tensor_slots])


def _unit_last(t):
    """t with a contiguous last dimension (autograd may hand over expanded zeros)."""
    return t if t.stride(-1) == 1 and t.numel() else t.contiguous()


def _backward(ctx, grad_q, grad_k):
    args = list(ctx.plain)
    for i, t in zip(ctx.tensor_slots, ctx.saved_tensors):
        args[i] = t
    args[-2] = not args[-2]  # conjugate: the transpose of a rotation is its inverse
    args[-1] = True  # backward
    dq, dk = torch.ops.helix.apply_rotary(_unit_last(grad_q), _unit_last(grad_k) if ctx.has_k else None, *args)
    return (dq, dk if ctx.has_k else None) + (None,) * len(args)


_apply_rotary.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("helix::apply_rotary_", mutates_args=("q", "k"),
                         schema=f"(Tensor(a!) q, Tensor(b!)? k, {_REST}) -> ()")
def _apply_rotary_(q, k, *rest):
    _run(q, k, q, k, *rest)


@_apply_rotary_.register_fake
def _(*args):
    return None


@torch.library.custom_op("helix::rotate_half", mutates_args=())
def _rotate_half(x: torch.Tensor, pairing: str) -> torch.Tensor:
    return helix.rotate_half(x, pairing=pairing, out=torch.empty_like(x))


@_rotate_half.register_fake
def _(x, pairing):
    return torch.empty_like(x)


def _rotate_half_backward(ctx, grad):
    # rotate_half is the rotation by pi/2: its transpose is the rotation by -pi/2, i.e. -rotate_half.
    return -torch.ops.helix.rotate_half(_unit_last(grad), ctx.pairing), None


def _rotate_half_setup(ctx, inputs, output):
    ctx.pairing = inputs[1]


_rotate_half.register_autograd(_rotate_half_backward, setup_context=_rotate_half_setup)


# ---- the Python-facing calls ------------------------------------------------------------------


def _position_args(positions) -> list:
    """A position argument (None: aligned, an int: start, a tensor: ids, or a tuple
    ("offsets", t) / ("varlen", cu_seqlens[, offsets])) as the operators' four arguments."""
    if positions is None:
        return ["aligned", 0, None, None]
    if isinstance(positions, int):
        return ["start", positions, None, None]
    if isinstance(positions, torch.Tensor):
        return ["ids", 0, positions, None]
    kind, *tensors = positions
    tensors += [None] * (2 - len(tensors))
    return [kind, 0, tensors[0], tensors[1]]


def apply_rotary(
    q: torch.Tensor,
    k: Optional[torch.Tensor] = None,
    *,
    freqs: Optional[torch.Tensor] = None,
    cos: Optional[torch.Tensor] = None,
    sin: Optional[torch.Tensor] = None,
    cos_sin_cache: Optional[torch.Tensor] = None,
    inv_freq: Optional[torch.Tensor] = None,
    scale=None,
    positions=None,
    k_positions="same",
    pairing: str = "half_split",
    rotary_dim: int = 0,
    conjugate: bool = False,
    inplace: bool = False,
):
    """Rotates q (and k) by one table form: ``freqs`` (angles), ``cos`` and ``sin``,
    ``cos_sin_cache`` or ``inv_freq`` (no table), with ``scale`` (None, a number or an xPos
    table: q times it, k divided by it). ``positions``: None (Zeta's alignment), an int
    (start), a tensor of position ids, ``("offsets", t)`` or ``("varlen", cu_seqlens[,
    offsets])``; ``k_positions`` likewise, "same" for q's. Differentiable in q and k;
    ``inplace`` writes q and k themselves (no autograd). Returns (q', k')."""
    forms = {"angles": freqs, "cos_sin": cos, "cos_sin_cache": cos_sin_cache, "inv_freq": inv_freq}
    given = [f for f, t in forms.items() if t is not None]
    if len(given) != 1:
        raise helix.Error(f"helix.torch.apply_rotary: table: expected exactly one of freqs, cos/sin, "
                          f"cos_sin_cache or inv_freq, given {', '.join(given) or 'none'}")
    form = given[0]
    scale_table = scale if isinstance(scale, torch.Tensor) else None
    scale_value = 1.0 if scale is None or scale_table is not None else float(scale)
    k_args = ["same", 0, None, None] if isinstance(k_positions, str) and k_positions == "same" else _position_args(k_positions)
    args = [form, forms[form], sin, scale_table, scale_value, *_position_args(positions), *k_args, pairing,
            rotary_dim, conjugate, False]
    # Eager inference skips the dispatcher (~10 us a call, five times a decode step's kernel):
    # the operators are for autograd and for torch.compile, which trace them.
    direct = not torch.compiler.is_compiling() and not (
        torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad)))
    if inplace:
        if direct:
            _run(q, k, q, k, *args)
        else:
            torch.ops.helix.apply_rotary_(q, k, *args)
        return q, k
    if direct:
        q_out, k_out = torch.empty_like(q), (torch.empty_like(k) if k is not None else None)
        _run(q, k, q_out, k_out, *args)
        return q_out, k_out
    q_out, k_out = torch.ops.helix.apply_rotary(q, k, *args)
    return q_out, (k_out if k is not None else None)


def rotate_half(x: torch.Tensor, pairing: str = "half_split") -> torch.Tensor:
    """Zeta's rotate_half (half-split) or GPT-J's rotate_every_two (interleaved); differentiable."""
    return torch.ops.helix.rotate_half(x, pairing)


# ---- drop-ins -----------------------------------------------------------------------------------


def _rows_table(c: torch.Tensor, s: torch.Tensor, half: bool):
    """HF's per-sequence (b, seq, width) cos and sin as one float32 table of b * seq rows
    (half: the first half of each row, HF's halves being equal) and the positions that pick
    sequence b's rows: offsets b * seq (or row i for all when the batch is 1 or broadcasts).
    Views where it can (a decode step pays for every tensor operation here)."""
    width = c.shape[-1]
    positions = 0
    if c.dim() == 3 and c.shape[0] > 1:
        b, seq = c.shape[0], c.shape[1]
        c, s = c.reshape(b * seq, width), s.reshape(b * seq, width)
        positions = ("offsets", torch.arange(0, b * seq, seq, dtype=torch.int64))
    elif c.dim() == 3:
        c, s = c[0], s[0]
    if half:
        c, s = c[:, : width // 2], s[:, : width // 2]
    if c.dtype != torch.float32:  # helix's tables are float32 (HF's bfloat16 cos is exact in it)
        c, s = c.float(), s.float()
    return c, s, positions


def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    """HF transformers' Llama ``apply_rotary_pos_emb``: ``q * cos + rotate_half(q) * sin``
    with cos and sin ``(b, seq, d)`` (or ``(seq, d)``) unsqueezed at ``unsqueeze_dim`` (1:
    q ``(b, h, seq, d)``; 2: ``(b, seq, h, d)``). position_ids is ignored, as HF ignores it."""
    if unsqueeze_dim == 2:  # (b, seq, h, d): the (b, h, seq, d) view of the same memory
        q2, k2 = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        return q2.transpose(1, 2), k2.transpose(1, 2)
    if unsqueeze_dim != 1:
        raise helix.Error(f"helix.torch.apply_rotary_pos_emb: unsqueeze_dim: expected 1 or 2, given {unsqueeze_dim}")
    c, s, positions = _rows_table(cos, sin, half=True)
    return apply_rotary(q, k, cos=c, sin=s, positions=positions)


def gptj_apply_rotary_pos_emb(tensor, sin, cos):
    """HF transformers' GPT-J ``apply_rotary_pos_emb(tensor, sin, cos)``: tensor ``(b, seq,
    h, rotary_dim)``, sin and cos ``(b, seq, rotary_dim / 2)``, pairs (2i, 2i + 1)."""
    c, s, positions = _rows_table(cos, sin, half=False)
    out, _ = apply_rotary(tensor.transpose(1, 2), None, cos=c, sin=s, positions=positions, pairing="interleaved")
    return out.transpose(1, 2)


def rotate_queries_or_keys(rotary_emb, t, seq_dim=None, offset=0, scale=None):
    """rotary-embedding-torch's ``RotaryEmbedding.rotate_queries_or_keys`` for the options
    that map (language frequencies, no xPos, interpolate_factor 1, sequence dimension -2 or
    -3): its ``freqs`` as helix's inv_freq form, positions ``offset + i`` (exact integers,
    where the library forms them in t's dtype: the same below 2^8 in bfloat16 and 2^11 in
    float16), interleaved pairs, its first ``2 * len(freqs)`` features rotated."""
    seq_dim = rotary_emb.default_seq_dim if seq_dim is None else seq_dim
    if rotary_emb.use_xpos or rotary_emb.freqs_for != "lang" or rotary_emb.interpolate_factor != 1.0 or scale is not None:
        raise helix.Error("helix.torch.rotate_queries_or_keys: rotary_emb: expected language frequencies without xPos, "
                          "interpolation or scale")
    if seq_dim not in (-2, -3):
        raise helix.Error(f"helix.torch.rotate_queries_or_keys: seq_dim: expected -2 or -3, given {seq_dim}")
    x = t if seq_dim == -2 else t.transpose(-2, -3)
    inv = rotary_emb.freqs.detach().float()
    out, _ = apply_rotary(x, None, inv_freq=inv, positions=offset, pairing="interleaved", rotary_dim=2 * inv.shape[0])
    return out if seq_dim == -2 else out.transpose(-2, -3)


class SinusoidalEmbeddings(torch.nn.Module):
    """Zeta's ``SinusoidalEmbeddings(dim, scale_base=None, use_xpos=False)`` (theta 10000):
    ``forward(x)`` returns ``(freqs, scale)`` for ``x.shape[-2]`` positions, on x's device."""

    def __init__(self, dim, scale_base=None, use_xpos=False, theta=10000.0):
        super().__init__()
        self.emb = helix.SinusoidalEmbeddings(dim, scale_base, use_xpos, theta)

    def forward(self, x):
        freqs, scale = self.emb.forward(seq_len=x.shape[-2], like=x)
        return freqs, (scale if self.emb.use_xpos else torch.ones(1, device=x.device))


def zeta_apply_rotary_pos_emb(q, k, freqs, scale=1):
    """Zeta's ``apply_rotary_pos_emb(q, k, freqs, scale=1)``: q on the last rows of freqs, k
    on all of them, q times scale and k divided by it; differentiable in q and k."""
    if isinstance(scale, torch.Tensor) and scale.numel() == 1:
        scale = float(scale)
    return apply_rotary(q, k, freqs=freqs, scale=scale)


def patch_transformers(module) -> None:
    """Puts :func:`apply_rotary_pos_emb` in place of a transformers model module's own
    (e.g. ``transformers.models.llama.modeling_llama``): every attention layer of the models
    it defines then rotates with helix."""
    module.apply_rotary_pos_emb = apply_rotary_pos_emb


__all__: List[str] = [
    "SinusoidalEmbeddings",
    "apply_rotary",
    "apply_rotary_pos_emb",
    "gptj_apply_rotary_pos_emb",
    "patch_transformers",
    "rotate_half",
    "rotate_queries_or_keys",
    "zeta_apply_rotary_pos_emb",
]
