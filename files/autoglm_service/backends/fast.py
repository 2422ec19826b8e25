# -*- coding: utf-8 -*-
"""Fast backend: a lean decode step of our own for the architectures in :data:`ARCHS`.

Text models (Llama, Mistral without sliding window, Qwen2, GLM in transformers' ``glm`` and
``glm4`` formats) and the language model of GLM-4.1V (``glm4v``, AutoGLM-Phone-9B). An
architecture is one :class:`Arch` row: where the decoder sits in the model, whether its layers
carry GLM-4's extra ("sandwich") norms, and how a prompt with images becomes embeddings and
M-RoPE positions. The step walks the model's layers, reusing its weights (no copy) and its
RoPE function:

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
* **RoPE offsets.** Each row's rotary position is its cache position plus a per-row offset
  (``rope_off``): 0 for text, the M-RoPE delta for a GLM-4.1V prompt with images (image tokens
  take fewer positions than tokens; after the prompt all three M-RoPE components are equal, so
  decode uses the plain table).
* **One CUDA graph per (batch bucket, length bucket)**, captured at start-up, covering the
  whole step: embedding, all layers, final norm, LM head, the rows' frequency/presence/
  repetition penalties (``attach_sampler``), greedy ``argmax`` written back into the input-id
  buffer, position increment.
* **torch.compile** (``compile='on'``; inductor, no cudagraphs of its own) of the two
  per-layer pieces around attention, shared by all layers and batch sizes. Captured inside
  our own graphs.
* **Prefill** runs the same layers over ``[B, Lb]`` right-padded prompts with causal SDPA,
  written straight into their rows; text prompts are batched, a prompt with images goes alone
  with the embeddings and 3-D positions the model's own vision tower and ``get_rope_index``
  give. Single text prompts up to ``prefill_graph_max`` tokens replay a captured graph.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from typing import List

import torch
import torch.nn.functional as F

from ..types import EngineConfig, EngineError, Prompt
from . import kernels
from .archs import ACTIVATIONS, ARCHS, text_config
from .base import Backend, power_of_two_buckets, smallest_bucket
from .fast_prefill import FastPrefill, prefill_lengths
from .ops import fuse_linear, rms_norm
from .prefix_cache import PrefixCache

LOG = logging.getLogger('autoglm_service.backends.fast')


class _Layer:
    __slots__ = ('ln1', 'eps1', 'w_qkv', 'b_qkv', 'w_o', 'b_o', 'ln2', 'eps2', 'w_gu', 'b_gu', 'w_d', 'b_d',
                 'ln_pa', 'ln_pm')


LENGTH_STEPS = ((2048, 128), (8192, 512), (None, 2048))


def _length_buckets(max_len):
    """Attention spans of decode steps: 64, 128, 256, then every 128 to 2,048, every 512 to
    8,192, every 2,048 beyond, and max_len (a few dozen graphs even for a 25k context)."""
    lb, x = [], 64
    while x < min(256, max_len):
        lb.append(x)
        x *= 2
    for upto, step in LENGTH_STEPS:
        while x < max_len and (upto is None or x < upto):
            lb.append(x)
            x += step
    lb.append(max_len)
    return lb


class FastBackend(FastPrefill, Backend):
    """Static left-aligned KV cache and a lean forward; see the module docstring."""

    name = 'fast'
    chunked = True

    def __init__(self, model, rows, max_len, device, dtype, use_graphs, compile_mode='off',
                 attn='matmul', min_bucket=1, prefill_graph_max=1024, prefix_cache_tokens=0,
                 prefix_block=64, image_token_ids=(), products='torch'):
        super().__init__(model, rows, max_len, device, dtype)
        self.arch = ARCHS[model.config.model_type]
        self.supports_images = self.arch.embed_images is not None
        self.use_graphs = use_graphs
        cfg = text_config(model)
        inner = self.arch.decoder(model)
        attn0 = inner.layers[0].self_attn
        self.n_layers = len(inner.layers)
        self.hq = cfg.num_attention_heads
        self.hkv = getattr(cfg, 'num_key_value_heads', None) or self.hq
        self.head_dim = getattr(attn0, 'head_dim', None) or cfg.hidden_size // self.hq
        self.groups = self.hq // self.hkv
        self.scaling = float(getattr(attn0, 'scaling', self.head_dim ** -0.5))
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.rope = sys.modules[type(attn0).__module__].apply_rotary_pos_emb
        self.layers = [self._take_layer(layer) for layer in inner.layers]
        self.norm_w, self.norm_eps = inner.norm.weight, float(inner.norm.variance_epsilon)
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.lm_head = model.lm_head
        dev = device
        # RoPE tables for every position, as the model's own rotary module computes them (M-RoPE
        # modules want [3, 1, T] positions: transformers 5.17 does not broadcast [1, T] itself).
        with torch.no_grad():
            positions = torch.arange(max_len, device=dev)[None]
            if self.arch.mrope:
                positions = positions.expand(3, 1, -1)
            cos, sin = self.rotary(torch.zeros(1, dtype=dtype, device=dev), positions)
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()
        shape = (self.n_layers, rows, self.hkv, max_len, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=dtype, device=dev)
        self.v_cache = torch.zeros(shape, dtype=dtype, device=dev)
        self.pos = torch.zeros((rows,), dtype=torch.long, device=dev)        # next cache position per row
        self.rope_off = torch.zeros((rows,), dtype=torch.long, device=dev)   # rotary position - cache position
        self.row_idx = torch.arange(rows, device=dev)
        self.arange = torch.arange(max_len, device=dev)
        # Batch buckets 1 (or 2), 2, 4, ... rows; length buckets for the attention span.
        self.buckets = power_of_two_buckets(rows, first=1 if (rows == 1 or min_bucket <= 1) else 2)
        self.len_buckets = _length_buckets(max_len)
        self.attn = self._choose_attention(attn)
        self.products = self._choose_products(products)
        self._linear = kernels.linear if self.products == 'triton' else F.linear
        self.prefill_buckets = prefill_lengths(min(prefill_graph_max, max_len)) if use_graphs else []
        self.pf_graphs, self.pf_out = {}, {}
        self.graphs, self.graph_out = {}, {}
        self.pool = None
        self._alloc_prefill_staging()
        self.prefix = PrefixCache(self.n_layers, self.hkv, self.head_dim, prefix_cache_tokens, prefix_block,
                                  dev, dtype, stop_ids=image_token_ids) if prefix_cache_tokens else None
        self._pre = self._pre_eager
        self._post = self._post_sandwich if self.arch.sandwich else self._post_eager
        self.compiled = False
        self._penalize = None
        self.logits_out = None
        self._vision_undo = None
        if compile_mode == 'on':
            self._compile()

    def attach_sampler(self, sampler):
        """Apply ``sampler``'s per-row penalties inside each decode step (before the argmax, in
        the captured graphs): afterwards ``decode`` returns penalised float logits and ``ids``
        the penalised greedy choice (``penalized``). Call before ``warmup``."""
        sampler.enable_in_step()
        self._penalize = sampler.penalize
        if self.compiled:
            self._penalize = torch.compile(sampler.penalize, fullgraph=True, dynamic=None)
        self.logits_out = torch.zeros((self.rows, sampler.vocab), dtype=torch.float32, device=self.device)
        self._sampler = sampler
        self.penalized = True

    def _kernel_choice(self, name, value, reason, fallback):
        """Setting ``name`` (decode_attention, decode_products): ``auto`` is triton on CUDA unless
        ``reason`` says why not (then ``fallback``); ``triton`` where it cannot run is an error."""
        if not str(self.device).startswith('cuda'):
            reason = 'not running on CUDA'
        if value == 'triton' and reason is not None:
            choices = next(f.metadata['choices'] for f in dataclasses.fields(EngineConfig) if f.name == name)
            raise EngineError('%s=triton: %s (allowed: %s)' % (name, reason, ', '.join(choices)))
        if value == 'auto':
            return 'triton' if reason is None else fallback
        return value

    def _choose_attention(self, attn):
        """decode_attention: auto is triton where it serves (CUDA, Triton, head size), else matmul."""
        return self._kernel_choice('decode_attention', attn, kernels.attention_reason(self.head_dim, self.dtype),
                                   'matmul')

    def _choose_products(self, products):
        """decode_products: auto is triton on CUDA with Triton installed, else torch (cuBLAS)."""
        return self._kernel_choice('decode_products', products,
                                   None if kernels.available() else 'Triton is not installed', 'torch')

    def _take_layer(self, layer):
        a, m = layer.self_attn, layer.mlp
        L = _Layer()
        L.ln1, L.eps1 = layer.input_layernorm.weight, float(layer.input_layernorm.variance_epsilon)
        L.ln2, L.eps2 = layer.post_attention_layernorm.weight, float(layer.post_attention_layernorm.variance_epsilon)
        L.w_qkv, L.b_qkv = fuse_linear([a.q_proj, a.k_proj, a.v_proj])
        L.w_o, L.b_o = a.o_proj.weight, a.o_proj.bias
        if hasattr(m, 'gate_up_proj'):
            L.w_gu, L.b_gu = m.gate_up_proj.weight, m.gate_up_proj.bias
        else:
            L.w_gu, L.b_gu = fuse_linear([m.gate_proj, m.up_proj])
        L.w_d, L.b_d = m.down_proj.weight, m.down_proj.bias
        # GLM-4's extra norms (eps folded in: same eps as the layer's own norms)
        L.ln_pa = getattr(getattr(layer, 'post_self_attn_layernorm', None), 'weight', None)
        L.ln_pm = getattr(getattr(layer, 'post_mlp_layernorm', None), 'weight', None)
        return L

    def _alloc_prefill_staging(self):
        pb, dev, dtype = self.prefill_buckets, self.device, self.dtype
        if pb:
            self.pf_tok = torch.zeros((1, pb[-1]), dtype=torch.long, device=dev)
            self.pf_last = torch.zeros((1,), dtype=torch.long, device=dev)
            pshape = (self.n_layers, self.hkv, pb[-1], self.head_dim)
            self.pf_k = torch.zeros(pshape, dtype=dtype, device=dev)
            self.pf_v = torch.zeros(pshape, dtype=dtype, device=dev)

    # ------------------------------------------------------------------ layer pieces
    def _pre_eager(self, x, ln, eps, w_qkv, b_qkv, cos, sin):
        """x [T, H] -> q [T, Hq, D], k [T, Hkv, D], v [T, Hkv, D] (RoPE applied)."""
        h = rms_norm(x, ln, eps)
        qkv = self._linear(h, w_qkv, b_qkv)
        T = x.shape[0]
        D = self.head_dim
        q, k, v = qkv.split([self.hq * D, self.hkv * D, self.hkv * D], dim=-1)
        q = q.view(T, self.hq, D)
        k = k.view(T, self.hkv, D)
        v = v.view(T, self.hkv, D)
        q, k = self.rope(q, k, cos, sin)
        return q, k, v

    # Weights are passed as tensors, not as the layer object: compiled code is then shared by
    # all layers (guards on tensor shapes, not on 40 different objects).
    def _post_eager(self, x, o, w_o, b_o, ln, eps, w_gu, b_gu, w_d, b_d, ln_pa, ln_pm):
        x = x + self._linear(o, w_o, b_o)
        h = rms_norm(x, ln, eps)
        gate, up = self._linear(h, w_gu, b_gu).chunk(2, dim=-1)
        return x + self._linear(up * self.act(gate), w_d, b_d)

    def _post_sandwich(self, x, o, w_o, b_o, ln, eps, w_gu, b_gu, w_d, b_d, ln_pa, ln_pm):
        x = x + rms_norm(self._linear(o, w_o, b_o), ln_pa, eps)
        h = rms_norm(x, ln, eps)
        gate, up = self._linear(h, w_gu, b_gu).chunk(2, dim=-1)
        return x + rms_norm(self._linear(up * self.act(gate), w_d, b_d), ln_pm, eps)

    def _compile(self):
        try:
            opts = dict(fullgraph=True, dynamic=None)
            self._pre = torch.compile(self._pre_eager, **opts)
            self._post = torch.compile(self._post_sandwich if self.arch.sandwich else self._post_eager, **opts)
            self.compiled = True
            if self.arch.fuse_vision is not None:
                self._vision_undo = self.arch.fuse_vision(self.model, compile=True)
        except Exception as exc:  # noqa: BLE001
            LOG.warning('torch.compile unavailable (%s); running the layers eagerly', exc)
            self.disable_compile()

    def disable_compile(self):
        self._pre = self._pre_eager
        self._post = self._post_sandwich if self.arch.sandwich else self._post_eager
        if self._penalize is not None:
            self._penalize = self._sampler.penalize
        if self._vision_undo is not None:
            self._vision_undo()
            self._vision_undo = None
        self.compiled = False

    def _dyn(self, *tensors):
        # compiled pieces: the token dimension is dynamic from the first call (one compile each)
        if self.compiled:
            for t in tensors:
                if t.shape[0] > 1:      # size 1 is always specialised
                    torch._dynamo.mark_dynamic(t, 0)

    def _layers(self, x, cos, sin, attend):
        """Run every layer over tokens ``x [T, H]``; ``attend(li, q, k, v) -> o [T, Hq*D]``."""
        self._dyn(x, cos, sin)
        for li, L in enumerate(self.layers):
            q, k, v = self._pre(x, L.ln1, L.eps1, L.w_qkv, L.b_qkv, cos, sin)
            o = attend(li, q, k, v)
            self._dyn(o)
            x = self._post(x, o, L.w_o, L.b_o, L.ln2, L.eps2, L.w_gu, L.b_gu, L.w_d, L.b_d, L.ln_pa, L.ln_pm)
        return x

    # ------------------------------------------------------------------ decode
    def len_bucket(self, n):
        return smallest_bucket(self.len_buckets, n, self.max_len)

    def bucket(self, n):
        return smallest_bucket(self.buckets, n, self.rows)

    def _raw_step(self, b, lb):
        """One decode step over rows [0, b) attending over positions [0, lb). Graph-safe."""
        p = self.pos[:b].clamp(max=self.max_len - 1)
        rows = self.row_idx[:b]
        rp = (p + self.rope_off[:b]).clamp(0, self.max_len - 1)
        cos, sin = self.cos[rp], self.sin[rp]
        D, G = self.head_dim, self.groups
        if self.attn != 'triton':
            allowed = self.arange[:lb].unsqueeze(0) <= p.unsqueeze(1)
            mask = torch.zeros((b, 1, 1, lb), dtype=self.dtype, device=self.device).masked_fill_(
                ~allowed[:, None, None, :], torch.finfo(self.dtype).min).expand(b, self.hkv, G, lb).contiguous()

        def attend(li, q, k, v):
            kc, vc = self.k_cache[li], self.v_cache[li]
            if self.attn == 'triton':
                # writes this step's keys/values at p and reads only positions <= p
                return kernels.decode_attention(q, k, v, kc, vc, p, self.scaling, lb)
            kc[rows, :, p] = k
            vc[rows, :, p] = v
            qg = q.reshape(b, self.hkv, G, D)
            if self.attn == 'matmul':
                # 3 kernels: scaled QK^T plus mask in one batched GEMM, softmax, PV
                n = b * self.hkv
                kt = kc[:b, :, :lb].reshape(n, lb, D).transpose(1, 2)
                scores = torch.baddbmm(mask.view(n, G, lb), qg.reshape(n, G, D), kt, alpha=self.scaling)
                o = torch.bmm(torch.softmax(scores, dim=-1), vc[:b, :, :lb].reshape(n, lb, D))
            else:
                o = F.scaled_dot_product_attention(qg, kc[:b, :, :lb], vc[:b, :, :lb], attn_mask=mask,
                                                   scale=self.scaling)
            return o.reshape(b, self.hq * D)

        x = self._layers(self.embed(self.ids[:b]), cos, sin, attend)
        logits = self._linear(rms_norm(x, self.norm_w, self.norm_eps), self.lm_head.weight, self.lm_head.bias)
        if self._penalize is not None:
            # the rows' penalties inside the step: greedy rows with frequency_penalty (the
            # phone agent's 0.2) keep the in-graph argmax; one static output buffer for all graphs
            logits = self._penalize(logits.float(), 0)
            self.logits_out[:b].copy_(logits)
            logits = self.logits_out[:b]
        self.ids[:b].copy_(torch.argmax(logits, dim=-1))
        self.pos[:b].add_(1)
        return logits

    def capture(self):
        """Capture one CUDA graph per (batch bucket, length bucket)."""
        self.pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        saved = self.ids.clone(), self.pos.clone(), self.rope_off.clone()
        self.rope_off.zero_()
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
        for buf, old in zip((self.ids, self.pos, self.rope_off), saved):
            buf.copy_(old)
        LOG.info('captured %d decode graphs in %.1fs', len(self.graphs), time.monotonic() - t0)

    def decode(self, n):
        b = self.bucket(n)
        lb = self.len_bucket(max(self.lens[:n]) + 1)
        for i in range(n):
            self.lens[i] += 1
        g = self.graphs.get((b, lb))
        if g is not None:
            g.replay()
            return self.graph_out[(b, lb)][:n]
        return self._raw_step(b, lb)[:n]

    # ------------------------------------------------------------------ rows
    def move_row(self, src, dst):
        n = max(1, min(int(self.lens[src]), self.max_len))
        self.k_cache[:, dst, :, :n].copy_(self.k_cache[:, src, :, :n])
        self.v_cache[:, dst, :, :n].copy_(self.v_cache[:, src, :, :n])
        for buf in (self.pos, self.rope_off):
            buf[dst] = buf[src]
        self.move_meta(src, dst)

    # ------------------------------------------------------------------ warm-up
    def warmup(self, prompt_ids: List[int], image_prompt=None):
        """Compile and run every shape (the vision tower too, given a prompt with an image);
        capture decode and prefill graphs on CUDA."""
        t0 = time.monotonic()
        prompt = Prompt(ids=list(prompt_ids))

        def run_all():
            if image_prompt is not None and self.supports_images:
                self.prefill(0, [image_prompt])
            # prefill shapes (B=1 and B=2 so that compiled pieces go dynamic once, here)
            self.prefill(0, [prompt])
            if self.rows > 1:
                self.prefill(0, [prompt, Prompt(ids=prompt.ids * 2)])
            for b in self.buckets:
                self.pos.zero_()
                self._raw_step(b, self.len_buckets[0])
            for lb in self.len_buckets:
                self.pos.zero_()
                self._raw_step(1, lb)
            if str(self.device).startswith('cuda'):
                torch.cuda.synchronize()
        try:
            run_all()
        except Exception as exc:  # noqa: BLE001 - compile failures fall back to eager
            if not self.compiled:
                raise
            LOG.warning('torch.compile failed in warm-up (%s: %s); running the layers eagerly',
                        type(exc).__name__, exc)
            self.disable_compile()
            run_all()
        LOG.info('fast path warm-up (compile=%s) in %.1fs', self.compiled, time.monotonic() - t0)
        if self.use_graphs:
            for capture, store in ((self.capture, (self.graphs, self.graph_out)),
                                   (self.capture_prefill, (self.pf_graphs, self.pf_out))):
                try:
                    capture()
                except Exception as exc:  # noqa: BLE001
                    LOG.warning('graph capture (%s) failed (%s: %s); running eagerly', capture.__name__,
                                type(exc).__name__, exc)
                    for d in store:
                        d.clear()
                    torch.cuda.synchronize()
        self.pos.zero_()
        self.ids.zero_()
        self.rope_off.zero_()
        self.lens = [0] * self.rows
