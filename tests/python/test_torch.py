"""helix.torch: the custom operators (opcheck, autograd against PyTorch's autograd of the
reference formulas, torch.compile without graph breaks, no copies) and the drop-ins against
the functions they replace, run from the pinned peers themselves (tests/python/requirements.txt)."""

import pytest

torch = pytest.importorskip("torch")
import helix.torch as ht  # noqa: E402

torch.manual_seed(0)


def rotate_half_ref(x, pairing="half_split"):
    if pairing == "half_split":
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)


def freqs_table(n, d, theta=10000.0, pairing="half_split"):
    inv = 1.0 / (theta ** (torch.arange(0, d, 2).float() / d))
    f = torch.outer(torch.arange(n).float(), inv)
    return torch.cat([f, f], -1) if pairing == "half_split" else f.repeat_interleave(2, -1), inv


def assert_close(a, b, tol=2e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ---- the operators --------------------------------------------------------------------------


def op_cases():
    freqs, inv = freqs_table(16, 8)
    r = torch.rand(16, 4) + 0.5
    scale = torch.cat([r, r], -1)  # xPos-like: pairs share their scale
    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 1, 16, 8)
    c, s = freqs[:, :4].cos(), freqs[:, :4].sin()
    ids = torch.tensor([[3, 15, 3, 0, 7], [1, 1, 2, 9, 4]])
    common = dict(k_pos_kind="same", k_pos_start=0, k_pos_tensor=None, k_pos_offsets=None, pairing="half_split",
                  rotary_dim=0, conjugate=False, backward=False)
    return [
        # Zeta: angle table with an xPos scale table, aligned positions.
        (q, k, dict(form="angles", first=freqs, second=None, scale_table=scale, scale_value=1.0, pos_kind="aligned",
                    pos_start=0, pos_tensor=None, pos_offsets=None)),
        # cos/sin with position ids for q and k, k at a start offset.
        (q, k[:, :, :5], dict(form="cos_sin", first=c, second=s, scale_table=None, scale_value=1.0, pos_kind="ids",
                              pos_start=0, pos_tensor=ids, pos_offsets=None)),
        # No table, q only, start offset, the backward switch.
        (q, None, dict(form="inv_freq", first=inv, second=None, scale_table=None, scale_value=2.0, pos_kind="start",
                       pos_start=9, pos_tensor=None, pos_offsets=None)),
    ], common


@pytest.mark.parametrize("case", range(3))
def test_opcheck(case):
    cases, common = op_cases()
    q, k, table = cases[case]
    kw = {**table, **common}
    if case == 1:
        kw.update(k_pos_kind="start", k_pos_start=4)
    if case == 2:
        kw.update(conjugate=True)
    args = (q.clone().requires_grad_(), None if k is None else k.clone().requires_grad_(), *kw.values())
    torch.library.opcheck(torch.ops.helix.apply_rotary.default, args)
    torch.library.opcheck(torch.ops.helix.apply_rotary_.default, (q.clone(), None if k is None else k.clone(), *kw.values()))


def test_opcheck_rotate_half():
    torch.library.opcheck(torch.ops.helix.rotate_half.default, (torch.randn(2, 3, 8, requires_grad=True), "half_split"))
    torch.library.opcheck(torch.ops.helix.rotate_half.default, (torch.randn(4, 6, requires_grad=True), "interleaved"))


@pytest.mark.parametrize("pairing", ["half_split", "interleaved"])
def test_autograd_matches_pytorch_on_the_reference(pairing):
    freqs, _ = freqs_table(12, 16, pairing=pairing)
    r = torch.rand(12, 8) + 0.5  # xPos-like: both members of a pair share their scale
    scale = torch.cat([r, r], -1) if pairing == "half_split" else r.repeat_interleave(2, -1)
    q = torch.randn(2, 2, 4, 16, requires_grad=True)
    k = torch.randn(2, 2, 12, 16, requires_grad=True)
    q2, k2 = ht.apply_rotary(q, k, freqs=freqs, scale=scale, pairing=pairing)
    gq, gk = torch.randn_like(q2), torch.randn_like(k2)
    dq, dk = torch.autograd.grad((q2 * gq).sum() + (k2 * gk).sum(), (q, k))

    qr, kr = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    fq, sq = freqs[-4:], scale[-4:]
    q_ref = qr * fq.cos() * sq + rotate_half_ref(qr, pairing) * fq.sin() * sq
    k_ref = kr * freqs.cos() / scale + rotate_half_ref(kr, pairing) * freqs.sin() / scale
    assert_close(q2, q_ref)
    assert_close(k2, k_ref)
    rq, rk = torch.autograd.grad((q_ref * gq).sum() + (k_ref * gk).sum(), (qr, kr))
    assert_close(dq, rq)
    assert_close(dk, rk)


def test_backward_rejects_a_scale_that_differs_within_a_pair():
    freqs, _ = freqs_table(4, 8)
    q = torch.randn(1, 1, 4, 8, requires_grad=True)
    q2, _ = ht.apply_rotary(q, None, freqs=freqs, scale=torch.rand(4, 8) + 0.5)
    with pytest.raises(helix_error(), match=r"scale: expected a table whose pairs share their scale"):
        q2.sum().backward()


def test_rotate_half_autograd():
    x = torch.randn(3, 8, requires_grad=True)
    g = torch.randn(3, 8)
    (dx,) = torch.autograd.grad((ht.rotate_half(x) * g).sum(), x)
    xr = x.detach().clone().requires_grad_()
    (rx,) = torch.autograd.grad((rotate_half_ref(xr) * g).sum(), xr)
    torch.testing.assert_close(dx, rx)


def test_compile_fullgraph_has_no_graph_break():
    freqs, inv = freqs_table(32, 16)
    q, k = torch.randn(1, 4, 32, 16), torch.randn(1, 2, 32, 16)

    def step(q, k, ids):
        q2, k2 = ht.apply_rotary(q, k, inv_freq=inv, positions=ids)
        return (q2 * 2).sum(-1), k2

    ids = torch.arange(32)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    a, b = compiled(q, k, ids)
    ea, eb = step(q, k, ids)
    torch.testing.assert_close(a, ea)
    torch.testing.assert_close(b, eb)


def test_in_place_writes_the_callers_tensors():
    freqs, _ = freqs_table(8, 8)
    q, k = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 8, 8)
    expected = ht.apply_rotary(q, k, freqs=freqs)
    pq, pk = q.data_ptr(), k.data_ptr()
    q2, k2 = ht.apply_rotary(q, k, freqs=freqs, inplace=True)
    assert q2 is q and k2 is k and q.data_ptr() == pq and k.data_ptr() == pk
    torch.testing.assert_close(q, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(k, expected[1], rtol=0, atol=0)


def test_bfloat16_and_errors():
    freqs, _ = freqs_table(8, 8)
    q = torch.randn(1, 1, 8, 8).bfloat16()
    q2, _ = ht.apply_rotary(q, None, freqs=freqs)
    ref = q.float() * freqs.cos() + rotate_half_ref(q.float()) * freqs.sin()
    assert q2.dtype == torch.bfloat16
    torch.testing.assert_close(q2.float(), ref.bfloat16().float(), rtol=2**-7, atol=1e-6)
    with pytest.raises(helix_error(), match=r"helix: q: expected dtype float32, float16, bfloat16, int32 or int64, given float64"):
        ht.apply_rotary(q.double(), None, freqs=freqs)
    with pytest.raises(helix_error(), match=r"expected exactly one of freqs, cos/sin, cos_sin_cache or inv_freq, given none"):
        ht.apply_rotary(q)


def helix_error():
    import helix

    return helix.Error


# ---- drop-ins against the originals -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hf_llama_apply_rotary_pos_emb(dtype):
    from transformers.models.llama import modeling_llama as ml

    b, h, s, d = 2, 4, 7, 64
    inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2).float() / d))
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [10, 11, 12, 13, 14, 15, 16]])
    f = pos[..., None].float() * inv
    emb = torch.cat([f, f], -1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    q, k = torch.randn(b, h, s, d, dtype=dtype), torch.randn(b, 2, s, d, dtype=dtype)
    hq, hk = ml.apply_rotary_pos_emb(q, k, cos, sin)
    xq, xk = ht.apply_rotary_pos_emb(q, k, cos, sin)
    tol = 2e-6 if dtype == torch.float32 else 2**-7  # float32: SPEC's bound; bfloat16: one ulp
    torch.testing.assert_close(xq, hq, rtol=tol, atol=tol)
    torch.testing.assert_close(xk, hk, rtol=tol, atol=tol)
    # (b, seq, h, d) layout: unsqueeze_dim=2.
    hq2, hk2 = ml.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin, unsqueeze_dim=2)
    xq2, xk2 = ht.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin, unsqueeze_dim=2)
    torch.testing.assert_close(xq2, hq2, rtol=tol, atol=tol)
    torch.testing.assert_close(xk2, hk2, rtol=tol, atol=tol)


def test_hf_gptj_apply_rotary_pos_emb():
    from transformers.models.gptj import modeling_gptj as mg

    b, s, h, rd = 2, 5, 3, 16
    sincos = mg.create_sinusoidal_positions(64, rd)
    pos = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
    sin, cos = torch.split(sincos[pos], rd // 2, dim=-1)
    x = torch.randn(b, s, h, rd)
    torch.testing.assert_close(ht.gptj_apply_rotary_pos_emb(x, sin, cos), mg.apply_rotary_pos_emb(x, sin, cos),
                               rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("seq_dim", [-2, -3])
def test_rotary_embedding_torch(seq_dim):
    from rotary_embedding_torch import RotaryEmbedding

    rot = RotaryEmbedding(dim=16)  # rotates the first 16 of 24 features, interleaved
    t = torch.randn(2, 3, 9, 24) if seq_dim == -2 else torch.randn(2, 9, 3, 24)
    expected = rot.rotate_queries_or_keys(t, seq_dim=seq_dim, offset=5)
    torch.testing.assert_close(ht.rotate_queries_or_keys(rot, t, seq_dim=seq_dim, offset=5), expected,
                               rtol=2e-6, atol=2e-6)


def test_zeta_module_and_apply():
    emb = ht.SinusoidalEmbeddings(16, scale_base=64, use_xpos=True)
    q, k = torch.randn(1, 2, 3, 16), torch.randn(1, 2, 10, 16)
    freqs, scale = emb(k)
    # Zeta's formulas, as its source states them.
    inv = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))
    t = torch.arange(10).float()
    f = torch.einsum("i,j->ij", t, inv)
    f = torch.cat((f, f), dim=-1)
    zeta = (torch.arange(0, 16, 2).float() + 0.4 * 16) / (1.4 * 16)
    power = (t - (10 // 2)) / 64
    s_ref = zeta ** power[:, None]
    s_ref = torch.cat((s_ref, s_ref), dim=-1)
    torch.testing.assert_close(freqs, f, rtol=0, atol=0)
    torch.testing.assert_close(scale, s_ref, rtol=1e-6, atol=0)
    q2, k2 = ht.zeta_apply_rotary_pos_emb(q, k, freqs, scale)
    fq = freqs[-3:]
    assert_close(q2, q * fq.cos() * scale[-3:] + rotate_half_ref(q) * fq.sin() * scale[-3:])
    assert_close(k2, k * freqs.cos() / scale + rotate_half_ref(k) * freqs.sin() / scale)
