# -*- coding: utf-8 -*-
"""Triton kernels of the fast path's decode step (CUDA; optional).

What a decode step of a 9B model costs on an H200, measured (docs/evidence/h200/
vlm_kernels_before.json): the weight products through cuBLAS reach 3.0-4.1 TB/s (split-K
kernels plus their reduce kernels on the 4,096-wide outputs), and attention over a 4,600-token
screenshot context is five kernels per layer (two KV ``index_put``, a batched QK^T, a softmax,
PV) for ~2.4 MB of keys and values: ~20 us per layer where reading them takes ~1 us. Two
kernels here replace them inside the captured step:

* :func:`gemv` - ``x @ w.T + b`` for one row (a single stream's decode step): each program
  streams ``BN`` whole rows of the weight (no split-K, so no reduce kernel and no fp32
  workspace) with a multiply-and-sum, the bias in its epilogue. Registered as the custom op
  ``autoglm::gemv`` so the compiled layer pieces call it as one opaque kernel. With more rows
  cuBLAS stays: on the H200 a padded ``tl.dot`` version was 3-20 % slower than cuBLAS for 2-16
  rows (decode_kernels.py), while this one is 8-17 % faster for one row on four of the five
  shapes of a 9B step.
* :func:`decode_attention` - flash-decoding for grouped-query attention: programs over
  (row, kv head, split of the span); each writes the step's new key/value into the cache at
  the row's position (the split holding it), loads each key/value block once for all of the
  kv head's query heads, and keeps an online softmax in fp32; a second kernel merges the
  splits by their log-sum-exp. Only positions ``<= pos`` are read, so the work follows each
  row's length, not the length bucket.

Where Triton is missing (CPU-only installs) or a shape does not suit (head size not a power
of two, an odd dtype), the fast path keeps its torch kernels: :func:`attention_reason` and
:func:`gemv_ok` say which. The tests run these kernels in Triton's interpreter on the CPU
(``TRITON_INTERPRET=1``) against the plain torch definitions.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F

try:  # pragma: no cover - depends on the install
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - no Triton: the torch kernels serve
    triton = None
    tl = None

KERNEL_DTYPES = (torch.bfloat16, torch.float16)   # fp32 dots would run as TF32
BLOCK_T = 32            # keys per block of decode attention


def available():
    return triton is not None


def attention_reason(head_dim, dtype):
    """None when :func:`decode_attention` serves this shape, else why not."""
    if triton is None:
        return 'Triton is not installed'
    if head_dim < 16 or head_dim & (head_dim - 1):
        return 'head size %d is not a power of two >= 16' % head_dim
    if dtype not in KERNEL_DTYPES:
        return 'dtype %s' % dtype
    return None


def gemv_ok(x, w):
    """Whether :func:`gemv` takes ``F.linear(x, w)`` (trace-time facts only)."""
    return (triton is not None and x.dim() == 2 and w.dim() == 2 and x.dtype == w.dtype
            and x.dtype in KERNEL_DTYPES and x.is_cuda)


def linear(x, w, b=None):
    """``F.linear`` with :func:`gemv` for one row (a single stream's decode step)."""
    if gemv_ok(x, w) and x.shape[0] == 1:
        return torch.ops.autoglm.gemv(x, w, b)
    return F.linear(x, w, b)


# ---------------------------------------------------------------------------------- kernels
if triton is not None:
    @triton.jit
    def _gemv_kernel(X, W, B, Y, N, K, swn, HAS_BIAS: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        pid = tl.program_id(0)
        rn = pid * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        nmask = rn < N
        wp = W + rn[:, None] * swn + rk[None, :]
        xp = X + rk
        acc = tl.zeros((BN,), dtype=tl.float32)
        for k0 in range(0, K, BK):
            kmask = rk < K - k0
            w = tl.load(wp, mask=nmask[:, None] & kmask[None, :], other=0.0, eviction_policy='evict_first')
            x = tl.load(xp, mask=kmask, other=0.0)
            acc += tl.sum(w.to(tl.float32) * x.to(tl.float32)[None, :], axis=1)
            wp += BK
            xp += BK
        if HAS_BIAS:
            acc += tl.load(B + rn, mask=nmask, other=0.0).to(tl.float32)
        tl.store(Y + rn, acc.to(Y.dtype.element_ty), mask=nmask)

    @triton.jit
    def _attn_split_kernel(Q, KN, VN, KC, VC, POS, OP, LSE, scale, max_pos, split_len,
                           sqb, sqh, snb, snh, svb, svh, scb, sch, sct, sob, soh, sos, slb, slh,
                           G: tl.constexpr, BG: tl.constexpr, D: tl.constexpr, BT: tl.constexpr):
        row = tl.program_id(0)
        h = tl.program_id(1)
        s = tl.program_id(2)
        p = tl.minimum(tl.load(POS + row), max_pos)
        start = s * split_len
        end = tl.minimum(start + split_len, p + 1)
        d = tl.arange(0, D)
        g = tl.arange(0, BG)
        gmask = g < G
        qh = h * G + g
        kn = tl.load(KN + row * snb + h * snh + d)
        vn = tl.load(VN + row * svb + h * svh + d)
        kbase = KC + row * scb + h * sch
        vbase = VC + row * scb + h * sch
        if (start <= p) & (p < start + split_len):
            tl.store(kbase + p * sct + d, kn)
            tl.store(vbase + p * sct + d, vn)
        q = tl.load(Q + row * sqb + qh[:, None] * sqh + d[None, :], mask=gmask[:, None], other=0.0)
        m_i = tl.full((BG,), float('-inf'), dtype=tl.float32)
        l_i = tl.zeros((BG,), dtype=tl.float32)
        acc = tl.zeros((BG, D), dtype=tl.float32)
        for t0 in range(start, end, BT):
            t = t0 + tl.arange(0, BT)
            old = (t < end) & (t != p)          # the new position comes from kn/vn, not the cache
            k = tl.load(kbase + t[:, None] * sct + d[None, :], mask=old[:, None], other=0.0)
            v = tl.load(vbase + t[:, None] * sct + d[None, :], mask=old[:, None], other=0.0)
            new = (t == p)[:, None]
            k = tl.where(new, kn[None, :], k)
            v = tl.where(new, vn[None, :], v)
            qk = tl.dot(q, tl.trans(k), out_dtype=tl.float32) * scale
            qk = tl.where((t < end)[None, :], qk, float('-inf'))
            m_new = tl.maximum(m_i, tl.max(qk, axis=1))
            alpha = tl.exp(m_i - m_new)
            pr = tl.exp(qk - m_new[:, None])
            l_i = l_i * alpha + tl.sum(pr, axis=1)
            acc = acc * alpha[:, None] + tl.dot(pr.to(v.dtype), v, out_dtype=tl.float32)
            m_i = m_new
        safe = tl.where(l_i > 0, l_i, 1.0)
        tl.store(OP + row * sob + qh[:, None] * soh + s * sos + d[None, :], acc / safe[:, None],
                 mask=gmask[:, None])
        tl.store(LSE + row * slb + qh * slh + s, m_i + tl.log(safe), mask=gmask)

    @triton.jit
    def _attn_merge_kernel(OP, LSE, O, POS, max_pos, split_len, sob, soh, sos, slb, slh, syb, syh,
                           D: tl.constexpr, BS: tl.constexpr):
        row = tl.program_id(0)
        qh = tl.program_id(1)
        p = tl.minimum(tl.load(POS + row), max_pos)
        s = tl.arange(0, BS)
        used = s < (p // split_len + 1)          # splits that hold positions <= p
        lse = tl.load(LSE + row * slb + qh * slh + s, mask=used, other=float('-inf'))
        w = tl.exp(lse - tl.max(lse, axis=0))
        w = w / tl.sum(w, axis=0)
        d = tl.arange(0, D)
        o = tl.load(OP + row * sob + qh * soh + s[:, None] * sos + d[None, :], mask=used[:, None], other=0.0)
        out = tl.sum(o * w[:, None], axis=0)
        tl.store(O + row * syb + qh * syh + d, out.to(O.dtype.element_ty))


# ---------------------------------------------------------------------------------- gemv
# Launch shapes, chosen on the H200 by ``tests/benchmarks/decode_kernels.py --sweep``
# (docs/evidence/h200/decode_kernels_sweep_products.json): narrow outputs (q/k/v, o: 4,096-4,608
# rows) want more programs (4 weight rows each), wide ones (gate/up, the LM head) 8 rows each,
# long rows (down: 13,696) wider steps with 8 warps.
GEMV_NARROW = 8192      # outputs up to this are narrow
GEMV_LONG = 8192        # rows (inner size) above this are long


def gemv_config(n, k):
    if k > GEMV_LONG:           # long rows (down: 13,696)
        return dict(BN=8, BK=1024, num_warps=8, num_stages=4)
    if n <= GEMV_NARROW:        # q/k/v, o
        return dict(BN=4, BK=512, num_warps=4, num_stages=4)
    return dict(BN=8, BK=512, num_warps=4, num_stages=2)


def gemv_launch(x, w, b, y, cfg):
    """Launch ``y[1, N] = x[1, K] @ w.T (+ b)`` with launch shape ``cfg`` (benchmarks sweep it)."""
    n, k = w.shape
    cfg = dict(cfg)
    bn = cfg.pop('BN')
    _gemv_kernel[(triton.cdiv(n, bn),)](x, w, b if b is not None else w, y, n, k, w.stride(0),
                                        HAS_BIAS=b is not None, BN=bn, **cfg)
    return y


def gemv(x, w, b=None):
    """``x [1, K] @ w[N, K].T (+ b)``, in x's dtype."""
    x = x.contiguous()
    w = w if w.stride(-1) == 1 else w.contiguous()
    y = torch.empty((1, w.shape[0]), dtype=x.dtype, device=x.device)
    return gemv_launch(x, w, b, y, gemv_config(*w.shape))


def _register_gemv_op():
    @torch.library.custom_op('autoglm::gemv', mutates_args=())
    def _gemv_op(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        return gemv(x, w, b)

    @_gemv_op.register_fake
    def _gemv_fake(x, w, b):
        return x.new_empty((x.shape[0], w.shape[0]))


if triton is not None:
    _register_gemv_op()


# ---------------------------------------------------------------------------------- attention
@functools.lru_cache(maxsize=None)
def _sm_count(index):
    return torch.cuda.get_device_properties(index).multi_processor_count


# chosen on the H200 by ``decode_kernels.py --sweep`` (16 rows x 4,608 positions x 40 layers:
# 1.19 ms against 1.42 with 64-key blocks and 2 programs per multiprocessor; one row: the same)
ATTENTION_LAUNCH = dict(BT=BLOCK_T, num_warps=4, num_stages=3, programs_per_sm=4)


def attention_splits(b, hkv, span, programs, block=BLOCK_T):
    """(split length, splits) for ``b`` rows x ``hkv`` heads over ``span`` positions: about
    ``programs`` programs in all, each split a whole number of key blocks."""
    want = max(1, min(triton.cdiv(span, block), triton.cdiv(programs, b * hkv)))
    split = triton.cdiv(triton.cdiv(span, want), block) * block
    return split, triton.cdiv(span, split)


def decode_attention(q, k, v, k_cache, v_cache, pos, scale, span, max_pos=None, programs=None, launch=None):
    """One decode step's attention for ``b`` rows, writing the step's keys/values.

    ``q [b, Hq, D]``, ``k``/``v [b, Hkv, D]`` (this step's), ``k_cache``/``v_cache
    [rows, Hkv, L, D]``, ``pos [b]`` (each row's new position; clamped to ``max_pos``),
    ``span`` the positions the launch covers (>= every pos + 1). Writes ``k``/``v`` at ``pos``
    and returns ``o [b, Hq * D]``: softmax(q K^T * scale) V over positions ``[0, pos]``.
    ``programs``: how many split programs to aim for (default: ``programs_per_sm`` per
    multiprocessor); ``launch``: :data:`ATTENTION_LAUNCH`'s keys, to override (benchmarks).
    """
    cfg = dict(ATTENTION_LAUNCH, **(launch or {}))
    b, hq, dim = q.shape
    hkv = k.shape[1]
    groups = hq // hkv
    max_pos = k_cache.shape[2] - 1 if max_pos is None else max_pos
    if programs is None:
        programs = cfg['programs_per_sm'] * _sm_count(q.device.index or 0) if q.is_cuda else 8
    split, n_split = attention_splits(b, hkv, span, programs, cfg['BT'])
    part = torch.empty((b, hq, n_split, dim), dtype=torch.float32, device=q.device)
    lse = torch.empty((b, hq, n_split), dtype=torch.float32, device=q.device)
    out = torch.empty((b, hq, dim), dtype=q.dtype, device=q.device)
    assert k_cache.stride(-1) == 1 and q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1
    assert v_cache.stride() == k_cache.stride()
    _attn_split_kernel[(b, hkv, n_split)](
        q, k, v, k_cache, v_cache, pos, part, lse, float(scale), int(max_pos), split,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        part.stride(0), part.stride(1), part.stride(2), lse.stride(0), lse.stride(1),
        G=groups, BG=max(16, triton.next_power_of_2(groups)), D=dim, BT=cfg['BT'], num_warps=cfg['num_warps'],
        num_stages=cfg['num_stages'])
    _attn_merge_kernel[(b, hq)](
        part, lse, out, pos, int(max_pos), split,
        part.stride(0), part.stride(1), part.stride(2), lse.stride(0), lse.stride(1), out.stride(0), out.stride(1),
        D=dim, BS=max(2, triton.next_power_of_2(n_split)), num_warps=4)
    return out.view(b, hq * dim)
