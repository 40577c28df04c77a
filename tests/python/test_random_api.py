"""Randomized calls of the Python API against the NumPy float64 reference: every switch the
package has (dtype, pairing, partial rotary, table form, positions for q and k, scale,
backward, in place or into given arrays, strided views), drawn from a fixed seed."""

import numpy as np
import pytest

import helix
from test_helix import TOL, ref_freqs, ref_inv_freq, ref_rotate, ref_rotate_half

CASES = 300


def case(rng):
    d = int(rng.choice([8, 16, 24, 64]))
    rotary_dim = int(rng.choice([0, d, d // 2 if (d // 2) % 2 == 0 else d]))
    width = rotary_dim or d
    pairing = str(rng.choice(["half_split", "interleaved"]))
    form = str(rng.choice(["angles", "cos_sin", "cos_sin_cache", "inv_freq"]))
    n_table = int(rng.integers(4, 40))
    b, h, n = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
    dtype = np.float16 if rng.random() < 0.25 else np.float32
    return dict(d=d, rotary_dim=rotary_dim, width=width, pairing=pairing, form=form, n_table=n_table, b=b, h=h, n=n,
                dtype=dtype, conjugate=bool(rng.random() < 0.3), in_place=bool(rng.random() < 0.3),
                strided=bool(rng.random() < 0.3), scale=float(rng.choice([1.0, 0.5, 3.0])),
                positions=str(rng.choice(["start", "offsets", "ids"] + (["aligned"] if form != "inv_freq" else []))))


def positions_for(rng, c, rows):
    """(helix.Positions, the (b, rows) positions it stands for)."""
    b, n_table = c["b"], c["n_table"]
    kind = c["positions"]
    if kind == "aligned":
        start = n_table - rows
        return helix.Positions(), np.broadcast_to(np.arange(start, start + rows), (b, rows))
    if kind == "start":
        s = int(rng.integers(0, n_table - rows + 1))
        return helix.Positions.start(s), np.broadcast_to(np.arange(s, s + rows), (b, rows))
    if kind == "offsets":
        off = rng.integers(0, n_table - rows + 1, size=b).astype(np.int32)
        return helix.Positions.offsets(off), off[:, None] + np.arange(rows)[None]
    ids = rng.integers(0, n_table, size=(b, rows)).astype(np.int64)
    return helix.Positions.ids(ids), ids


@pytest.mark.parametrize("seed", range(CASES))
def test_random_call_equals_reference(seed):
    rng = np.random.default_rng(seed)
    c = case(rng)
    if c["positions"] == "aligned" and c["n"] > c["n_table"]:
        c["n"] = c["n_table"]
    d, width, pairing = c["d"], c["width"], c["pairing"]
    freqs = ref_freqs(c["n_table"], width, theta=10000.0, pairing=pairing)
    half = freqs[:, : width // 2] if pairing == "half_split" else freqs[:, 0::2]
    table = {
        "angles": lambda: helix.RotaryTable.angles(freqs, c["scale"]),
        "cos_sin": lambda: helix.RotaryTable.cos_sin(np.cos(half).astype(np.float32), np.sin(half).astype(np.float32),
                                                     c["scale"]),
        "cos_sin_cache": lambda: helix.RotaryTable.cos_sin_cache(
            np.concatenate([np.cos(half), np.sin(half)], 1).astype(np.float32), c["scale"]),
        "inv_freq": lambda: helix.RotaryTable.inv_freq(ref_inv_freq(width), c["scale"]),
    }[c["form"]]()

    shape = (c["b"], c["h"], c["n"], d)
    if c["strided"]:  # every other head of a larger array
        q = rng.standard_normal((c["b"], 2 * c["h"], c["n"], d)).astype(c["dtype"])[:, ::2]
    else:
        q = rng.standard_normal(shape).astype(c["dtype"])
    k = rng.standard_normal((c["b"], 1, c["n"], d)).astype(c["dtype"])
    q_pos, q_rows = positions_for(rng, c, c["n"])
    if c["positions"] == "aligned":  # Zeta's k covers the whole table
        k = rng.standard_normal((c["b"], 1, c["n_table"], d)).astype(c["dtype"])
        k_rows = np.broadcast_to(np.arange(c["n_table"]), (c["b"], c["n_table"]))
    else:
        k_rows = q_rows
    q_in, k_in = q.copy(), k.copy()
    q2, k2 = helix.apply_rotary_pos_emb(q, k, table=table, positions=q_pos, pairing=pairing,
                                       rotary_dim=c["rotary_dim"], conjugate=c["conjugate"], in_place=c["in_place"])
    if c["in_place"]:
        assert q2 is q and k2 is k

    full = ref_freqs(c["n_table"], width, pairing=pairing)
    for out, x, rows, s in ((q2, q_in, q_rows, c["scale"]), (k2, k_in, k_rows, 1 / c["scale"])):
        x32 = x.astype(np.float32)
        angles = full[rows][:, None]  # (b, 1, rows, width)
        ref = ref_rotate(x32[..., :width], angles, s, pairing, c["conjugate"])
        got = np.asarray(out, np.float64)
        mag = np.maximum(np.abs(x32[..., :width]), np.abs(ref_rotate_half(x32[..., :width], pairing))) * abs(s)
        tol = TOL * 2 + (2.0**-10 if c["dtype"] == np.float16 else 0)  # float16: one ulp of the result
        assert np.all(np.abs(got[..., :width] - ref) <= tol * mag + (2.0**-24 if c["dtype"] == np.float16 else 1e-30)), c
        np.testing.assert_array_equal(got[..., width:], x32[..., width:])  # the pass-through features
