"""The Python package against an independent float64 reference (NumPy, SPEC section 1), the
PyTorch goldens of tests/golden, and its own promises: helix.Error for bad input, no copies,
the GIL released during kernels, arrays kept alive by the objects that hold them."""

import gc
import os
import sys
import threading
import time

import numpy as np
import pytest

import helix

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "golden")
TOL = 4e-6  # SPEC section 4, fp32 angles, positions < 2^16


# ---- reference (float64 throughout, float32 exactly where PyTorch rounds) ----------------


def ref_inv_freq(dim, theta=10000.0):
    exponent = (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float32)
    return (np.float32(1) / np.power(np.float64(np.float32(theta)), exponent.astype(np.float64)).astype(np.float32))


def ref_freqs(n, dim, theta=10000.0, pairing="half_split"):
    f = ref_inv_freq(dim, theta)
    cols = np.concatenate([f, f]) if pairing == "half_split" else np.repeat(f, 2)
    return (np.arange(n, dtype=np.float32)[:, None] * cols[None, :]).astype(np.float32)


def ref_xpos(n, dim, scale_base, pairing="half_split"):
    i = np.arange(dim // 2)
    zeta = ((np.float32(2) * i.astype(np.float32) + np.float32(0.4 * dim)) / np.float32(1.4 * dim)).astype(np.float32)
    cols = np.concatenate([zeta, zeta]) if pairing == "half_split" else np.repeat(zeta, 2)
    power = ((np.arange(n, dtype=np.float32) - np.float32(n // 2)) / np.float32(scale_base)).astype(np.float32)
    return np.power(cols[None, :].astype(np.float64), power[:, None].astype(np.float64))


def ref_rotate_half(x, pairing="half_split"):
    x = x.astype(np.float64)
    if pairing == "half_split":
        h = x.shape[-1] // 2
        return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    out = np.empty_like(x)
    out[..., 0::2] = -x[..., 1::2]
    out[..., 1::2] = x[..., 0::2]
    return out


def ref_rotate(x, angles, scale=1.0, pairing="half_split", conjugate=False):
    """x * cos + rotate_half(x) * sin, times scale; angles broadcast against x."""
    a = angles.astype(np.float64) * (-1 if conjugate else 1)
    return (x.astype(np.float64) * np.cos(a) + ref_rotate_half(x, pairing) * np.sin(a)) * scale


def close(out, ref, x, pairing="half_split", scale=1.0, tol=TOL):
    """SPEC's bound: |out - ref| <= tol * s * max(|x_j|, |x_pair(j)|)."""
    mag = np.maximum(np.abs(x.astype(np.float64)), np.abs(ref_rotate_half(x, pairing)))
    bound = tol * np.abs(scale) * mag + 1e-30
    err = np.abs(np.asarray(out, np.float64) - ref)
    assert np.all(err <= bound), f"max excess {np.max(err - bound)}"


rng = np.random.default_rng(7)


def rand(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- the three functions -----------------------------------------------------------------


@pytest.mark.parametrize("pairing", ["half_split", "interleaved"])
@pytest.mark.parametrize("use_xpos", [False, True])
def test_tables_equal_reference(pairing, use_xpos):
    emb = helix.SinusoidalEmbeddings(64, scale_base=512 if use_xpos else None, use_xpos=use_xpos, pairing=pairing)
    freqs, scale = emb.forward(seq_len=300)
    np.testing.assert_array_equal(freqs, ref_freqs(300, 64, pairing=pairing))  # SPEC: exactly
    if use_xpos:
        np.testing.assert_allclose(scale, ref_xpos(300, 64, 512, pairing), rtol=2.4e-7, atol=0)
    else:
        np.testing.assert_array_equal(scale, np.ones(1, np.float32))
    np.testing.assert_array_equal(emb.inv_freq(), ref_inv_freq(64))


def test_forward_reads_only_the_shape_as_zeta():
    emb = helix.SinusoidalEmbeddings(32)
    freqs, _ = emb(np.zeros((2, 4, 17, 32), np.float32))
    assert freqs.shape == (17, 32) and freqs.dtype == np.float32


def test_window_is_rows_of_the_table():
    emb = helix.SinusoidalEmbeddings(32, scale_base=64, use_xpos=True)
    full_f, full_s = emb.forward(seq_len=100)
    f, s = emb.window(100, 97, 3)
    np.testing.assert_array_equal(f, full_f[97:])
    np.testing.assert_array_equal(s, full_s[97:])


@pytest.mark.parametrize("pairing", ["half_split", "interleaved"])
def test_rotate_half(pairing):
    x = rand(2, 3, 5, 8)
    out = helix.rotate_half(x, pairing=pairing)
    np.testing.assert_array_equal(out, ref_rotate_half(x, pairing).astype(np.float32))


@pytest.mark.parametrize("pairing", ["half_split", "interleaved"])
def test_apply_zeta_alignment_with_xpos(pairing):
    emb = helix.SinusoidalEmbeddings(16, scale_base=32, use_xpos=True, pairing=pairing)
    freqs, scale = emb.forward(seq_len=12)
    q, k = rand(2, 3, 5, 16), rand(2, 3, 12, 16)
    q2, k2 = helix.apply_rotary_pos_emb(q, k, freqs, scale, pairing=pairing)
    s = ref_xpos(12, 16, 32, pairing)
    close(q2, ref_rotate(q, freqs[-5:], s[-5:], pairing), q, pairing, s[-5:])
    close(k2, ref_rotate(k, freqs, 1 / s, pairing), k, pairing, 1 / s)


def test_scalar_scale_and_partial_rotary():
    freqs = ref_freqs(10, 8)
    q, k = rand(1, 2, 10, 12), rand(1, 2, 10, 12)
    q2, k2 = helix.apply_rotary_pos_emb(q, k, freqs, 2.0, rotary_dim=8)
    close(q2[..., :8], ref_rotate(q[..., :8], freqs, 2.0), q[..., :8], scale=2.0)
    close(k2[..., :8], ref_rotate(k[..., :8], freqs, 0.5), k[..., :8], scale=0.5)
    np.testing.assert_array_equal(q2[..., 8:], q[..., 8:])
    np.testing.assert_array_equal(k2[..., 8:], k[..., 8:])


@pytest.mark.parametrize("form", ["angles", "cos_sin", "cos_sin_cache", "inv_freq"])
def test_table_forms_and_position_ids(form):
    n, d = 64, 32
    freqs = ref_freqs(n, d, theta=500000.0)
    half = freqs[:, : d // 2]
    table = {
        "angles": lambda: helix.RotaryTable.angles(freqs),
        "cos_sin": lambda: helix.RotaryTable.cos_sin(np.cos(half).astype(np.float32), np.sin(half).astype(np.float32)),
        "cos_sin_cache": lambda: helix.RotaryTable.cos_sin_cache(
            np.concatenate([np.cos(half), np.sin(half)], axis=1).astype(np.float32)
        ),
        "inv_freq": lambda: helix.RotaryTable.inv_freq(ref_inv_freq(d, 500000.0)),
    }[form]()
    ids = np.array([[5, 63, 5, 0], [1, 2, 3, 60]], np.int64)  # unsorted, repeated
    q, k = rand(2, 4, 4, d), rand(2, 1, 4, d)
    q2, k2 = helix.apply_rotary_pos_emb(q, k, table=table, positions=helix.Positions.ids(ids))
    angles = freqs[ids][:, None]  # (b, 1, n, d)
    close(q2, ref_rotate(q, angles), q, tol=8e-6 if form != "angles" else TOL)
    close(k2, ref_rotate(k, angles), k, tol=8e-6 if form != "angles" else TOL)


def test_start_offsets_and_k_positions():
    freqs = ref_freqs(40, 16)
    q, k = rand(2, 2, 3, 16), rand(2, 2, 5, 16)
    offsets = np.array([4, 30], np.int32)
    q2, k2 = helix.apply_rotary_pos_emb(q, k, freqs, positions=helix.Positions.offsets(offsets), k_positions=7)
    close(q2, ref_rotate(q, np.stack([freqs[4:7], freqs[30:33]])[:, None]), q)
    close(k2, ref_rotate(k, freqs[7:12]), k)


def test_varlen():
    freqs = ref_freqs(16, 8)
    cu = np.array([0, 3, 3, 4, 9], np.int32)  # lengths 3, 0, 1, 5
    q = rand(9, 2, 8)
    pos = np.array([0, 1, 2, 0, 0, 1, 2, 3, 4])
    q2, _ = helix.apply_rotary_pos_emb(q, None, freqs, positions=helix.Positions.varlen(cu))
    close(q2, ref_rotate(q, freqs[pos][:, None]), q)


def test_backward_is_the_conjugate_rotation():
    freqs = ref_freqs(8, 16)
    dq = rand(1, 2, 8, 16)
    g, _ = helix.apply_rotary_pos_emb(dq, None, freqs, 3.0, conjugate=True)
    close(g, ref_rotate(dq, freqs, 3.0, conjugate=True), dq, scale=3.0)


def test_float16():
    freqs = ref_freqs(6, 8)
    q = rand(1, 1, 6, 8, dtype=np.float16)
    q2, _ = helix.apply_rotary_pos_emb(q, None, freqs)
    assert q2.dtype == np.float16
    ref = ref_rotate(q.astype(np.float32), freqs)
    # SPEC: the round-to-nearest of the float32 result: within one float16 ulp of float64.
    np.testing.assert_allclose(q2.astype(np.float64), ref, rtol=2**-10, atol=2**-24)


def test_scaled_embedding_and_its_table():
    scaling = helix.RopeScaling.llama3(8.0, 1.0, 4.0, 8192)
    emb = helix.SinusoidalEmbeddings(64, theta=500000.0, scaling=scaling)
    inv = emb.inv_freq()
    assert inv.shape == (32,) and inv[0] == np.float32(1.0) and inv[-1] < ref_inv_freq(64, 500000.0)[-1]
    q = rand(1, 2, 3, 64)
    ids = np.array([100, 5000, 70000], np.int32)
    q2, _ = helix.apply_rotary_pos_emb(q, None, table=emb.table(70001), positions=helix.Positions.ids(ids))
    angles = (ids.astype(np.float32)[:, None] * np.concatenate([inv, inv])[None]).astype(np.float32)
    close(q2, ref_rotate(q, angles), q, tol=2e-5)


def test_goldens_from_pytorch():
    def load(name, shape):
        return np.fromfile(os.path.join(GOLDEN, name + ".f32"), np.float32).reshape(shape)

    q, k = load("seed_apply_q", (2, 3, 4)), load("seed_apply_k", (2, 3, 4))
    freqs, scale = load("seed_apply_freqs", (3, 4)), load("seed_apply_scale", (3, 4))
    q2, k2 = helix.apply_rotary_pos_emb(q, k, freqs, scale)
    np.testing.assert_allclose(q2, load("seed_apply_q_out", (2, 3, 4)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(k2, load("seed_apply_k_out", (2, 3, 4)), rtol=1e-5, atol=1e-6)
    x = load("seed_rotate_half_x", (2, 3, 4))
    np.testing.assert_array_equal(helix.rotate_half(x), load("seed_rotate_half_out", (2, 3, 4)))


# ---- no copies, lifetimes, the GIL -------------------------------------------------------


def test_outputs_are_the_callers_arrays():
    freqs = ref_freqs(4, 8)
    q, k = rand(1, 1, 4, 8), rand(1, 1, 4, 8)
    q_out, k_out = np.zeros_like(q), np.zeros_like(k)
    r = helix.apply_rotary_pos_emb(q, k, freqs, q_out=q_out, k_out=k_out)
    assert r[0] is q_out and r[1] is k_out and q_out.any()
    expected, _ = helix.apply_rotary_pos_emb(q, k, freqs)
    address = q.ctypes.data
    r = helix.apply_rotary_pos_emb(q, k, freqs, in_place=True)
    assert r[0] is q and q.ctypes.data == address
    np.testing.assert_array_equal(q, expected)


def test_jax_arrays_are_read_where_they_are():
    jnp = pytest.importorskip("jax.numpy")
    freqs = ref_freqs(6, 8)
    q, k = rand(1, 2, 6, 8), rand(1, 1, 6, 8)
    q2, k2 = helix.apply_rotary_pos_emb(jnp.asarray(q), jnp.asarray(k), jnp.asarray(freqs))
    assert isinstance(q2, np.ndarray)  # JAX arrays are immutable: outputs are NumPy's
    close(q2, ref_rotate(q, freqs), q)
    close(k2, ref_rotate(k, freqs), k)
    np.testing.assert_array_equal(helix.rotate_half(jnp.asarray(q)), ref_rotate_half(q).astype(np.float32))


def test_strided_inputs_are_read_in_place():
    freqs = ref_freqs(4, 8)
    big = rand(1, 3, 4, 8)
    q = big[:, ::2]  # a view with a head stride of 2 rows of heads
    q2, _ = helix.apply_rotary_pos_emb(q, None, freqs)
    close(q2, ref_rotate(q, freqs), q)


def test_tables_and_positions_keep_their_arrays_alive():
    freqs = ref_freqs(50, 8)
    table = helix.RotaryTable.cos_sin(np.cos(freqs[:, :4]).astype(np.float32), np.sin(freqs[:, :4]).astype(np.float32))
    positions = helix.Positions.ids(np.array([49, 3], np.int32))
    gc.collect()
    for _ in range(3):  # the temporaries' memory, reused if it were freed
        [np.full((50, 4), 7.0, np.float32) for _ in range(20)]
    q = rand(1, 1, 2, 8)
    q2, _ = helix.apply_rotary_pos_emb(q, None, table=table, positions=positions)
    close(q2, ref_rotate(q, freqs[[49, 3]]), q)


def test_kernels_release_the_gil():
    # With a huge switch interval, another thread runs during a call only if the call
    # releases the GIL itself.
    freqs = ref_freqs(4096, 128)
    q = rand(1, 32, 4096, 128)
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            time.sleep(0)

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        t = threading.Thread(target=count)
        t.start()
        time.sleep(0.01)
        before = len(ticks)
        for _ in range(5):
            helix.apply_rotary_pos_emb(q, None, freqs, in_place=True)
        during = len(ticks) - before
        done.set()
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert during > 0


# ---- bad input: helix.Error with the C++ message ------------------------------------------


def test_errors_carry_the_cpp_message():
    freqs = ref_freqs(4, 8)
    with pytest.raises(helix.Error, match=r"helix: q: expected dtype float32, float16, bfloat16, int32 or int64, given float64"):
        helix.apply_rotary_pos_emb(np.zeros((1, 1, 4, 8)), None, freqs)
    with pytest.raises(helix.Error, match=r"helix::apply_rotary_pos_emb: freqs: expected last dimension 6"):
        helix.apply_rotary_pos_emb(rand(1, 1, 4, 6), None, freqs)
    with pytest.raises(helix.Error, match=r"helix::apply_rotary_pos_emb: k: expected dtype float32 \(the dtype of q\)"):
        helix.apply_rotary_pos_emb(rand(1, 1, 4, 8), rand(1, 1, 4, 8, dtype=np.float16), freqs)
    with pytest.raises(helix.Error, match=r"helix::apply_rotary_pos_emb: q: expected .*unit stride"):
        helix.apply_rotary_pos_emb(rand(1, 1, 4, 16)[..., ::2], None, freqs)
    with pytest.raises(helix.Error, match=r"helix::apply_rotary_pos_emb: q_out: expected the shape of q|q_out: expected .*\(the shape of q\)"):
        helix.apply_rotary_pos_emb(rand(1, 1, 4, 8), None, freqs, q_out=rand(1, 1, 3, 8))
    with pytest.raises(helix.Error, match=r"positions"):
        helix.apply_rotary_pos_emb(rand(1, 1, 2, 8), None, freqs, positions=helix.Positions.ids(np.array([0, 4], np.int32)))
    with pytest.raises(helix.Error, match=r"helix::SinusoidalEmbeddings: dim"):
        helix.SinusoidalEmbeddings(7)
    with pytest.raises(helix.Error, match=r"pairing: expected one of half_split, interleaved, given 'zigzag'"):
        helix.rotate_half(rand(4), pairing="zigzag")
    assert issubclass(helix.Error, RuntimeError)


def test_nothing_written_on_error():
    freqs = ref_freqs(4, 8)
    q = rand(1, 1, 2, 8)
    q_out = np.full_like(q, 5.0)
    with pytest.raises(helix.Error):
        helix.apply_rotary_pos_emb(q, None, freqs, q_out=q_out, positions=helix.Positions.ids(np.array([1, 9], np.int32)))
    assert np.all(q_out == 5.0)
