# -*- coding: utf-8 -*-
"""Create a local model directory with random weights: no internet, no hub.

    python -m autoglm_service.tiny_model --out /tmp/tiny            # ~100k params, CPU, seconds
    python -m autoglm_service.tiny_model --out /data/models/glm4-9b-random --shape glm4-9b
                                                                    # GLM-4-9B shape, bf16, on the GPU

The tokenizer is trained here (byte-level BPE on a built-in corpus), wrapped in
PreTrainedTokenizerFast with a chat template, eos and pad tokens, so the real loading
(AutoTokenizer / AutoModelForCausalLM) and generation code run unchanged on it.
"""

from __future__ import annotations

import argparse
import os
import sys

SPECIAL_TOKENS = ['<pad>', '<s>', '</s>', '<unk>', '<|system|>', '<|user|>', '<|assistant|>']

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

CORPUS = [
    "Open the settings app and tap on Wi-Fi.",
    "The phone agent reads the screen, plans an action and taps the button.",
    "Search for a restaurant nearby and book a table for two at seven.",
    "Send a message to Alice saying I will be late by ten minutes.",
    "Scroll down, find the download button, then go back to the home screen.",
    "What is the weather like in Beijing tomorrow? Please answer briefly.",
    "Hello! How are you today? I am a small test model with random weights.",
    "GPU memory, tokens per second, batch size, latency and throughput.",
    "def main(): print('hello world') return 0",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) [ ] { } < > , . ; : ! ?",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
]

SHAPES = {
    # Public config of THUDM/glm-4-9b(-chat) in transformers' Glm format: ~9.4 B parameters.
    'glm4-9b': dict(arch='glm', hidden_size=4096, num_hidden_layers=40, num_attention_heads=32,
                    num_key_value_heads=2, head_dim=128, intermediate_size=13696,
                    vocab_size=151552, max_position_embeddings=131072, attention_bias=True,
                    partial_rotary_factor=0.5),
    'tiny': dict(arch='llama', hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, intermediate_size=128,
                 max_position_embeddings=2048),
    # GLM layout (fused gate/up, q/k/v bias, interleaved partial RoPE) at tiny size, for tests.
    'tiny-glm': dict(arch='glm', hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, intermediate_size=128,
                     max_position_embeddings=2048, attention_bias=True, partial_rotary_factor=0.5),
}
TINY = ('tiny', 'tiny-glm')


def train_bpe(corpus, vocab_size, special_tokens):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained here on ``corpus`` (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    return tok


def build_tokenizer(vocab_size=512):
    """Train a byte-level BPE tokenizer on the built-in corpus; returns PreTrainedTokenizerFast."""
    from transformers import PreTrainedTokenizerFast

    tok = train_bpe(CORPUS, vocab_size, SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
                                   pad_token='<pad>', unk_token='<unk>',
                                   additional_special_tokens=SPECIAL_TOKENS[4:])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = 'left'
    return fast


def make_config(shape, tokenizer):
    import transformers
    spec = dict(SHAPES[shape])
    arch = spec.pop('arch')
    spec.setdefault('vocab_size', len(tokenizer))
    common = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    if arch == 'glm':
        return transformers.GlmConfig(**spec, **common)
    return transformers.LlamaConfig(**spec, **common)


def create(out, shape='tiny', dtype=None, device=None, seed=0):
    """Write a model directory at ``out``; returns ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = make_config(shape, tokenizer)
    if dtype is None:
        dtype = 'float32' if shape in TINY else 'bfloat16'
    torch_dtype = getattr(torch, dtype)
    if device is None:
        device = 'cuda' if shape not in TINY and torch.cuda.is_available() else 'cpu'
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    if shape in TINY:
        # Larger logits so that sampling is not uniform and greedy output is varied.
        with torch.no_grad():
            model.lm_head.weight.mul_(20.0)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, max_shard_size='5GB')
    tokenizer.save_pretrained(out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m autoglm_service.tiny_model', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='directory to write')
    p.add_argument('--shape', choices=sorted(SHAPES), default='tiny')
    p.add_argument('--dtype', choices=['float32', 'bfloat16', 'float16'])
    p.add_argument('--device', help='where to initialise the weights (default: cuda for big shapes)')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    create(a.out, shape=a.shape, dtype=a.dtype, device=a.device, seed=a.seed)
    print(a.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
