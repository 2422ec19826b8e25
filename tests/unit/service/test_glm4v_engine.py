# -*- coding: utf-8 -*-
"""GLM-4.1V (AutoGLM-Phone-9B's architecture) on the batched fast backend, tiny random weights.

The reference is ``model.generate`` on the same processor outputs: greedy output of the fast
backend must equal it for prompts with and without screenshots, alone and four in one batch
(image rows decode beside text rows, each with its own M-RoPE offset).
"""

import base64
import io
import threading

import pytest


def phone_screenshot(width, height, seed=0):
    """A synthetic phone screen: status bar, app tiles, a text line (PNG data URL)."""
    import random
    from PIL import Image, ImageDraw
    rnd = random.Random(seed)
    img = Image.new('RGB', (width, height), (245, 245, 250))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width, height // 30], fill=(20, 20, 20))
    tile = width // 5
    for row in range(4):
        for col in range(4):
            x, y = tile // 2 + col * tile + col * tile // 8, height // 8 + row * tile * 3 // 2
            draw.rounded_rectangle([x, y, x + tile, y + tile], radius=tile // 5,
                                   fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    draw.text((width // 10, height * 3 // 4), 'Settings  Wi-Fi  Bluetooth', fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, 'PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope='module')
def glm4v_engine(glm4v_dir):
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=glm4v_dir, max_batch_size=4, max_model_len=1024,
                              max_new_tokens=64, mm_max_pixels=200704)).start(background=False)
    yield eng
    eng.stop()


SYSTEM = 'You are a phone agent. Think step by step, then answer with one action such as do(action="Tap").'


def _messages(i, image=None):
    user = 'Step %d: open the settings app %s' % (i, 'and turn on Wi-Fi ' * i)
    content = user if image is None else [{'type': 'text', 'text': user},
                                          {'type': 'image_url', 'image_url': {'url': image}}]
    return [{'role': 'system', 'content': SYSTEM}, {'role': 'user', 'content': content}]


def _generate_all(eng, prompts, max_new, hold):
    from autoglm_service.types import GenRequest, SamplingParams
    outs = [None] * len(prompts)
    dones = [threading.Event() for _p in prompts]

    def emitter(i):
        def emit(ev):
            if ev['type'] in ('done', 'error'):
                outs[i] = ev
                dones[i].set()
        return emit
    with eng.paused() if hold else _null():
        for i, p in enumerate(prompts):
            eng.submit(GenRequest(prompt=p, params=SamplingParams(max_new_tokens=max_new[i], temperature=0.0),
                                  emit=emitter(i)))
    for d in dones:
        assert d.wait(120)
    return outs


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _reference(eng, prompt, max_new):
    import torch
    extra = dict(prompt.inputs or {})
    ids = torch.tensor([prompt.ids])
    out = eng.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **extra,
                             max_new_tokens=max_new, do_sample=False)[0][len(prompt.ids):].tolist()
    return [t for t in out if t not in eng.eos_ids]


@pytest.mark.parametrize('hold', [False, True], ids=['alone', 'batch-of-4'])
def test_fast_backend_matches_generate_with_and_without_images(glm4v_engine, hold):
    eng = glm4v_engine
    assert eng.backend_name == 'fast' and eng.backend.supports_images
    shots = [phone_screenshot(360, 800, seed=1), None, phone_screenshot(270, 600, seed=2), None]
    prompts = [eng.encode_chat(_messages(i, shot)) for i, shot in enumerate(shots)]
    assert [p.images for p in prompts] == [1, 0, 1, 0]
    max_new = [24, 17, 30, 9]
    if hold:
        outs = _generate_all(eng, prompts, max_new, hold=True)
        assert eng.stats['max_batch'] == 4, eng.stats
    else:
        outs = [_generate_all(eng, [p], [m], hold=False)[0] for p, m in zip(prompts, max_new)]
    for p, m, out in zip(prompts, max_new, outs):
        assert out['type'] == 'done', out
        ref = _reference(eng, p, m)[:len(out['token_ids'])]
        assert out['token_ids'] == ref
    # the image rows took M-RoPE positions (offset < 0: image tokens share positions)
    assert any(p.images for p in prompts)


def test_string_content_is_rendered_as_text(glm4v_engine):
    """String content of system/assistant messages reaches the template as a string."""
    eng = glm4v_engine
    p = eng.encode_chat([{'role': 'system', 'content': SYSTEM}, {'role': 'user', 'content': 'hi'},
                         {'role': 'assistant', 'content': 'do(action="Back")'}, {'role': 'user', 'content': 'next'}])
    text = eng.tokenizer.decode(p.ids)
    assert SYSTEM in text and 'do(action="Back")' in text
    assert "'type'" not in text and '[{' not in text


def test_image_rows_carry_their_rope_offset(glm4v_engine):
    eng = glm4v_engine
    prompt = eng.encode_chat(_messages(1, phone_screenshot(360, 800, seed=3)))
    out = _generate_all(eng, [prompt], [6], hold=False)[0]
    assert out['type'] == 'done'
    emb, pos3d, delta = eng.backend.arch.embed_images(eng.model, prompt, eng.device, eng.dtype)
    assert delta < 0 and int(pos3d.max()) + 1 == len(prompt.ids) + delta
    assert len(set(out['token_ids'])) >= 1


def test_screenshot_prompt_in_pieces_beside_decoding_rows(glm4v_dir):
    """A screenshot step prefilled in 32-token pieces while other agents decode; same output."""
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=glm4v_dir, max_batch_size=3, max_model_len=1024, max_new_tokens=64,
                              mm_max_pixels=200704, max_prefill_tokens=32)).start(background=False)
    try:
        prompts = [eng.encode_chat(_messages(0)), eng.encode_chat(_messages(1, phone_screenshot(360, 800, seed=4))),
                   eng.encode_chat(_messages(2, phone_screenshot(270, 600, seed=5)))]
        outs = [None] * 3
        first = _generate_all(eng, [prompts[0]], [40], hold=False)      # warm; then overlap
        outs = _generate_all(eng, prompts, [40, 20, 20], hold=False)
        for p, m, out in zip(prompts, [40, 20, 20], outs):
            assert out['type'] == 'done', out
            assert out['token_ids'] == _reference(eng, p, m)[:len(out['token_ids'])]
        assert first[0]['token_ids'] == outs[0]['token_ids']
        # the screenshot prompts were prefilled in pieces while the text row decoded
        assert eng.stats['prefill_chunks'] >= eng.stats['chunked_prefills'] + 4, eng.stats
    finally:
        eng.stop()


def test_fused_vision_tower_equals_the_models_own(glm4v_dir):
    """backends.vision: the blocks' norms and MLPs replaced (gate/up fused into one product, the
    weights re-pointed as views), the tower's output equals the unmodified tower's; undo() puts
    the model's own pieces back; a layout it was not written for is left alone."""
    import torch
    from transformers import AutoModelForImageTextToText
    from autoglm_service.backends import vision
    from autoglm_service.engine import Engine
    from autoglm_service.types import EngineConfig
    eng = Engine(EngineConfig(model_path=glm4v_dir, max_batch_size=1, max_model_len=1024, warmup=False,
                              mm_max_pixels=200704)).start(background=False)
    try:
        prompt = eng.encode_chat(_messages(1, phone_screenshot(540, 1200)))
    finally:
        eng.stop()
    model = AutoModelForImageTextToText.from_pretrained(glm4v_dir, dtype=torch.float32).eval()
    inner = model.model
    pixels, grid = prompt.inputs['pixel_values'], prompt.inputs['image_grid_thw']

    def tower():
        with torch.no_grad():
            return torch.cat(inner.get_image_features(pixels, grid, return_dict=True).pooler_output)
    want = tower()
    storage = {b.mlp.gate_proj.weight.data_ptr() for b in inner.visual.blocks}
    undo = vision.fuse_glm4v_vision(model, compile=False)
    assert undo is not None and 'forward' in inner.visual.blocks[0].norm1.__dict__
    got = tower()
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    assert (got - want).abs().max() < 1e-3 * want.abs().max()
    # gate and up are views into one fused matrix now (no copy): gate's storage starts it
    blk = inner.visual.blocks[0]
    assert blk.mlp.up_proj.weight.data_ptr() == blk.mlp.gate_proj.weight.data_ptr() + \
        blk.mlp.gate_proj.weight.numel() * blk.mlp.gate_proj.weight.element_size()
    assert len(storage) == len(inner.visual.blocks)
    undo()
    assert 'forward' not in inner.visual.blocks[0].norm1.__dict__
    assert torch.allclose(tower(), want, rtol=1e-4, atol=1e-5)
    # another norm type: unfusable, nothing changed
    inner.visual.blocks[0].norm2 = torch.nn.LayerNorm(inner.visual.config.hidden_size)
    assert 'vision norm LayerNorm' == vision.vision_unfusable_reason(inner.visual)
    assert vision.fuse_glm4v_vision(model) is None and 'forward' not in inner.visual.blocks[1].mlp.__dict__
