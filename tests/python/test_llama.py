"""A real client: a small HF LlamaForCausalLM (random weights, GQA, head_dim 64, llama3
rope_scaling) run with stock transformers and with helix's apply_rotary_pos_emb patched in
(helix.torch.patch_transformers): logits and 32 greedy tokens, float32 and bfloat16, eager
and under torch.compile(fullgraph=True)."""

import contextlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

import helix.torch as ht  # noqa: E402


def small_llama(dtype):
    config = LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 256},
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval().to(dtype)


@contextlib.contextmanager
def helix_rope(calls):
    """helix's apply_rotary_pos_emb in the Llama module, counting the kernel calls it makes."""
    stock, run = modeling_llama.apply_rotary_pos_emb, ht._run

    def counted(*args):
        calls.append(1)
        return run(*args)

    ht.patch_transformers(modeling_llama)
    ht._run = counted
    try:
        yield
    finally:
        modeling_llama.apply_rotary_pos_emb, ht._run = stock, run


def prompt():
    torch.manual_seed(1)
    return torch.randint(0, 512, (2, 300))  # past original_max_position_embeddings: the scaled band


# Logits against stock: float32, within float32 rounding of the rotation carried through two
# layers (logits of magnitude ~2); bfloat16, a few bfloat16 ulps (HF rounds q * cos and
# rotate_half(q) * sin to bfloat16 before adding them, helix rounds once).
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=0.02, atol=0.02)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logits_and_greedy_tokens_match_stock(dtype):
    model, ids = small_llama(dtype), prompt()
    with torch.no_grad():
        stock_logits = model(ids).logits.float()
        stock_tokens = model.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
        calls = []
        with helix_rope(calls):
            logits = model(ids).logits.float()
            tokens = model.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
        exact = small_llama(torch.float32)(ids).logits if dtype != torch.float32 else None
    assert len(calls) >= 2 + 2 * 32  # every layer of the prefill and of each decode step
    torch.testing.assert_close(logits, stock_logits, **TOL[dtype])
    assert torch.equal(tokens, stock_tokens)
    if exact is not None:  # helix's bfloat16 model is as close to the float32 one as HF's
        for reduce in (torch.max, torch.mean):
            assert reduce((logits - exact).abs()) <= 1.1 * reduce((stock_logits - exact).abs())


def compiled_greedy(model, ids, steps=32):
    """Logits of ids and `steps` greedy tokens through torch.compile(fullgraph=True) of the
    model, recomputing the whole sequence each step (one graph, dynamic length)."""
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    logits = compiled(ids, use_cache=False).logits.float()
    seq = ids
    for _ in range(steps):
        nxt = compiled(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], -1)
    return logits, seq


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_model(dtype):
    # Against stock transformers compiled the same way (the compiler fuses and reorders
    # bfloat16 arithmetic, so eager results are not the reference for compiled ones).
    model, ids = small_llama(dtype), prompt()[:, :64]
    with torch.no_grad():
        stock_logits, stock_tokens = compiled_greedy(model, ids)
        calls = []
        with helix_rope(calls):
            logits, tokens = compiled_greedy(model, ids)
    assert calls  # the compiled graph ran helix's kernels
    torch.testing.assert_close(logits, stock_logits, **TOL[dtype])
    assert torch.equal(tokens, stock_tokens)
