# -*- coding: utf-8 -*-
"""GLM-4.1V reference behaviour on a tiny random Glm4vForConditionalGeneration.

These tests pin what transformers 5.24 does, so that a batched / CUDA-graph decode path for
GLM-4.1V (AutoGLM-Phone-9B) can be checked against it. Notes (source:
transformers/models/glm4v/modeling_glm4v.py unless named otherwise):

Prefill positions (M-RoPE)
  ``Glm4vModel.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw,
  attention_mask)`` -> ``position_ids`` (3, B, L) and ``rope_deltas`` (B, 1). Per row, over the
  unpadded tokens only (padded slots stay 0), tokens are grouped by ``mm_token_type_ids``
  (0 text, 1 image, 2 video; the processor returns it, ``Glm4vProcessor.create_mm_token_type_ids``).
  A text run of n tokens: t = h = w = cur + arange(n); cur += n. An image with patch grid
  ``image_grid_thw`` = (1, gh, gw) has gh*gw/4 tokens (2x2 merge) in raster order over the
  merged grid (gh/2, gw/2): t = cur, h = cur + row, w = cur + col; then cur += max(gh, gw)/2
  (not the token count). ``rope_delta = max(position) + 1 - n_real_tokens``; one image:
  ``delta = max(gh, gw)/2 - gh*gw/4`` (1080x2400 screenshot: 86 - 3354 = -3268). Videos: the
  grid is split per frame (t=1 each), frames separated by timestamp text.
  ``Glm4vModel.compute_3d_position_ids`` (what forward does when position_ids is None) calls
  get_rope_index on an empty cache and STORES ``self.rope_deltas`` on the module; with a
  non-empty cache it returns (attention_mask.cumsum(-1) - 1, or arange(cache_len, ...)) +
  self.rope_deltas. That state is per model, not per request: a batched server computes the
  positions itself and passes ``position_ids``. ``mm_token_type_ids`` is required whenever
  ``image_grid_thw`` is passed without position_ids (ValueError otherwise).

Generate and decode positions
  ``Glm4vForConditionalGeneration._prepare_position_ids_for_generation`` builds once a (4, B, L)
  tensor: row 0 = text positions (attention_mask.cumsum - 1, pads 0), rows 1-3 = (t, h, w) from
  get_rope_index (and sets model.model.rope_deltas). Each step
  ``GenerationMixin._update_model_kwargs_for_generation`` (generation/utils.py) appends
  ``position_ids[..., -1:] + 1`` to all four rows, and ``prepare_inputs_for_generation`` slices
  the new positions. ``Glm4vTextModel.forward``: 4 rows -> row 0 only builds the causal mask
  (packed-sequence detection), rows 1-3 feed the rotary; 3 rows -> all to the rotary, mask from
  attention_mask; 2-D (B, q) -> broadcast to t = h = w.
  A chat prompt ends in text, so its last position is n_real - 1 + delta in all three
  components; decode token i (0-based) has position ``n_real + i + delta`` in t, h and w alike.
  Without padding n_real + i is the token's slot in the KV cache (its cache position): decode
  position = cache_position + rope_delta. With left padding, subtract the row's pad count
  from the slot first (generate does the same through attention_mask.cumsum).
  Text-only rows have delta 0. A decode step passes position_ids as (3, B, 1) (or (B, 1)).

Text decoder layer (``Glm4vTextDecoderLayer.forward``), four RMSNorms (eps 1e-5, fp32 inside):
  x = x + post_self_attn_layernorm(self_attn(input_layernorm(x)))
  x = x + post_mlp_layernorm(mlp(post_attention_layernorm(x)))
  then ``Glm4vTextModel.norm`` and an untied ``lm_head``.
Attention (``Glm4vTextAttention``): q/k/v_proj with bias (hard-coded True), o_proj without;
  head_dim = hidden_size / num_attention_heads (128 for 9B; a config head_dim is not read);
  32 query / 2 KV heads (GQA); scale head_dim**-0.5; no q/k norm.
Rotary (``Glm4vTextRotaryEmbedding`` + ``apply_rotary_pos_emb``): rotary dims rd = head_dim *
  partial_rotary_factor (0.5 -> 64), inv_freq = theta**(-arange(0, rd, 2)/rd), theta 10000
  (32 frequencies). freqs[c] = pos[c] * inv_freq for c in (t, h, w); frequency j takes its
  position from component k where mrope_section = [8, 12, 12] puts j (t: 0-7, h: 8-19, w: 20-31);
  cos/sin are then repeat_interleave(2) -> [f0, f0, f1, f1, ...]. The first rd dims of every
  q/k head rotate, the rest pass; rotate_half_llm is interleaved (pairs (x0, x1) -> (-x1, x0)),
  the GPT-J layout of transformers' Glm. For text tokens (t = h = w = p) it is exactly Glm's
  interleaved partial rotary at position p.
MLP (``Glm4vTextMLP``): fused ``gate_up_proj`` Linear(hidden, 2*intermediate, no bias); gate =
  first half, up = second half; ``down_proj(up * silu(gate))``.
Vision and merge: ``Glm4vVisionModel``: Conv3d patch embed (2x14x14 over pixel_values rows of
  3*2*14*14 = 1176, which the processor orders by 2x2 merge window), RMSNorm, learned 24x24
  position embedding bicubic-resampled to the grid, 2-D axial rotary, ``depth`` blocks
  (norm1 -> attn (fused qkv) -> norm2 -> SwiGLU) attending within each image (cu_seqlens),
  post RMSNorm, Conv2d 2x2/2 downsample to out_hidden_size, merger (Linear, LayerNorm, GELU,
  SwiGLU). ``Glm4vModel.forward`` masked_scatters those rows, in order, into the embeddings at
  ``input_ids == image_token_id``.
Chat template: GLM-4.1V's renders image parts only for ``type == 'image'`` (or an 'image' key),
  and renders a system / assistant message whose content is a list as its Python repr. The
  processor's ``apply_chat_template`` (ProcessorMixin, processing_utils.py) turns OpenAI
  ``image_url`` parts into image parts first and, with tokenize=True and return_dict=True, loads
  data: URLs itself (pixel bounds: processor_kwargs={'images_kwargs': {'size': {...}}});
  ``tokenizer.apply_chat_template`` does not, and renders no placeholder for image_url parts.
"""

import base64
import io
import json
import os

import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('PIL')

from autoglm_service import processors, tiny_glm4v  # noqa: E402

MAX_NEW = 8
SMALL_MAX_PIXELS = 2 * 28 * 28 * 64     # <= 64 image tokens: fast on CPU
AGENT_SYSTEM = tiny_glm4v.PHONE_CORPUS[0] * 12   # a long system prompt string, as the agent sends


@pytest.fixture(scope='session')
def model(glm4v_dir):
    from transformers import Glm4vForConditionalGeneration
    torch.set_num_threads(1)
    return Glm4vForConditionalGeneration.from_pretrained(glm4v_dir).eval()


@pytest.fixture(scope='session')
def processor(glm4v_dir):
    return processors.load_processor(glm4v_dir)


@pytest.fixture(scope='session')
def small_processor(glm4v_dir):
    return processors.load_processor(glm4v_dir, max_pixels=SMALL_MAX_PIXELS)


@pytest.fixture(scope='session')
def screenshot_url():
    return tiny_glm4v.png_data_url(tiny_glm4v.phone_screenshot())


def agent_messages(image_url, text='Open the Settings app and turn on Wi-Fi.\n\n{"current_app": "System Home"}'):
    """One Open-AutoGLM step: system prompt string, user message = [screenshot, text]."""
    return [{'role': 'system', 'content': AGENT_SYSTEM},
            {'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': image_url}},
                                         {'type': 'text', 'text': text}]}]


def to_template(messages):
    """OpenAI image_url parts -> {'type': 'image'} parts and the decoded images, in order."""
    from PIL import Image
    images, out = [], []
    for msg in messages:
        content = msg['content']
        if isinstance(content, list):
            parts = []
            for part in content:
                if part['type'] == 'image_url':
                    raw = base64.b64decode(part['image_url']['url'].split(',', 1)[1])
                    images.append(Image.open(io.BytesIO(raw)).convert('RGB'))
                    parts.append({'type': 'image'})
                else:
                    parts.append(part)
            content = parts
        out.append(dict(msg, content=content))
    return out, images


def encode(proc, messages):
    tmsgs, images = to_template(messages)
    text = proc.apply_chat_template(tmsgs, tokenize=False, add_generation_prompt=True)
    return text, proc(text=[text], images=images or None, return_tensors='pt')


def greedy(model, enc, n=MAX_NEW):
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False)
    return out[:, enc['input_ids'].shape[1]:].tolist()


# --- the builder -----------------------------------------------------------------------------

def test_directory_has_the_real_layout_and_consistent_ids(glm4v_dir, processor):
    for name in ('config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json',
                 'tokenizer_config.json', 'preprocessor_config.json', 'video_preprocessor_config.json',
                 'processor_config.json', 'chat_template.jinja'):
        assert os.path.exists(os.path.join(glm4v_dir, name)), name
    with open(os.path.join(glm4v_dir, 'config.json')) as f:
        cfg = json.load(f)
    with open(os.path.join(glm4v_dir, 'generation_config.json')) as f:
        gen = json.load(f)
    with open(os.path.join(glm4v_dir, 'preprocessor_config.json')) as f:
        pre = json.load(f)
    tok = processor.tokenizer
    conv = tok.convert_tokens_to_ids
    assert cfg['model_type'] == 'glm4v' and cfg['architectures'] == ['Glm4vForConditionalGeneration']
    assert cfg['image_token_id'] == conv('<|image|>') == processor.image_token_id
    assert cfg['image_start_token_id'] == conv('<|begin_of_image|>')
    assert cfg['image_end_token_id'] == conv('<|end_of_image|>')
    assert cfg['video_token_id'] == conv('<|video|>')
    assert gen['eos_token_id'] == [conv('<|endoftext|>'), conv('<|user|>'), conv('<|observation|>')]
    assert gen['pad_token_id'] == tok.pad_token_id == conv('<|endoftext|>')
    assert cfg['text_config']['vocab_size'] == len(tok)
    assert cfg['text_config']['rope_parameters']['mrope_section'] == [2, 3, 3]
    assert pre['image_processor_type'] == 'Glm4vImageProcessor'
    assert (pre['patch_size'], pre['merge_size'], pre['temporal_patch_size']) == (14, 2, 2)
    assert pre['size'] == {'shortest_edge': 12544, 'longest_edge': 9633792}
    assert tok.padding_side == 'left'


def test_tokenizer_has_glm4v_tokens_and_keeps_the_answer_markers(processor):
    tok = processor.tokenizer
    for name in tiny_glm4v.SPECIAL_TOKENS + tiny_glm4v.TEXT_MARKERS:
        ids = tok.encode(name, add_special_tokens=False)
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == name, name
    text = '<|assistant|>\n<think>tap it</think><answer>do(action="Tap", element=[5,9])</answer><|user|>'
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == '\n<think>tap it</think><answer>do(action="Tap", element=[5,9])</answer>'
    assert tok.decode(ids) == text


def test_9b_shape_is_glm41v_9b():
    from transformers import Glm4vForConditionalGeneration
    config = tiny_glm4v.make_config('9b', tiny_glm4v.build_tokenizer())
    t, v = config.text_config, config.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads,
            t.intermediate_size, t.vocab_size) == (4096, 40, 32, 2, 13696, 151552)
    assert t.rope_parameters['mrope_section'] == [8, 12, 12]
    assert t.rope_parameters['partial_rotary_factor'] == 0.5
    assert (v.depth, v.hidden_size, v.num_heads, v.patch_size, v.spatial_merge_size,
            v.temporal_patch_size, v.out_hidden_size) == (24, 1536, 12, 14, 2, 2, 4096)
    with torch.device('meta'):
        meta = Glm4vForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in meta.parameters())
    assert 10.2e9 < params < 10.4e9, params


def test_cli_max_pixels_and_printable_output(tmp_path, screenshot_url):
    from transformers import Glm4vForConditionalGeneration
    out = str(tmp_path / 'cli')
    assert tiny_glm4v.main([out, '--max-pixels', str(SMALL_MAX_PIXELS), '--printable', '--seed', '1']) == 0
    with open(os.path.join(out, 'preprocessor_config.json')) as f:
        assert json.load(f)['size']['longest_edge'] == SMALL_MAX_PIXELS
    proc = processors.load_processor(out)
    model = Glm4vForConditionalGeneration.from_pretrained(out).eval()
    tokens = greedy(model, encode(proc, agent_messages(screenshot_url))[1], n=16)[0]
    assert len(tokens) == 16                                  # no eos
    assert set(tokens) <= set(tiny_glm4v.printable_ids(proc.tokenizer))
    with pytest.raises(ValueError, match='min_pixels'):
        tiny_glm4v.image_processor_config(min_pixels=10 ** 7, max_pixels=10 ** 6)


# --- processor: template, image tokens, loading without torchvision ---------------------------

def test_template_renders_the_agent_request(processor, screenshot_url):
    text, enc = encode(processor, agent_messages(screenshot_url))
    assert text.startswith('[gMASK]<sop><|system|>\n' + AGENT_SYSTEM + '<|user|>\n'
                           '<|begin_of_image|><|image|><|end_of_image|>Open the Settings app')
    assert text.endswith('<|assistant|>\n')
    assert "{'type'" not in text
    # ProcessorMixin.apply_chat_template turns OpenAI image_url parts into image parts (and, with
    # tokenize=True, loads the data: URL); the bare jinja template (tokenizer) renders nothing.
    raw = processor.apply_chat_template(agent_messages(screenshot_url), tokenize=False,
                                        add_generation_prompt=True)
    assert raw == text
    bare = processor.tokenizer.apply_chat_template(agent_messages(screenshot_url), tokenize=False,
                                                   add_generation_prompt=True)
    assert '<|image|>' not in bare
    direct = processor.apply_chat_template(agent_messages(screenshot_url), tokenize=True, return_dict=True,
                                           return_tensors='pt', add_generation_prompt=True)
    assert torch.equal(direct['input_ids'], enc['input_ids'])
    assert torch.equal(direct['pixel_values'], enc['pixel_values'])
    # A system message given as a list of parts is rendered as its Python repr: keep strings.
    listed = processor.apply_chat_template(
        [{'role': 'system', 'content': [{'type': 'text', 'text': 'S'}]}, {'role': 'user', 'content': 'hi'}],
        tokenize=False, add_generation_prompt=True)
    assert "<|system|>\n[{'type': 'text', 'text': 'S'}]" in listed


@pytest.mark.parametrize('max_pixels,grid', [(None, (1, 172, 78)), (5000000, (1, 168, 74))])
def test_image_tokens_match_the_grid_of_a_phone_screenshot(glm4v_dir, screenshot_url, max_pixels, grid):
    proc = processors.load_processor(glm4v_dir, max_pixels=max_pixels)
    enc = encode(proc, agent_messages(screenshot_url))[1]
    assert tuple(enc['image_grid_thw'][0].tolist()) == grid
    n_tokens = grid[0] * grid[1] * grid[2] // proc.image_processor.merge_size ** 2
    is_image = enc['input_ids'][0] == proc.image_token_id
    assert int(is_image.sum()) == n_tokens            # 3354 at the defaults, as on a real phone
    assert torch.equal(enc['mm_token_type_ids'][0] == 1, is_image)
    assert enc['pixel_values'].shape == (grid[1] * grid[2], 3 * 2 * 14 * 14)


def test_processor_without_torchvision(glm4v_dir, monkeypatch, screenshot_url):
    monkeypatch.setattr(processors, '_torchvision_available', lambda: False)
    proc = processors.load_processor(glm4v_dir, max_pixels=SMALL_MAX_PIXELS)
    assert type(proc).__name__ == 'Glm4vImageTextProcessor'
    assert type(proc.image_processor).__name__ in ('Glm4vImageProcessorPil', 'Glm4vImageProcessor')
    enc = encode(proc, agent_messages(screenshot_url))[1]
    assert int((enc['input_ids'] == proc.image_token_id).sum()) == int(enc['image_grid_thw'].prod()) // 4
    with pytest.raises(ValueError, match='torchvision'):
        proc(text=['<|begin_of_video|><|video|><|end_of_video|>'], videos=[[tiny_glm4v.phone_screenshot()]])
    with pytest.raises(ValueError, match='min_pixels'):
        processors.set_pixel_bounds(proc.image_processor, min_pixels=10 ** 7, max_pixels=10 ** 6)


def test_auto_processor_needs_torchvision(glm4v_dir):
    from transformers import AutoProcessor
    if processors._torchvision_available():
        assert type(AutoProcessor.from_pretrained(glm4v_dir)).__name__ == 'Glm4vProcessor'
    else:
        with pytest.raises(ImportError, match='orchvision'):
            AutoProcessor.from_pretrained(glm4v_dir)
        assert type(processors.load_processor(glm4v_dir)).__name__ == 'Glm4vImageTextProcessor'


# --- M-RoPE positions -------------------------------------------------------------------------

def test_rope_index_of_a_full_size_screenshot(model, processor, screenshot_url):
    enc = encode(processor, agent_messages(screenshot_url))[1]
    ids = enc['input_ids']
    pos, delta = model.model.get_rope_index(ids, enc['mm_token_type_ids'], enc['image_grid_thw'],
                                            attention_mask=enc['attention_mask'])
    gh, gw = enc['image_grid_thw'][0].tolist()[1:]
    mh, mw = gh // 2, gw // 2
    is_image = (ids[0] == processor.image_token_id).nonzero().flatten()
    first, last = int(is_image[0]), int(is_image[-1])
    assert last - first + 1 == mh * mw
    length = ids.shape[1]
    assert pos.shape == (3, 1, length)
    p = pos[:, 0]
    before = torch.arange(first)
    assert all(torch.equal(p[c, :first], before) for c in range(3))
    rows = torch.arange(mh).repeat_interleave(mw)
    cols = torch.arange(mw).repeat(mh)
    assert torch.equal(p[0, first:last + 1], torch.full((mh * mw,), first))
    assert torch.equal(p[1, first:last + 1], first + rows)
    assert torch.equal(p[2, first:last + 1], first + cols)
    after = first + max(mh, mw) + torch.arange(length - last - 1)
    assert all(torch.equal(p[c, last + 1:], after) for c in range(3))     # t = h = w after the image
    assert int(delta) == max(mh, mw) - mh * mw == int(p.max()) + 1 - length
    assert int(delta) == 86 - 3354


def test_text_only_prompt_has_plain_positions(model, processor):
    enc = encode(processor, [{'role': 'user', 'content': 'Hello'}])[1]
    pos, delta = model.model.get_rope_index(enc['input_ids'], enc['mm_token_type_ids'])
    assert int(delta) == 0
    assert all(torch.equal(pos[c, 0], torch.arange(enc['input_ids'].shape[1])) for c in range(3))


# --- generate, and the same tokens from explicit prefill + decode positions --------------------

def manual_greedy(model, enc, n=MAX_NEW):
    """Prefill with get_rope_index positions, then decode with n_real + i + delta per row."""
    from transformers import DynamicCache
    ids, mask = enc['input_ids'], enc['attention_mask']
    with torch.no_grad():
        pos, delta = model.model.get_rope_index(ids, enc['mm_token_type_ids'], enc.get('image_grid_thw'),
                                                attention_mask=mask)
        cache = DynamicCache(config=model.config.text_config)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                    pixel_values=enc.get('pixel_values'), image_grid_thw=enc.get('image_grid_thw'),
                    mm_token_type_ids=enc['mm_token_type_ids'], logits_to_keep=1)
        n_real = mask.sum(-1)                                    # (B,)
        tokens = []
        nxt = out.logits[:, -1].argmax(-1)
        for i in range(n):
            tokens.append(nxt)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
            step = (n_real + i + delta[:, 0]).view(1, -1, 1).expand(3, -1, 1)
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=step, cache=cache,
                        use_cache=True)
            nxt = out.logits[:, -1].argmax(-1)
    return torch.stack(tokens, dim=1).tolist(), delta


def test_generate_is_deterministic_and_matches_explicit_positions(model, small_processor, screenshot_url):
    enc = encode(small_processor, agent_messages(screenshot_url))[1]
    first = greedy(model, enc)
    assert first == greedy(model, enc)
    assert len(first[0]) == MAX_NEW
    tokens, delta = manual_greedy(model, enc)
    assert tokens == first
    assert torch.equal(model.model.rope_deltas, delta)        # generate left its delta on the module
    gh, gw = enc['image_grid_thw'][0].tolist()[1:]
    assert int(delta) == max(gh, gw) // 2 - gh * gw // 4


def test_image_changes_the_logits(model, small_processor):
    urls = [tiny_glm4v.png_data_url(tiny_glm4v.phone_screenshot(seed=s)) for s in (0, 1)]
    logits = []
    for url in urls:
        enc = encode(small_processor, agent_messages(url))[1]
        with torch.no_grad():
            logits.append(model(**enc, logits_to_keep=1).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])


def test_left_padded_batch_matches_single_requests(model, small_processor, screenshot_url):
    """Image and text rows in one left-padded batch: generate and explicit per-row positions
    (n_real + i + delta_row) both give each row's single-request tokens."""
    url2 = tiny_glm4v.png_data_url(tiny_glm4v.phone_screenshot(seed=3))
    conversations = [agent_messages(screenshot_url),
                     [{'role': 'user', 'content': 'What is the weather like in Beijing tomorrow?'}],
                     agent_messages(url2, text='Send a message to Alice.')]
    singles = [greedy(model, encode(small_processor, c)[1])[0] for c in conversations]
    texts, images = [], []
    for conv in conversations:
        tmsgs, imgs = to_template(conv)
        texts.append(small_processor.apply_chat_template(tmsgs, tokenize=False, add_generation_prompt=True))
        images += imgs
    batch = small_processor(text=texts, images=images, return_tensors='pt', padding=True)
    assert (batch['attention_mask'] == 0).any()               # really padded
    assert greedy(model, batch) == singles
    tokens, delta = manual_greedy(model, batch)
    assert tokens == singles
    assert int(delta[1]) == 0 and int(delta[0]) < 0 and int(delta[2]) < 0


# --- the text decoder layer, written out (what a fast-path adapter implements) ----------------

def rms(x, norm):
    var = x.float().pow(2).mean(-1, keepdim=True)
    return norm.weight * (x.float() * torch.rsqrt(var + norm.variance_epsilon)).to(x.dtype)


def mrope_cos_sin(positions, inv_freq, section):
    """positions (3, B, L) -> cos, sin (B, L, 2*len(inv_freq)): frequency j uses component k
    of the section it falls in, each value repeated twice (interleaved layout)."""
    comp = torch.cat([torch.full((n,), k) for k, n in enumerate(section)])        # (F,)
    pos = positions.float().permute(1, 2, 0)[..., comp]                            # (B, L, F)
    freqs = pos * inv_freq
    return freqs.cos().repeat_interleave(2, -1), freqs.sin().repeat_interleave(2, -1)


def rotate_interleaved(x, cos, sin):
    rd = cos.shape[-1]
    rot, keep = x[..., :rd], x[..., rd:]
    pairs = torch.stack((-rot[..., 1::2], rot[..., 0::2]), dim=-1).flatten(-2)
    return torch.cat([rot * cos + pairs * sin, keep], dim=-1)


def reference_layer(layer, x, cos, sin):
    att = layer.self_attn
    b, n = x.shape[:2]
    hd, nh, nkv = att.head_dim, att.num_heads, att.num_key_value_heads
    h = rms(x, layer.input_layernorm)
    q = att.q_proj(h).view(b, n, nh, hd).transpose(1, 2)
    k = att.k_proj(h).view(b, n, nkv, hd).transpose(1, 2)
    v = att.v_proj(h).view(b, n, nkv, hd).transpose(1, 2)
    q = rotate_interleaved(q, cos[:, None], sin[:, None])
    k = rotate_interleaved(k, cos[:, None], sin[:, None])
    k = k.repeat_interleave(nh // nkv, dim=1)
    v = v.repeat_interleave(nh // nkv, dim=1)
    a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=hd ** -0.5)
    x = x + rms(att.o_proj(a.transpose(1, 2).reshape(b, n, nh * hd)), layer.post_self_attn_layernorm)
    m = rms(x, layer.post_attention_layernorm)
    gate, up = layer.mlp.gate_up_proj(m).chunk(2, dim=-1)
    m = layer.mlp.down_proj(up * torch.nn.functional.silu(gate))
    return x + rms(m, layer.post_mlp_layernorm)


def test_decoder_layer_and_mrope_written_out(model):
    lm = model.model.language_model
    cfg = model.config.text_config
    layer = lm.layers[0]
    att = layer.self_attn
    assert att.q_proj.bias is not None and att.k_proj.bias is not None and att.v_proj.bias is not None
    assert att.o_proj.bias is None
    assert att.head_dim == cfg.hidden_size // cfg.num_attention_heads
    assert layer.mlp.gate_up_proj.weight.shape == (2 * cfg.intermediate_size, cfg.hidden_size)
    torch.manual_seed(0)
    n = 12
    # A prefix of text, a 2x3 "image" block, then text: positions as get_rope_index makes them.
    t = torch.tensor([0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7, 8])
    h = torch.tensor([0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7, 8])
    w = torch.tensor([0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8])
    positions = torch.stack([t, h, w])[:, None, :]
    x = torch.randn(1, n, cfg.hidden_size)
    cos, sin = lm.rotary_emb(x, positions)
    section = cfg.rope_parameters['mrope_section']
    rd = int((cfg.hidden_size // cfg.num_attention_heads) * cfg.rope_parameters['partial_rotary_factor'])
    assert sum(section) == rd // 2
    ref_cos, ref_sin = mrope_cos_sin(positions, lm.rotary_emb.inv_freq, section)
    torch.testing.assert_close(cos, ref_cos)
    torch.testing.assert_close(sin, ref_sin)
    with torch.no_grad():
        ours = reference_layer(layer, x, cos, sin)
        theirs = layer(x, position_embeddings=(cos, sin), attention_mask=None)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # For text tokens (t = h = w = p), M-RoPE is plain interleaved partial RoPE at position p.
    p = torch.arange(5)
    plain_cos = mrope_cos_sin(p.expand(3, 1, 5), lm.rotary_emb.inv_freq, [rd // 2, 0, 0])[0]
    torch.testing.assert_close(lm.rotary_emb(x[:, :5], p.expand(3, 1, 5))[0], plain_cos)
