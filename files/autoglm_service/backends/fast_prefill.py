# -*- coding: utf-8 -*-
"""Prefill of the fast backend (a mixin of :class:`~autoglm_service.backends.fast.FastBackend`).

* Text prompts together: ``[B, Lb]`` right-padded, causal SDPA, keys/values written straight
  into their rows; a single short prompt replays a captured graph (static token buffer,
  staging K/V copied into the row).
* In pieces (``begin_prefill`` / ``prefill_next``): a prompt with images (the vision tower runs
  once, its embeddings and M-RoPE positions are sliced per piece), a prompt longer than the
  budget, or one whose leading blocks are in the prefix cache. A piece attends over the row's
  cached positions and itself (mask ``j <= start + i``).
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from ..types import Prompt
from .base import smallest_bucket
from .ops import rms_norm

LOG = logging.getLogger('autoglm_service.backends.fast')


def prefill_lengths(top):
    """Single-prompt prefill graph lengths: steps of 64 up to 512, then 128."""
    pb, x = [], 64
    while x <= top:
        pb.append(x)
        x += 64 if x < 512 else 128
    return pb


class _Partial:
    """A prompt being prefilled piece by piece."""

    __slots__ = ('prompt', 'total', 'done', 'ids', 'emb', 'cos', 'sin', 'delta')

    def __init__(self, prompt):
        self.prompt, self.total, self.done, self.delta = prompt, len(prompt.ids), 0, 0
        self.ids = self.emb = self.cos = self.sin = None


class FastPrefill:
    """Prefill methods; the state (caches, layers, tables) is FastBackend's."""

    # ------------------------------------------------------------------ prefill
    def _prefill_raw(self, x, cos, sin, B, lb, last, write_kv):
        """x [B*lb, H] right-padded prompts, cos/sin [B*lb, D], last [B] -> logits [B, vocab]."""
        D, G = self.head_dim, self.groups
        T = B * lb

        def attend(li, q, k, v):
            q = q.reshape(B, lb, self.hq, D).transpose(1, 2)
            k = k.reshape(B, lb, self.hkv, D).transpose(1, 2)
            v = v.reshape(B, lb, self.hkv, D).transpose(1, 2)
            write_kv(li, k, v)
            if G > 1:
                k = k.repeat_interleave(G, dim=1)
                v = v.repeat_interleave(G, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
            return o.transpose(1, 2).reshape(T, self.hq * D)

        x = self._layers(x, cos, sin, attend)
        x = x.view(B, lb, -1)[torch.arange(B, device=self.device), last]
        return self.lm_head(rms_norm(x, self.norm_w, self.norm_eps))

    def _prefill_tokens(self, tok, last, write_kv):
        B, lb = tok.shape
        x = self.embed(tok).view(B * lb, -1)
        return self._prefill_raw(x, self.cos[:lb].repeat(B, 1), self.sin[:lb].repeat(B, 1), B, lb, last, write_kv)

    def _pf_stage(self, li, k, v):
        lb = k.shape[2]
        self.pf_k[li, :, :lb].copy_(k[0])
        self.pf_v[li, :, :lb].copy_(v[0])

    def _pf_graph_body(self, lb):
        return self._prefill_tokens(self.pf_tok[:, :lb], self.pf_last, self._pf_stage)

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

    def prefill_groups(self, prompts, budget):
        """Text prompts are prefilled together while the padded batch fits ``budget`` tokens."""
        if not prompts:
            return 0
        if prompts[0].inputs is not None:
            return 1
        n, longest = 0, 0
        for p in prompts:
            if p.inputs is not None:
                break
            longest = max(longest, len(p.ids))
            if n and (n + 1) * (-(-longest // 16) * 16) > budget:
                break
            n += 1
        return n

    def _write_rows(self, row0, B, lb):
        def write_kv(li, k, v):
            self.k_cache[li, row0:row0 + B, :, :lb].copy_(k)
            self.v_cache[li, row0:row0 + B, :, :lb].copy_(v)
        return write_kv

    def prefill(self, row0, prompts: Sequence[Prompt]):
        B = len(prompts)
        lens = [len(p.ids) for p in prompts]
        for i, n in enumerate(lens):
            self.lens[row0 + i] = n
        self.pos[row0:row0 + B] = torch.tensor(lens, device=self.device)
        if prompts[0].inputs is not None:
            return self._prefill_images(row0, prompts[0])
        self.rope_off[row0:row0 + B] = 0
        if B == 1 and self.pf_graphs:
            lb = smallest_bucket(self.prefill_buckets, lens[0], None)
            if lb in self.pf_graphs:
                self.pf_tok[0, :lens[0]].copy_(torch.tensor(prompts[0].ids, dtype=torch.long))
                self.pf_last.fill_(lens[0] - 1)
                self.pf_graphs[lb].replay()
                self.k_cache[:, row0, :, :lb].copy_(self.pf_k[:, :, :lb])
                self.v_cache[:, row0, :, :lb].copy_(self.pf_v[:, :, :lb])
                return self.pf_out[lb]
        lb = min(-(-max(lens) // 16) * 16, self.max_len)
        tok = torch.zeros((B, lb), dtype=torch.long)
        for i, p in enumerate(prompts):
            tok[i, :len(p.ids)] = torch.tensor(p.ids, dtype=torch.long)
        tok = tok.to(self.device, non_blocking=True)
        last = torch.tensor([n - 1 for n in lens], device=self.device)
        return self._prefill_tokens(tok, last, self._write_rows(row0, B, lb))

    def _prefill_images(self, row, prompt):
        """One prompt with images, in one piece."""
        state = self.begin_prefill(row, prompt, reuse=False)
        return self.prefill_next(row, state, state.total)

    def prepare(self, prompt):
        """An image prompt's M-RoPE positions, computed on the CPU when it is encoded (the model's
        ``get_rope_index`` walks the tokens in Python and would otherwise stall the engine thread
        and the GPU queue with its device reads)."""
        if prompt.inputs is not None and self.arch.positions is not None:
            prompt.positions = self.arch.positions(self.model, prompt)

    # ------------------------------------------------------------------ chunked prefill, prefix reuse
    def begin_prefill(self, row, prompt, reuse=True):
        """Start a prompt that is prefilled in pieces (``prefill_next``) into ``row``.

        Images: the vision tower runs once here, for the whole prompt; its embeddings and
        M-RoPE positions are sliced per piece. Cached prefix blocks are copied in first."""
        st = _Partial(prompt)
        if prompt.inputs is not None:
            emb, pos3d, st.delta = self.arch.embed_images(self.model, prompt, self.device, self.dtype)
            cos, sin = self.rotary(emb[None], pos3d)
            st.emb, st.cos, st.sin = emb, cos[0], sin[0]
        else:
            st.ids = torch.tensor(prompt.ids, dtype=torch.long, device=self.device)
        if reuse and self.prefix is not None:
            _n, slots = self.prefix.match(prompt.ids)
            st.done = self.prefix.load(self.k_cache, self.v_cache, row, slots)
        self.lens[row] = st.done
        self.pos[row] = st.done
        self.rope_off[row] = st.delta
        return st

    def prefill_next(self, row, st, budget):
        """Prefill the next ``budget`` tokens of ``st`` into ``row``; the last-token logits
        ``[1, vocab]`` once the prompt is complete, else None."""
        start, end = st.done, min(st.total, st.done + max(1, budget))
        T = end - start
        if st.emb is not None:
            x, cos, sin = st.emb[start:end], st.cos[start:end], st.sin[start:end]
        else:
            x, cos, sin = self.embed(st.ids[start:end]), self.cos[start:end], self.sin[start:end]
        D, G = self.head_dim, self.groups

        def attend(li, q, k, v):
            kc, vc = self.k_cache[li, row], self.v_cache[li, row]
            kc[:, start:end] = k.transpose(0, 1)
            vc[:, start:end] = v.transpose(0, 1)
            qh = q.transpose(0, 1)[None]
            if start == 0:
                o = F.scaled_dot_product_attention(qh, k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                                   is_causal=True, scale=self.scaling, enable_gqa=G > 1)
            else:
                # the piece sees the row's cached positions and itself causally: the lower-right
                # causal mask, which SDPA runs as flash attention (an explicit mask would take the
                # slower masked kernel); heads expanded for it (GQA is not in that path)
                kk, vv = kc[None, :, :end], vc[None, :, :end]
                if G > 1:
                    kk, vv = kk.repeat_interleave(G, dim=1), vv.repeat_interleave(G, dim=1)
                o = F.scaled_dot_product_attention(qh, kk, vv, attn_mask=causal_lower_right(T, end),
                                                   scale=self.scaling)
            return o[0].transpose(0, 1).reshape(T, self.hq * D)

        x = self._layers(x, cos, sin, attend)
        st.done = end
        self.lens[row] = end
        self.pos[row] = end
        if end < st.total:
            return None
        if self.prefix is not None:
            self.prefix.store(self.k_cache, self.v_cache, row, st.prompt.ids)
        return self.lm_head(rms_norm(x[-1:], self.norm_w, self.norm_eps))

    def wants_chunks(self, prompt, budget):
        """This prompt goes the piecewise way: images, longer than the budget, or a cached prefix."""
        if prompt.inputs is not None or len(prompt.ids) > budget:
            return True
        return self.prefix is not None and self.prefix.match(prompt.ids)[0] > 0
