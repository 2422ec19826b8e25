# -*- coding: utf-8 -*-
"""Create a GLM-4.1V (Glm4vForConditionalGeneration) model directory with random weights.

    python -m autoglm_service.tiny_glm4v /tmp/tiny-glm4v               # 0.8 M params, CPU, < 1 s
    python -m autoglm_service.tiny_glm4v /data/models/autoglm-9b-random --shape 9b
                                                                       # GLM-4.1V-9B shape, bf16, GPU

The directory has what a real GLM-4.1V / AutoGLM-Phone-9B checkout has, so the real loading code
(AutoConfig, AutoModelForImageTextToText, AutoProcessor or processors.load_processor) runs on it
unchanged: config.json, model.safetensors, generation_config.json, a byte-level BPE tokenizer
trained here with GLM-4.1V's special tokens (tokenizer.json, tokenizer_config.json),
preprocessor_config.json (GLM-4.1V's image processor), video_preprocessor_config.json and
chat_template.jinja (GLM-4.1V's template). The token ids in config.json are the ids of this
tokenizer, so they differ from the real 151329... block; the names and roles are the real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from autoglm_service.tiny_model import CORPUS as TEXT_CORPUS, train_bpe

# GLM-4.1V's added tokens in the order of its vocabulary (151329 <|endoftext|> ... ): the
# structural ones are special (dropped by skip_special_tokens); the reasoning / answer markers
# are plain added tokens, so a decoded answer keeps "<think>...</think><answer>...</answer>",
# which the Open-AutoGLM client parses.
SPECIAL_TOKENS = [
    '<|endoftext|>', '[MASK]', '[gMASK]', '[sMASK]', '<sop>', '<eop>',
    '<|system|>', '<|user|>', '<|assistant|>', '<|observation|>',
    '<|begin_of_image|>', '<|end_of_image|>', '<|begin_of_video|>', '<|end_of_video|>',
    '<|image|>', '<|video|>',
    '<|begin_of_transcription|>', '<|end_of_transcription|>',
    '<|code_prefix|>', '<|code_middle|>', '<|code_suffix|>',
]
TEXT_MARKERS = ['<think>', '</think>', '<answer>', '</answer>', '<|begin_of_box|>', '<|end_of_box|>']
# generation_config.json of GLM-4.1V-9B: eos = <|endoftext|>, <|user|>, <|observation|>; pad = eos[0].
EOS_TOKENS = ['<|endoftext|>', '<|user|>', '<|observation|>']
PAD_TOKEN = '<|endoftext|>'

# chat_template.jinja of zai-org/GLM-4.1V-9B-Thinking (sha256 5232dbe7...): string content is
# rendered as is; list content renders image / video parts as placeholders and text parts as text.
CHAT_TEMPLATE = """[gMASK]<sop>
{%- for msg in messages %}
    {%- if msg.role == 'system' %}
<|system|>
{{ msg.content }}
    {%- elif msg.role == 'user' %}
<|user|>{{ '\\n' }}

        {%- if msg.content is string %}
{{ msg.content }}
        {%- else %}
            {%- for item in msg.content %}
                {%- if item.type == 'video' or 'video' in item %}
<|begin_of_video|><|video|><|end_of_video|>
                {%- elif item.type == 'image' or 'image' in item %}
<|begin_of_image|><|image|><|end_of_image|>
                {%- elif item.type == 'text' %}
{{ item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
    {%- elif msg.role == 'assistant' %}
        {%- if msg.metadata %}
<|assistant|>{{ msg.metadata }}
{{ msg.content }}
        {%- else %}
<|assistant|>
{{ msg.content }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{% if add_generation_prompt %}<|assistant|>
{% endif %}"""

PHONE_CORPUS = [
    "You are a professional Android operation agent assistant that can fulfill the user's "
    "high-level instructions. Given a screenshot of the Android interface at each step, you first "
    "analyze the situation, then plan the best course of action using Python-style pseudo-code.",
    '<think>The screen shows the home page.</think><answer>do(action="Tap", element=[500,1200])</answer>',
    '<answer>do(action="Launch", app="Settings")</answer> <answer>finish(message="Task completed.")</answer>',
    'do(action="Swipe", start=[540,1800], end=[540,600]) do(action="Type", text="Hello World")',
    '{"current_app": "System Home"} ** Screen Info ** Long Press Back Home Tap Swipe Launch Finish',
    "Wi-Fi Bluetooth Battery 12:30 4G 5G Messages Camera Photos Maps Browser Clock",
    "打开设置 点击 返回 微信 发送消息 搜索 确定 取消",
]

# Image processor settings of GLM-4.1V-9B (preprocessor_config.json); size is in pixels,
# shortest_edge = min_pixels, longest_edge = max_pixels (compared with 2 * h * w: the
# temporal patch of 2 counts an image twice).
IMAGE_PROCESSOR = dict(
    size={'shortest_edge': 112 * 112, 'longest_edge': 14 * 14 * 2 * 2 * 2 * 6144},
    do_rescale=True, patch_size=14, temporal_patch_size=2, merge_size=2,
    image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
)
VIDEO_LONGEST_EDGE = 47040000
MAX_CONTEXT = 65536      # max_position_embeddings of GLM-4.1V-9B

# Per shape: (text_config, vision_config). '9b' is GLM-4.1V-9B-Thinking / AutoGLM-Phone-9B's
# config.json (= transformers' Glm4vTextConfig / Glm4vVisionConfig defaults, plus the 64k
# context and M-RoPE sections of the published checkpoint): ~10.3 B parameters.
SHAPES = {
    '9b': (
        dict(hidden_size=4096, num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=2,
             intermediate_size=13696, vocab_size=151552, max_position_embeddings=MAX_CONTEXT,
             rms_norm_eps=1e-5, hidden_act='silu',
             rope_parameters={'rope_type': 'default', 'rope_theta': 10000.0,
                              'partial_rotary_factor': 0.5, 'mrope_section': [8, 12, 12]}),
        dict(depth=24, hidden_size=1536, num_heads=12, intermediate_size=13696, out_hidden_size=4096,
             patch_size=14, spatial_merge_size=2, temporal_patch_size=2, image_size=336,
             in_channels=3, rms_norm_eps=1e-5, hidden_act='silu'),
    ),
    # Same structure at toy size: head_dim 32 -> 16 rotary dims -> 8 frequencies split
    # [2, 3, 3] over (t, h, w) like 9B's [8, 12, 12] of 32.
    'tiny': (
        dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=256, max_position_embeddings=MAX_CONTEXT, rms_norm_eps=1e-5,
             hidden_act='silu',
             rope_parameters={'rope_type': 'default', 'rope_theta': 10000.0,
                              'partial_rotary_factor': 0.5, 'mrope_section': [2, 3, 3]}),
        dict(depth=2, hidden_size=64, num_heads=4, intermediate_size=128, out_hidden_size=128,
             patch_size=14, spatial_merge_size=2, temporal_patch_size=2, image_size=336,
             in_channels=3, rms_norm_eps=1e-5, hidden_act='silu'),
    ),
}
TINY = ('tiny',)


def build_tokenizer(vocab_size=1024):
    """Train a byte-level BPE tokenizer with GLM-4.1V's added tokens; returns PreTrainedTokenizerFast."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok = train_bpe(TEXT_CORPUS + PHONE_CORPUS, vocab_size, SPECIAL_TOKENS)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TEXT_MARKERS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKENS[0], pad_token=PAD_TOKEN,
                                   additional_special_tokens=SPECIAL_TOKENS[1:],
                                   padding_side='left', model_max_length=MAX_CONTEXT)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def token_ids(tokenizer):
    """The config.json / generation_config.json ids, from the tokenizer (one place)."""
    conv = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=conv('<|image|>'), video_token_id=conv('<|video|>'),
                image_start_token_id=conv('<|begin_of_image|>'), image_end_token_id=conv('<|end_of_image|>'),
                video_start_token_id=conv('<|begin_of_video|>'), video_end_token_id=conv('<|end_of_video|>'),
                eos_token_id=[conv(t) for t in EOS_TOKENS], pad_token_id=conv(PAD_TOKEN))


def make_config(shape, tokenizer, text_config=None, vision_config=None):
    from transformers import Glm4vConfig
    text, vision = (dict(d) for d in SHAPES[shape])
    text.update(text_config or {})
    vision.update(vision_config or {})
    text.setdefault('vocab_size', len(tokenizer))
    ids = token_ids(tokenizer)
    text['pad_token_id'] = ids['pad_token_id']
    eos = ids.pop('eos_token_id')
    ids.pop('pad_token_id')
    config = Glm4vConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    config.text_config.eos_token_id = eos
    return config


def image_processor_config(min_pixels=None, max_pixels=None):
    """preprocessor_config.json content (GLM-4.1V's Glm4vImageProcessor)."""
    cfg = json.loads(json.dumps(IMAGE_PROCESSOR))
    if min_pixels is not None:
        cfg['size']['shortest_edge'] = int(min_pixels)
    if max_pixels is not None:
        cfg['size']['longest_edge'] = int(max_pixels)
    if cfg['size']['shortest_edge'] > cfg['size']['longest_edge']:
        raise ValueError('min_pixels (%d) must not exceed max_pixels (%d)'
                         % (cfg['size']['shortest_edge'], cfg['size']['longest_edge']))
    cfg.update(image_processor_type='Glm4vImageProcessor', processor_class='Glm4vProcessor')
    return cfg


def video_processor_config():
    cfg = json.loads(json.dumps(IMAGE_PROCESSOR))
    cfg['size']['longest_edge'] = VIDEO_LONGEST_EDGE
    cfg.update(video_processor_type='Glm4vVideoProcessor', processor_class='Glm4vProcessor')
    return cfg


def _write_json(path, data):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write('\n')


def write_processor_files(out, tokenizer, min_pixels=None, max_pixels=None):
    """Tokenizer, image/video processor configs and chat template, as the model repo has them.

    Written by hand rather than through Glm4vProcessor.save_pretrained: that needs the video
    processor, which needs torchvision (absent on the CPU test machines).
    """
    tokenizer.save_pretrained(out)
    _write_json(os.path.join(out, 'preprocessor_config.json'), image_processor_config(min_pixels, max_pixels))
    _write_json(os.path.join(out, 'video_preprocessor_config.json'), video_processor_config())
    _write_json(os.path.join(out, 'processor_config.json'), {'processor_class': 'Glm4vProcessor'})
    with open(os.path.join(out, 'chat_template.jinja'), 'w', encoding='utf-8') as f:
        f.write(CHAT_TEMPLATE)


def printable_ids(tokenizer):
    """Ids that decode to visible text: not special, not whitespace, not a byte fragment."""
    special = set(tokenizer.all_special_ids)
    out = []
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i])
        if i not in special and text.strip() and '\ufffd' not in text:
            out.append(i)
    return out


def favour_printable(model, tokenizer, up=10.0, down=0.1):
    """Scale LM-head rows: printable tokens up, the rest (ids beyond the small tokenizer, eos,
    specials, byte fragments) down, so that random weights stream visible text and never stop
    at eos. Same bytes read per decode step: for benchmarks."""
    import torch
    w = model.lm_head.weight
    scale = torch.full((w.shape[0], 1), down, dtype=w.dtype, device=w.device)
    scale[printable_ids(tokenizer)] = up
    with torch.no_grad():
        w.mul_(scale)


def create(out_dir, seed=0, shape='tiny', dtype=None, device=None, min_pixels=None, max_pixels=None,
           text_config=None, vision_config=None, printable=False):
    """Write a GLM-4.1V model directory at ``out_dir``; returns ``out_dir``.

    ``text_config`` / ``vision_config``: dicts of overrides on the shape's sub-configs.
    ``min_pixels`` / ``max_pixels``: the image processor's pixel bounds (default GLM-4.1V's).
    ``printable``: favour_printable() on the LM head (benchmarks; the 9B vocabulary is 151,552
    ids and the tokenizer ~900, so random greedy output would otherwise be mostly unprintable).
    Big shapes are initialised on the GPU in bf16 (no fp32 copy on the host).
    """
    import torch
    from transformers import GenerationConfig, Glm4vForConditionalGeneration

    if shape not in SHAPES:
        raise ValueError('shape must be one of %s, got %r' % (', '.join(sorted(SHAPES)), shape))
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = make_config(shape, tokenizer, text_config, vision_config)
    if dtype is None:
        dtype = 'float32' if shape in TINY else 'bfloat16'
    if device is None:
        device = 'cuda' if shape not in TINY and torch.cuda.is_available() else 'cpu'
    with torch.device(device):
        model = Glm4vForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype))
    if shape in TINY:
        # Larger logits so that greedy output is varied rather than one repeated token.
        with torch.no_grad():
            model.lm_head.weight.mul_(20.0)
    if printable:
        favour_printable(model, tokenizer)
    ids = token_ids(tokenizer)
    model.generation_config = GenerationConfig(eos_token_id=ids['eos_token_id'],
                                               pad_token_id=ids['pad_token_id'])
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, max_shard_size='5GB')
    write_processor_files(out_dir, tokenizer, min_pixels=min_pixels, max_pixels=max_pixels)
    return out_dir


APPS = ['Settings', 'Messages', 'Camera', 'Photos', 'Maps', 'Browser', 'Clock', 'WeChat',
        'Music', 'Mail', 'Files', 'Store']


def phone_screenshot(width=1080, height=2400, seed=0):
    """A synthetic Android home screen (PIL RGB image): status bar, search bar, app grid, dock.

    Deterministic for a given seed; used as the screenshot of tests, demo and benchmark
    (a real phone at 1080x2400 gives the same image-token count: 3,354 at GLM-4.1V's defaults).
    """
    import random
    from PIL import Image, ImageDraw, ImageFont
    rnd = random.Random(seed)
    s = width / 1080.0
    img = Image.new('RGB', (width, height), (28, 44, 72))
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(10, int(34 * s)))
    except TypeError:               # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    # Wallpaper gradient bands.
    for i in range(0, height, max(1, height // 24)):
        shade = 40 + (i * 60) // height
        d.rectangle([0, i, width, i + height // 24], fill=(shade // 2, shade, 90 + shade // 2))
    # Status bar: time, signal, battery.
    d.rectangle([0, 0, width, int(80 * s)], fill=(12, 12, 16))
    d.text((int(40 * s), int(20 * s)), '12:30', fill=(240, 240, 240), font=font)
    d.text((int(760 * s), int(20 * s)), '5G  87%', fill=(240, 240, 240), font=font)
    d.rectangle([int(960 * s), int(24 * s), int(1040 * s), int(56 * s)], outline=(240, 240, 240),
                width=max(1, int(3 * s)))
    d.rectangle([int(966 * s), int(30 * s), int(1020 * s), int(50 * s)], fill=(90, 220, 120))
    # Search bar.
    d.rounded_rectangle([int(60 * s), int(200 * s), int(1020 * s), int(320 * s)], radius=int(60 * s),
                        fill=(245, 245, 250))
    d.text((int(120 * s), int(240 * s)), 'Search apps and web', fill=(110, 110, 120), font=font)
    # App grid: 4 columns x 3 rows of coloured rounded icons with labels.
    for n, name in enumerate(APPS):
        row, col = divmod(n, 4)
        x0 = int((70 + col * 250) * s)
        y0 = int((520 + row * 330) * s)
        colour = tuple(rnd.choices(range(60, 256), k=3))
        d.rounded_rectangle([x0, y0, x0 + int(180 * s), y0 + int(180 * s)], radius=int(40 * s), fill=colour)
        d.text((x0 + int(10 * s), y0 + int(200 * s)), name, fill=(250, 250, 250), font=font)
    # Dock and navigation bar.
    d.rounded_rectangle([int(40 * s), int(2020 * s), int(1040 * s), int(2220 * s)], radius=int(50 * s),
                        fill=(60, 70, 96))
    for col in range(4):
        x0 = int((110 + col * 240) * s)
        d.ellipse([x0, int(2060 * s), x0 + int(120 * s), int(2180 * s)],
                  fill=tuple(rnd.choices(range(80, 256), k=3)))
    d.rectangle([0, int(2300 * s), width, height], fill=(10, 10, 12))
    d.rounded_rectangle([int(440 * s), int(2340 * s), int(640 * s), int(2356 * s)], radius=int(8 * s),
                        fill=(200, 200, 200))
    return img


def png_data_url(image):
    """``data:image/png;base64,...`` of a PIL image, as the phone agent sends its screenshots."""
    import base64
    import io
    buf = io.BytesIO()
    image.save(buf, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m autoglm_service.tiny_glm4v', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out', help='directory to write')
    p.add_argument('--shape', choices=sorted(SHAPES), default='tiny')
    p.add_argument('--dtype', choices=['float32', 'bfloat16', 'float16'])
    p.add_argument('--device', choices=['cpu', 'cuda'],
                   help='where to initialise the weights (default: cuda for 9b when present)')
    p.add_argument('--printable', action='store_true',
                   help='scale the LM head so greedy output is printable text, never eos (benchmarks)')
    p.add_argument('--max-pixels', type=int, help='image processor max_pixels (default %d)'
                   % IMAGE_PROCESSOR['size']['longest_edge'])
    p.add_argument('--min-pixels', type=int, help='image processor min_pixels (default %d)'
                   % IMAGE_PROCESSOR['size']['shortest_edge'])
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    create(a.out, seed=a.seed, shape=a.shape, dtype=a.dtype, device=a.device,
           min_pixels=a.min_pixels, max_pixels=a.max_pixels, printable=a.printable)
    print(a.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
