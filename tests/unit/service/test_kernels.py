# -*- coding: utf-8 -*-
"""The fast path's Triton kernels against their torch definitions.

On the CPU they run in Triton's interpreter (``TRITON_INTERPRET=1``, fp16/fp32: the
interpreter's bf16 is not usable with the CPU torch build); on a CUDA machine the compiled
kernels run, in bf16 too. Shapes are chosen so that every mask matters: outputs not a
multiple of the block, an inner size not a multiple of the step, rows padded up to 16, query
heads per kv head below the 16 a dot needs, positions at split edges and at 0.
"""

import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('triton')
from autoglm_service.backends import kernels  # noqa: E402

CUDA = torch.cuda.is_available()     # else conftest.py has set TRITON_INTERPRET=1
DEV = 'cuda' if CUDA else 'cpu'
DTYPES = [torch.float16] + ([torch.bfloat16] if CUDA else [])
TOL = dict(atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('bias', [False, True])
def test_gemv_equals_linear(dtype, bias):
    g = torch.Generator().manual_seed(7)
    m, n, k = 1, 77, 300                      # n and k not multiples of the blocks
    x = torch.randn(m, k, generator=g).to(DEV, dtype)
    w = (torch.randn(n, k, generator=g) / k ** 0.5).to(DEV, dtype)
    b = torch.randn(n, generator=g).to(DEV, dtype) if bias else None
    want = torch.nn.functional.linear(x.float(), w.float(), None if b is None else b.float())
    # every launch class (narrow, wide, long rows) and block sizes that leave partial blocks
    for cfg in ({'BN': 8, 'BK': 64}, {'BN': 16, 'BK': 128}, kernels.gemv_config(n, k),
                kernels.gemv_config(10 ** 5, k), kernels.gemv_config(n, 10 ** 5)):
        y = torch.empty(m, n, dtype=dtype, device=DEV)
        kernels.gemv_launch(x, w, b, y, cfg)
        torch.testing.assert_close(y.float(), want, **TOL)
    if CUDA:
        torch.testing.assert_close(kernels.linear(x, w, b).float(), want, **TOL)   # the custom op


def _reference_attention(q, k, v, kc, vc, pos, scale):
    kc, vc = kc.clone(), vc.clone()
    b, hq, d = q.shape
    hkv = k.shape[1]
    out = torch.empty(b, hq, d, dtype=torch.float32, device=q.device)
    for r in range(b):
        p = int(pos[r])
        kc[r, :, p], vc[r, :, p] = k[r], v[r]
        keys = kc[r, :, :p + 1].float().repeat_interleave(hq // hkv, 0)     # [hq, p+1, d]
        vals = vc[r, :, :p + 1].float().repeat_interleave(hq // hkv, 0)
        att = torch.softmax(torch.einsum('hd,htd->ht', q[r].float(), keys) * scale, -1)
        out[r] = torch.einsum('ht,htd->hd', att, vals)
    return out.reshape(b, hq * d), kc, vc


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('hq,hkv', [(8, 2), (4, 4), (32, 2)])
def test_decode_attention_equals_softmax_attention(dtype, hq, hkv):
    g = torch.Generator().manual_seed(hq)
    rows, length, d = 4, 300, 16
    pos = torch.tensor([0, 63, 64, 250], device=DEV)           # split edges, the first position
    span = 256
    q = torch.randn(4, hq, d, generator=g).to(DEV, dtype)
    k = torch.randn(4, hkv, d, generator=g).to(DEV, dtype)
    v = torch.randn(4, hkv, d, generator=g).to(DEV, dtype)
    kc = torch.randn(rows, hkv, length, d, generator=g).to(DEV, dtype)
    vc = torch.randn(rows, hkv, length, d, generator=g).to(DEV, dtype)
    want, want_k, want_v = _reference_attention(q, k, v, kc, vc, pos, 0.25)
    for programs in (1, 8, 64):          # one split per row and head ... one key block per split
        kc2, vc2 = kc.clone(), vc.clone()
        split, n_split = kernels.attention_splits(4, hkv, span, programs)
        assert split * n_split >= span and split % kernels.BLOCK_T == 0
        launch = {'BT': 32, 'num_warps': 2} if programs == 64 else None      # a smaller key block too
        out = kernels.decode_attention(q, k, v, kc2, vc2, pos, 0.25, span, programs=programs, launch=launch)
        torch.testing.assert_close(out.float(), want, **TOL)
        # the step's keys and values are in the cache at each row's position, nothing else moved
        torch.testing.assert_close(kc2, want_k, atol=0, rtol=0)
        torch.testing.assert_close(vc2, want_v, atol=0, rtol=0)


def test_reasons_name_what_does_not_fit():
    assert kernels.attention_reason(128, torch.bfloat16) is None
    assert 'power of two' in kernels.attention_reason(80, torch.bfloat16)
    assert 'dtype' in kernels.attention_reason(64, torch.int8)
    x = torch.zeros(1, 8)
    assert not kernels.gemv_ok(x, torch.zeros(4, 8))        # CPU tensors keep F.linear
    assert torch.equal(kernels.linear(x, torch.ones(4, 8)), torch.zeros(1, 4))
    assert kernels.gemv_config(4608, 4096)['BN'] < kernels.gemv_config(151552, 4096)['BN']
    assert kernels.gemv_config(4096, 13696)['BK'] > kernels.gemv_config(4096, 4096)['BK']
