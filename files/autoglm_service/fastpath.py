# -*- coding: utf-8 -*-
"""Fast decode path for Llama-like decoder-only models (Llama, Mistral without sliding window,
Qwen2, GLM in transformers' ``glm`` format, e.g. GLM-4-9B).

The engine's generic path (:class:`autoglm_service.engine.BatchedDecoder`) runs the model's
own ``forward`` over a transformers ``StaticCache``. This module instead walks the model's
layers with its own, much leaner step, reusing the model's weights (no copy) and its RoPE
function:

* **Fused projections.** At load, each layer's q/k/v weights (and biases) are concatenated
  into one matrix, and Llama-style gate/up into one; the original ``nn.Linear`` weights are
  replaced by *views* into the fused storage, so ``model.generate`` still works and no
  memory is duplicated. One GEMV reads all of them.
* **Left-aligned static KV cache** ``[layers, rows, kv_heads, max_len, head_dim]``. Row ``i``
  holds one sequence at positions ``[0, len_i)``; a decode step writes each row's new key/value
  at its own position (``index_put`` with a device index) and attends over ``[0, Lb)`` with a
  boolean mask ``position <= pos_i``, where ``Lb`` is a *length bucket* (64, 128, ... max_len)
  covering the longest live sequence: attention cost follows the real lengths, not the cache
  size. No rolling is ever needed.
* **One CUDA graph per (batch bucket, length bucket)**, captured at start-up, covering the
  whole step: embedding, all layers, final norm, LM head, greedy ``argmax`` written back into
  the input-id buffer, position increment. The host only reads the sampled ids (pipelined one
  step behind by the engine); rows with temperature > 0 are re-sampled eagerly from the
  graph's logits.
* **torch.compile** (``compile='on'``; inductor, no cudagraphs of its own) of the two
  per-layer pieces around attention (RMSNorm + QKV + RoPE; o-proj + residual + RMSNorm +
  gate/up + SiLU*mul + down + residual), shared by all layers and batch sizes, fusing the
  elementwise work into a few kernels. Captured inside our own graphs.
* **Batched prefill.** Waiting prompts are prefilled together as one right-padded
  ``[B, Lb]`` batch with causal attention (flash/SDPA), written straight into their rows;
  logits only for each prompt's last token.
"""

from __future__ import annotations

import logging
import sys
import time

import torch
import torch.nn.functional as F

LOG = logging.getLogger('autoglm_service.fastpath')

SUPPORTED_TYPES = ('llama', 'glm', 'qwen2', 'mistral')
LAYER_CHILDREN = {'self_attn', 'mlp', 'input_layernorm', 'post_attention_layernorm'}
ATTN_CHILDREN = {'q_proj', 'k_proj', 'v_proj', 'o_proj', 'rotary_fn'}
ACTIVATIONS = {'silu': F.silu, 'swish': F.silu}


def smallest_bucket(buckets, n, default):
    """The first bucket (ascending) that holds n, else default (the largest size)."""
    for b in buckets:
        if b >= n:
            return b
    return default


def unsupported_reason(model):
    """None when :class:`FastDecoder` can run ``model``; otherwise why not."""
    cfg = getattr(model, 'config', None)
    mtype = getattr(cfg, 'model_type', None)
    if mtype not in SUPPORTED_TYPES:
        return 'model type %r not in %s' % (mtype, SUPPORTED_TYPES)
    if getattr(cfg, 'sliding_window', None) and getattr(cfg, 'use_sliding_window', True):
        return 'sliding-window attention'
    if getattr(cfg, 'hidden_act', None) not in ACTIVATIONS:
        return 'activation %r' % getattr(cfg, 'hidden_act', None)
    if getattr(cfg, 'pretraining_tp', 1) not in (1, None):
        return 'pretraining_tp > 1'
    inner = getattr(model, 'model', None)
    for name in ('layers', 'embed_tokens', 'norm', 'rotary_emb'):
        if not hasattr(inner, name):
            return 'model.model has no %s' % name
    if not hasattr(model, 'lm_head'):
        return 'no lm_head'
    mod = sys.modules.get(type(inner.layers[0].self_attn).__module__)
    if mod is None or not hasattr(mod, 'apply_rotary_pos_emb'):
        return 'no apply_rotary_pos_emb in the modeling module'
    for layer in inner.layers:
        names = {n for n, _child in layer.named_children()}
        if names - LAYER_CHILDREN:
            return 'decoder layer has extra modules %s' % sorted(names - LAYER_CHILDREN)
        attn = layer.self_attn
        names = {n for n, _child in attn.named_children()}
        if names - ATTN_CHILDREN or not {'q_proj', 'k_proj', 'v_proj', 'o_proj'} <= names:
            return 'attention modules %s' % sorted(names)
        mlp = layer.mlp
        if not (hasattr(mlp, 'down_proj') and (hasattr(mlp, 'gate_up_proj') or
                                               (hasattr(mlp, 'gate_proj') and hasattr(mlp, 'up_proj')))):
            return 'unknown MLP layout'
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            if not (hasattr(norm, 'weight') and hasattr(norm, 'variance_epsilon')) or \
                    'RMSNorm' not in type(norm).__name__:
                return 'norm %s' % type(norm).__name__
    norm = inner.norm
    if not (hasattr(norm, 'weight') and hasattr(norm, 'variance_epsilon')):
        return 'final norm %s' % type(norm).__name__
    return None


def rms_norm(x, weight, eps):
    """transformers' LlamaRMSNorm/GlmRMSNorm, bit for bit."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _fuse_linear(mods):
    """Concatenate nn.Linear weights (and biases) along the output dim; re-point them as views."""
    w = torch.cat([m.weight.data for m in mods], dim=0)
    has_bias = [m.bias is not None for m in mods]
    b = None
    if any(has_bias):
        b = torch.cat([m.bias.data if m.bias is not None else
                       torch.zeros(m.weight.shape[0], dtype=w.dtype, device=w.device) for m in mods])
    off = 0
    for m in mods:
        n = m.weight.shape[0]
        m.weight = torch.nn.Parameter(w[off:off + n], requires_grad=False)
        if m.bias is not None:
            m.bias = torch.nn.Parameter(b[off:off + n], requires_grad=False)
        off += n
    return w, b


class _Layer:
    __slots__ = ('ln1', 'eps1', 'w_qkv', 'b_qkv', 'w_o', 'b_o', 'ln2', 'eps2', 'w_gu', 'b_gu', 'w_d', 'b_d')


class FastDecoder:
    """Static left-aligned KV cache and a lean forward; see the module docstring."""

    fast = True

    def __init__(self, model, max_batch, max_len, device, dtype, use_graphs, compile_mode='off',
                 attn='sdpa', min_bucket=2, prefill_graph_max=1024):
        self.model = model
        self.max_batch = max_batch
        self.max_len = max_len
        self.device = device
        self.dtype = dtype
        self.use_graphs = use_graphs
        cfg = model.config
        inner = model.model
        self.inner = inner
        attn0 = inner.layers[0].self_attn
        self.n_layers = len(inner.layers)
        self.hq = cfg.num_attention_heads
        self.hkv = getattr(cfg, 'num_key_value_heads', None) or self.hq
        self.head_dim = getattr(attn0, 'head_dim', None) or cfg.hidden_size // self.hq
        self.groups = self.hq // self.hkv
        self.scaling = float(getattr(attn0, 'scaling', self.head_dim ** -0.5))
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.rope = sys.modules[type(attn0).__module__].apply_rotary_pos_emb
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            L = _Layer()
            L.ln1, L.eps1 = layer.input_layernorm.weight, float(layer.input_layernorm.variance_epsilon)
            L.ln2, L.eps2 = layer.post_attention_layernorm.weight, float(layer.post_attention_layernorm.variance_epsilon)
            L.w_qkv, L.b_qkv = _fuse_linear([a.q_proj, a.k_proj, a.v_proj])
            L.w_o, L.b_o = a.o_proj.weight, a.o_proj.bias
            if hasattr(m, 'gate_up_proj'):
                L.w_gu, L.b_gu = m.gate_up_proj.weight, m.gate_up_proj.bias
            else:
                L.w_gu, L.b_gu = _fuse_linear([m.gate_proj, m.up_proj])
            L.w_d, L.b_d = m.down_proj.weight, m.down_proj.bias
            self.layers.append(L)
        self.norm_w, self.norm_eps = inner.norm.weight, float(inner.norm.variance_epsilon)
        self.embed = inner.embed_tokens
        self.lm_head = model.lm_head
        dev = device
        # RoPE tables for every position, as the model's own rotary module computes them.
        with torch.no_grad():
            probe = torch.zeros(1, dtype=dtype, device=dev)
            cos, sin = inner.rotary_emb(probe, torch.arange(max_len, device=dev).unsqueeze(0))
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()
        shape = (self.n_layers, max_batch, self.hkv, max_len, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=dtype, device=dev)
        self.v_cache = torch.zeros(shape, dtype=dtype, device=dev)
        self.ids = torch.zeros((max_batch,), dtype=torch.long, device=dev)
        self.pos = torch.zeros((max_batch,), dtype=torch.long, device=dev)
        self.rows = torch.arange(max_batch, device=dev)
        self.arange = torch.arange(max_len, device=dev)
        self.temps = torch.zeros((max_batch,), dtype=torch.float32, device=dev)
        self.top_ps = torch.ones((max_batch,), dtype=torch.float32, device=dev)
        # Batch buckets 1 (or 2: a 2-row GEMM reads the same weights as a 1-row GEMV, and compiled
        # pieces then never see a size-1 batch), 2, 4, ... max_batch.
        first = 0 if (max_batch == 1 or min_bucket <= 1) else 1
        self.buckets = sorted({min(2 ** i, max_batch) for i in range(first, max_batch.bit_length() + 1)})
        # Length buckets 64, 128, 256, then every 128 up to max_len.
        lb, x = [], 64
        while x < min(256, max_len):
            lb.append(x)
            x *= 2
        while x < max_len:
            lb.append(x)
            x += 128
        lb.append(max_len)
        self.len_buckets = lb
        self.attn = attn
        # Single-prompt prefill graphs (TTFT): lengths in steps of 64 up to 512, then 128.
        pb, x = [], 64
        top = min(prefill_graph_max, max_len) if use_graphs else 0
        while x <= top:
            pb.append(x)
            x += 64 if x < 512 else 128
        self.prefill_buckets = pb
        self.pf_graphs = {}
        self.pf_out = {}
        self._alloc_prefill_staging()
        self.graphs = {}
        self.graph_out = {}
        self.pool = None
        self._pre, self._post = self._pre_eager, self._post_eager
        self.compiled = False
        if compile_mode == 'on':
            self._compile()

    def _alloc_prefill_staging(self):
        pb, dev, dtype = self.prefill_buckets, self.device, self.dtype
        if pb:
            self.pf_tok = torch.zeros((1, pb[-1]), dtype=torch.long, device=dev)
            self.pf_last = torch.zeros((1,), dtype=torch.long, device=dev)
            pshape = (self.n_layers, self.hkv, pb[-1], self.head_dim)
            self.pf_k = torch.zeros(pshape, dtype=dtype, device=dev)
            self.pf_v = torch.zeros(pshape, dtype=dtype, device=dev)

    # ------------------------------------------------------------------ pieces
    def _pre_eager(self, x, ln, eps, w_qkv, b_qkv, cos, sin):
        """x [T, H] -> q [T, Hq, D], k [T, Hkv, D], v [T, Hkv, D] (RoPE applied)."""
        h = rms_norm(x, ln, eps)
        qkv = F.linear(h, w_qkv, b_qkv)
        T = x.shape[0]
        D = self.head_dim
        q, k, v = qkv.split([self.hq * D, self.hkv * D, self.hkv * D], dim=-1)
        q = q.view(T, self.hq, D)
        k = k.view(T, self.hkv, D)
        v = v.view(T, self.hkv, D)
        q, k = self.rope(q, k, cos, sin)
        return q, k, v

    def _post_eager(self, x, o, w_o, b_o, ln, eps, w_gu, b_gu, w_d, b_d):
        x = x + F.linear(o, w_o, b_o)
        h = rms_norm(x, ln, eps)
        gu = F.linear(h, w_gu, b_gu)
        gate, up = gu.chunk(2, dim=-1)
        return x + F.linear(up * self.act(gate), w_d, b_d)

    def _compile(self):
        try:
            opts = dict(fullgraph=True, dynamic=None)
            self._pre = torch.compile(self._pre_eager, **opts)
            self._post = torch.compile(self._post_eager, **opts)
            self.compiled = True
        except Exception as exc:  # noqa: BLE001
            LOG.warning('torch.compile unavailable (%s); running the layers eagerly', exc)
            self._pre, self._post = self._pre_eager, self._post_eager

    def _dyn(self, *tensors):
        # compiled pieces: the token dimension is dynamic from the first call (one compile each)
        if self.compiled:
            for t in tensors:
                if t.shape[0] > 1:      # size 1 is always specialised
                    torch._dynamo.mark_dynamic(t, 0)

    def disable_compile(self):
        self._pre, self._post = self._pre_eager, self._post_eager
        self.compiled = False

    # ------------------------------------------------------------------ decode
    def len_bucket(self, n):
        return smallest_bucket(self.len_buckets, n, self.max_len)

    def bucket(self, n):
        return smallest_bucket(self.buckets, n, self.max_batch)

    def _raw_step(self, b, lb):
        """One decode step over rows [0, b) attending over positions [0, lb). Graph-safe."""
        ids = self.ids[:b]
        p = self.pos[:b].clamp(max=self.max_len - 1)
        rows = self.rows[:b]
        x = self.embed(ids)
        cos, sin = self.cos[p], self.sin[p]
        D, G = self.head_dim, self.groups
        allowed = self.arange[:lb].unsqueeze(0) <= p.unsqueeze(1)
        mask = torch.zeros((b, 1, 1, lb), dtype=self.dtype, device=self.device).masked_fill_(
            ~allowed[:, None, None, :], torch.finfo(self.dtype).min).expand(b, self.hkv, G, lb).contiguous()
        self._dyn(x, cos, sin)
        for li, L in enumerate(self.layers):
            q, k, v = self._pre(x, L.ln1, L.eps1, L.w_qkv, L.b_qkv, cos, sin)
            kc, vc = self.k_cache[li], self.v_cache[li]
            kc[rows, :, p] = k
            vc[rows, :, p] = v
            qg = q.reshape(b, self.hkv, G, D)
            if self.attn == 'matmul':
                # 3 kernels: scaled QK^T plus mask in one batched GEMM, softmax (fp32 inside), PV
                n = b * self.hkv
                kt = kc[:b, :, :lb].reshape(n, lb, D).transpose(1, 2)
                scores = torch.baddbmm(mask.view(n, G, lb), qg.reshape(n, G, D), kt, alpha=self.scaling)
                probs = torch.softmax(scores, dim=-1)
                o = torch.bmm(probs, vc[:b, :, :lb].reshape(n, lb, D)).view(b, self.hkv, G, D)
            else:
                o = F.scaled_dot_product_attention(qg, kc[:b, :, :lb], vc[:b, :, :lb], attn_mask=mask,
                                                   scale=self.scaling)
            o = o.reshape(b, self.hq * D)
            self._dyn(o)
            x = self._post(x, o, L.w_o, L.b_o, L.ln2, L.eps2, L.w_gu, L.b_gu, L.w_d, L.b_d)
        x = rms_norm(x, self.norm_w, self.norm_eps)
        logits = self.lm_head(x)
        self.ids[:b].copy_(torch.argmax(logits, dim=-1))
        self.pos[:b].add_(1)
        return logits

    def capture(self, log_every=0):
        """Capture one CUDA graph per (batch bucket, length bucket)."""
        self.pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        saved_ids, saved_pos = self.ids.clone(), self.pos.clone()
        t0 = time.monotonic()
        for b in reversed(self.buckets):
            for lb in reversed(self.len_buckets):
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    self.pos.zero_()
                    self._raw_step(b, lb)
                torch.cuda.current_stream().wait_stream(stream)
                self.pos.zero_()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, pool=self.pool):
                    out = self._raw_step(b, lb)
                self.graphs[(b, lb)] = g
                self.graph_out[(b, lb)] = out
        torch.cuda.synchronize()
        self.ids.copy_(saved_ids)
        self.pos.copy_(saved_pos)
        LOG.info('captured %d decode graphs in %.1fs', len(self.graphs), time.monotonic() - t0)

    def step(self, n, max_len_needed):
        """Decode rows [0, n); ``max_len_needed`` = longest row length after this step.

        Returns the logits [n, vocab]; greedy ids are already in ``self.ids[:n]``."""
        b = self.bucket(n)
        lb = self.len_bucket(max_len_needed)
        g = self.graphs.get((b, lb))
        if g is not None:
            g.replay()
            return self.graph_out[(b, lb)][:n]
        return self._raw_step(b, lb)[:n]

    # ------------------------------------------------------------------ prefill
    def prefill_bucket(self, n):
        for b in self.prefill_buckets:
            if b >= n:
                return b
        return None

    def _prefill_raw(self, tok, last, write_kv):
        """tok [B, lb] (right-padded), last [B] index of each prompt's last token -> logits [B, vocab]."""
        B, lb = tok.shape
        T = B * lb
        D, G = self.head_dim, self.groups
        x = self.embed(tok).view(T, -1)
        cos = self.cos[:lb].repeat(B, 1)
        sin = self.sin[:lb].repeat(B, 1)
        self._dyn(x, cos, sin)
        for li, L in enumerate(self.layers):
            q, k, v = self._pre(x, L.ln1, L.eps1, L.w_qkv, L.b_qkv, cos, sin)
            q = q.reshape(B, lb, self.hq, D).transpose(1, 2)
            k = k.reshape(B, lb, self.hkv, D).transpose(1, 2)
            v = v.reshape(B, lb, self.hkv, D).transpose(1, 2)
            write_kv(li, k, v)
            if G > 1:
                k = k.repeat_interleave(G, dim=1)
                v = v.repeat_interleave(G, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
            o = o.transpose(1, 2).reshape(T, self.hq * D)
            self._dyn(o)
            x = self._post(x, o, L.w_o, L.b_o, L.ln2, L.eps2, L.w_gu, L.b_gu, L.w_d, L.b_d)
        x = x.view(B, lb, -1)[torch.arange(B, device=self.device), last]
        x = rms_norm(x, self.norm_w, self.norm_eps)
        return self.lm_head(x)

    def _pf_stage(self, li, k, v):
        lb = k.shape[2]
        self.pf_k[li, :, :lb].copy_(k[0])
        self.pf_v[li, :, :lb].copy_(v[0])

    def _pf_graph_body(self, lb):
        return self._prefill_raw(self.pf_tok[:, :lb], self.pf_last, self._pf_stage)

    def capture_prefill(self):
        """One graph per single-prompt length bucket: prefill into staging K/V, logits of the last token."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        t0 = time.monotonic()
        self.pf_last.fill_(0)
        for lb in reversed(self.prefill_buckets):
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._pf_graph_body(lb)
            torch.cuda.current_stream().wait_stream(stream)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self.pool):
                out = self._pf_graph_body(lb)
            self.pf_graphs[lb] = g
            self.pf_out[lb] = out
        torch.cuda.synchronize()
        LOG.info('captured %d prefill graphs in %.1fs', len(self.pf_graphs), time.monotonic() - t0)

    def prefill(self, row0, prompts):
        """Prefill ``prompts`` (lists of ids) into rows ``row0 ...``; returns last-token logits [B, vocab]."""
        B = len(prompts)
        lens = [len(p) for p in prompts]
        if B == 1 and self.pf_graphs:
            lb = self.prefill_bucket(lens[0])
            if lb in self.pf_graphs:
                self.pf_tok[0, :lens[0]].copy_(torch.tensor(prompts[0], dtype=torch.long))
                self.pf_last.fill_(lens[0] - 1)
                self.pf_graphs[lb].replay()
                self.k_cache[:, row0, :, :lb].copy_(self.pf_k[:, :, :lb])
                self.v_cache[:, row0, :, :lb].copy_(self.pf_v[:, :, :lb])
                return self.pf_out[lb]
        lb = min(-(-max(lens) // 16) * 16, self.max_len)
        tok = torch.zeros((B, lb), dtype=torch.long)
        for i, p in enumerate(prompts):
            tok[i, :len(p)] = torch.tensor(p, dtype=torch.long)
        tok = tok.to(self.device, non_blocking=True)
        last = torch.tensor([n - 1 for n in lens], device=self.device)

        def write_kv(li, k, v):
            self.k_cache[li, row0:row0 + B, :, :lb].copy_(k)
            self.v_cache[li, row0:row0 + B, :, :lb].copy_(v)
        return self._prefill_raw(tok, last, write_kv)

    # ------------------------------------------------------------------ rows
    def move_row(self, src, dst, length):
        n = max(1, min(int(length), self.max_len))
        self.k_cache[:, dst, :, :n].copy_(self.k_cache[:, src, :, :n])
        self.v_cache[:, dst, :, :n].copy_(self.v_cache[:, src, :, :n])
        for buf in (self.ids, self.pos, self.temps, self.top_ps):
            buf[dst] = buf[src]
