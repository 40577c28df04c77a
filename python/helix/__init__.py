"""helix: sinusoidal and rotary positional embeddings (RoPE) on AOT-compiled Halide kernels.

Zeta's ``SinusoidalEmbeddings``, ``rotate_half`` and ``apply_rotary_pos_emb`` and every switch
of the C++ API (dtypes, pairing, partial rotary, positions, table forms, backward, frequency
scaling), over any DLPack array: NumPy, PyTorch, JAX. Nothing is copied: the kernels read the
caller's arrays where they are and write outputs allocated in the caller's framework (or the
``out`` arrays given, or the inputs themselves with ``in_place=True``). Kernels run with the
GIL released; PyTorch CUDA tensors (with a build that has helix's CUDA kernels:
``helix._helix.has_cuda()``) on the caller's current stream. Bad input raises :class:`helix.Error` with the C++ message.

Shapes are PyTorch's: ``(b, h, n, d)`` with ``d`` contiguous. Read-only arrays (JAX) are
inputs only; their outputs are NumPy arrays.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

from . import _helix
from ._helix import AngleMode, Error, Pairing, Positions, RopeScaling, RotaryTable, Stores

__all__ = [
    "AngleMode",
    "Error",
    "Pairing",
    "Positions",
    "RopeScaling",
    "RotaryTable",
    "SinusoidalEmbeddings",
    "Stores",
    "apply_rotary_pos_emb",
    "kernel_element_types",
    "rotate_half",
    "set_num_threads",
]

kernel_element_types = _helix.kernel_element_types
set_num_threads = _helix.set_num_threads

_PAIRINGS = {"half_split": Pairing.HalfSplit, "interleaved": Pairing.Interleaved}
_ANGLES = {"fp32": AngleMode.Fp32, "accurate": AngleMode.Accurate}
_STORES = {"auto": Stores.Auto, "ordinary": Stores.Ordinary, "streaming": Stores.Streaming}


def _choice(value, names: dict, what: str):
    if isinstance(value, str):
        if value not in names:
            raise Error(f"helix: {what}: expected one of {', '.join(names)}, given {value!r}")
        return names[value]
    return value


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _empty(like, shape, dtype=None):
    """An uninitialised array of `shape` in the framework and on the device of `like`
    (PyTorch, NumPy; anything else: NumPy), with like's dtype unless `dtype` ("float32")."""
    if _is_torch(like):
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype) if dtype else like.dtype, device=like.device)
    import numpy as np

    writable = isinstance(like, np.ndarray)
    return np.empty(shape, dtype=dtype or (like.dtype if writable else np.asarray(like).dtype))


def _stream(x) -> int:
    """The caller's current CUDA stream for a PyTorch CUDA tensor; 0 otherwise (for other
    frameworks' device arrays: the context's default stream)."""
    if _is_torch(x) and x.is_cuda:
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream
    return 0


def _array(x):
    """What the extension takes: any DLPack array; PyTorch tensors that require grad are
    detached (helix's own autograd lives in helix.torch)."""
    if _is_torch(x) and x.requires_grad:
        return x.detach()
    return x


def _positions(p) -> Positions:
    """None (Zeta's alignment), an int (start), or a Positions."""
    if p is None:
        return Positions()
    if isinstance(p, int):
        return Positions.start(p)
    return p


class SinusoidalEmbeddings:
    """Zeta's SinusoidalEmbeddings: the angle table ``freqs (N, dim)`` and the xPos ``scale``.

    ``inv_freq[i] = 1 / theta^(2i / dim)`` (float32, then scaled by ``scaling``, a
    :class:`RopeScaling`), ``freqs[n, j] = n * inv_freq[i(j)]``, and with ``use_xpos``
    ``scale[n, j] = zeta[i(j)] ^ ((n - N // 2) / scale_base)``. ``pairing`` ("half_split" or
    "interleaved") lays the table out for that pairing; ``angles`` ("fp32" or "accurate")
    forms the angle as PyTorch does or in double, reduced mod 2 pi.
    """

    def __init__(
        self,
        dim: int,
        scale_base: Optional[float] = None,
        use_xpos: bool = False,
        theta: float = 10000.0,
        *,
        pairing: Union[str, Pairing] = "half_split",
        scaling: Optional[RopeScaling] = None,
        angles: Union[str, AngleMode] = "fp32",
    ):
        self._emb = _helix.SinusoidalEmbeddings(
            dim,
            scale_base,
            use_xpos,
            theta,
            _choice(pairing, _PAIRINGS, "pairing"),
            scaling if scaling is not None else RopeScaling(),
            _choice(angles, _ANGLES, "angles"),
        )

    def forward(self, x: Any = None, *, seq_len: Optional[int] = None, like: Any = None):
        """``(freqs, scale)`` for ``N = x.shape[-2]`` positions (only x's shape is read, as in
        Zeta) or ``seq_len``, allocated like ``x`` (or ``like``; default NumPy). ``scale`` is
        ``(N, dim)`` with xPos, else a one-element array holding 1."""
        if seq_len is None:
            if x is None:
                raise Error("helix::SinusoidalEmbeddings: x: expected an array or seq_len, given neither")
            seq_len = x.shape[-2]
        return self._tables(seq_len, like if like is not None else x, lambda f, s: self._emb.forward_into(seq_len, f, s))

    __call__ = forward

    def window(self, seq_len: int, start: int, rows: int, *, like: Any = None):
        """Rows ``[start, start + rows)`` of the tables of a ``seq_len``-position sequence
        (for example the newest row while decoding), allocated like ``like``."""
        return self._tables(rows, like, lambda f, s: self._emb.window_into(seq_len, start, f, s))

    def _tables(self, rows: int, like: Any, fill):
        """(freqs, scale) of `rows` rows allocated like `like` (default NumPy), filled by fill."""
        if like is None:
            import numpy as np

            like = np.empty(0, np.float32)
        freqs = _empty(like, (rows, self._emb.dim), "float32")
        scale = _empty(like, (rows, self._emb.dim) if self._emb.use_xpos else (1,), "float32")
        fill(_array(freqs), _array(scale))
        return freqs, scale

    def inv_freq(self, seq_len: int = 0):
        """The frequencies ``(dim / 2,)`` float32 (NumPy) of a table of seq_len rows."""
        return self._emb.inv_freq(seq_len)

    def inv_freq_f64(self, seq_len: int = 0):
        """The same frequencies in double throughout (AngleMode.Accurate's), a list."""
        return self._emb.inv_freq_f64(seq_len)

    def table(self, seq_len: int, scale: Any = None) -> RotaryTable:
        """The no-table form for q and k of a seq_len-row sequence: the kernels form the
        angles from the positions (with this embedding's scaling, angle mode, attention
        factor and xPos)."""
        return RotaryTable.from_embedding(self._emb, seq_len, scale)

    attention_factor = property(lambda self: self._emb.attention_factor)
    dim = property(lambda self: self._emb.dim)
    theta = property(lambda self: self._emb.theta)
    use_xpos = property(lambda self: self._emb.use_xpos)
    scale_base = property(lambda self: self._emb.scale_base)
    pairing = property(lambda self: self._emb.pairing)
    scaling = property(lambda self: self._emb.scaling)
    angle_mode = property(lambda self: self._emb.angle_mode)


def rotate_half(x, *, pairing: Union[str, Pairing] = "half_split", out=None, in_place: bool = False):
    """``cat(-x2, x1)`` on the last dimension (half-split), or GPT-J's rotate_every_two
    ``(x0, x1) -> (-x1, x0)`` per pair (interleaved). Rank 1 to 4. Into ``out`` (or ``x``
    itself with ``in_place``); returns the result."""
    if in_place:
        out = x
    elif out is None:
        out = _empty(x, tuple(x.shape))
    _helix.rotate_half_into(_array(x), _array(out), _choice(pairing, _PAIRINGS, "pairing"), _stream(x))
    return out


def apply_rotary_pos_emb(
    q,
    k=None,
    freqs=None,
    scale=None,
    *,
    table: Optional[RotaryTable] = None,
    positions: Union[None, int, Positions] = None,
    k_positions: Union[None, int, Positions] = None,
    pairing: Union[str, Pairing] = "half_split",
    rotary_dim: int = 0,
    conjugate: bool = False,
    stores: Union[str, Stores] = "auto",
    q_out=None,
    k_out=None,
    in_place: bool = False,
) -> Tuple[Any, Any]:
    """Zeta's ``apply_rotary_pos_emb(q, k, freqs, scale=1)`` and every switch of helix's.

    q ``(..., Lq, d)``, k ``(..., Lk, d)`` (or None: only q rotates), float32, float16 or
    bfloat16. The rotation is ``freqs`` (Zeta's angle table ``(N, rotary_dim)``) with
    ``scale`` (None, a number, or an xPos table), or any :class:`RotaryTable` as ``table``.
    ``positions`` (and ``k_positions`` for k when they differ): None = Zeta's alignment (q on
    the table's last rows, k on all of them), an int (row i at start + i) or a
    :class:`Positions`. ``conjugate`` rotates by -angle (the backward pass). Outputs go to
    ``q_out``/``k_out``, or the inputs with ``in_place``, else new arrays like q and k.
    Returns ``(q', k')`` (k' None when k is None).
    """
    if table is None:
        if freqs is None:
            raise Error("helix::apply_rotary_pos_emb: freqs: expected an angle table or table=, given neither")
        table = RotaryTable.angles(_array(freqs), scale if not hasattr(scale, "shape") else _array(scale))
    elif freqs is not None or scale is not None:
        raise Error("helix::apply_rotary_pos_emb: table: expected either freqs (and scale) or table=, given both")
    if in_place:
        q_out, k_out = q, k
    if q_out is None:
        q_out = _empty(q, tuple(q.shape))
    if k is not None and k_out is None:
        k_out = _empty(k, tuple(k.shape))
    _helix.apply_rotary_into(
        _array(q),
        None if k is None else _array(k),
        table,
        _array(q_out),
        None if k_out is None else _array(k_out),
        _positions(positions),
        None if k_positions is None else _positions(k_positions),
        _choice(pairing, _PAIRINGS, "pairing"),
        rotary_dim,
        _choice(stores, _STORES, "stores"),
        conjugate,
        _stream(q),
    )
    return q_out, k_out
