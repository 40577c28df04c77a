"""helix from PyTorch on a CUDA device: the same results as on the CPU, in the caller's
context and on its current stream, without copies. Run by ctest as python_cuda_tests,
which reports SKIPPED where no CUDA device (or no CUDA build of the package) is present."""

import pytest

torch = pytest.importorskip("torch")
import helix  # noqa: E402
import helix.torch as ht  # noqa: E402

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and helix._helix.has_cuda()),
                                reason="needs a CUDA device and a CUDA build of the package")


def test_apply_matches_the_cpu_on_a_side_stream():
    torch.manual_seed(0)
    inv = 1.0 / (10000 ** (torch.arange(0, 64, 2).float() / 64))
    f = torch.outer(torch.arange(256).float(), inv)
    cos, sin = f.cos(), f.sin()
    q, k = torch.randn(2, 8, 256, 64), torch.randn(2, 2, 256, 64)
    ids = torch.randint(0, 256, (2, 256))
    expected = ht.apply_rotary(q, k, cos=cos, sin=sin, positions=ids)
    dev = [t.cuda() for t in (q, k, cos, sin, ids)]
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        q_ptr = dev[0].data_ptr()
        got = ht.apply_rotary(dev[0], dev[1], cos=dev[2], sin=dev[3], positions=dev[4], inplace=True)
        assert got[0].data_ptr() == q_ptr
    side.synchronize()
    torch.testing.assert_close(got[0].cpu(), expected[0], rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(got[1].cpu(), expected[1], rtol=2e-6, atol=2e-6)


def test_autograd_on_the_device():
    inv = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))
    q = torch.randn(1, 2, 8, 16, device="cuda", requires_grad=True)
    q2, _ = ht.apply_rotary(q, None, inv_freq=inv.cuda(), positions=3)
    (dq,) = torch.autograd.grad(q2.square().sum(), q)
    torch.testing.assert_close(dq, 2 * q.detach(), rtol=1e-5, atol=1e-5)  # a rotation keeps |q|^2


def test_rotate_half_on_the_device():
    x = torch.randn(4, 32)
    torch.testing.assert_close(helix.rotate_half(x.cuda()).cpu(), helix.rotate_half(x))


def test_a_device_mix_is_an_error():
    f = torch.outer(torch.arange(4).float(), torch.ones(4))
    with pytest.raises(helix.Error, match=r"helix::apply_rotary_pos_emb: freqs: expected device cuda \(the device of q\)"):
        ht.apply_rotary(torch.randn(1, 1, 4, 8, device="cuda"), None, freqs=torch.cat([f, f], -1))
