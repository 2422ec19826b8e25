# -*- coding: utf-8 -*-
# Copyright (c) openautoglm.deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo`'s client: ask the deployed service about a phone screenshot, as the phone agent does.

    AUTOGLM_DEMO_KEY=<key> python3 tests/harness/demo_ask.py --port 18088 --image screen.png

Sends the question twice to POST /v1/chat/completions with model "autoglm-phone-9b": once as
text only, once with the screenshot as a ``data:image/png;base64,...`` image_url part (the
Open-AutoGLM client's format and sampling parameters, fewer tokens). Goes through the
``openai`` client when it imports, else urllib. Prints one JSON line per request (status,
usage, finish_reason) and exits 1 unless both answered 200 and the image request's
prompt_tokens exceed the text-only one's (the image tokens reached the model).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import base64
import json
import os
import sys
import time

MODEL = 'autoglm-phone-9b'
QUESTION = 'Which app should I tap to change the Wi-Fi network?'
# What the Open-AutoGLM phone agent sends with every step (max_tokens aside: it asks for 3000).
SAMPLING = {'temperature': 0.0, 'top_p': 0.85, 'frequency_penalty': 0.2}


def messages(image_url=None):
    if image_url is None:
        return [{'role': 'user', 'content': QUESTION}]
    return [{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': image_url}},
                                         {'type': 'text', 'text': QUESTION}]}]


def ask_openai(base_url, key, msgs, max_tokens):
    import openai
    client = openai.OpenAI(base_url=base_url, api_key=key, timeout=300.0, max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs,
                                                               max_tokens=max_tokens, **SAMPLING)
    except openai.APIStatusError as exc:
        raise SystemExit('demo: HTTP %s from %s: %s' % (exc.status_code, exc.request.url, exc.response.text))
    answer = raw.parse()
    return raw.status_code, answer.usage.model_dump(exclude_none=True), answer.choices[0].finish_reason


def ask_urllib(base_url, key, msgs, max_tokens):
    import urllib.error
    import urllib.request
    body = dict(SAMPLING, model=MODEL, messages=msgs, max_tokens=max_tokens)
    req = urllib.request.Request(base_url + '/chat/completions', data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json', 'Authorization': 'Bearer ' + key})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            answer = json.load(resp)
            status = resp.status
    except urllib.error.HTTPError as exc:
        raise SystemExit('demo: HTTP %s from %s: %s' % (exc.code, req.full_url, exc.read().decode(errors='replace')))
    return status, answer['usage'], answer['choices'][0]['finish_reason']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--image', required=True, help='PNG file of the screenshot')
    p.add_argument('--max-tokens', type=int, default=16)
    a = p.parse_args(argv)
    key = os.environ['AUTOGLM_DEMO_KEY']
    try:
        import openai  # noqa: F401 - only probing
        ask, client = ask_openai, 'openai %s' % openai.__version__
    except ImportError:
        ask, client = ask_urllib, 'urllib (the openai package is not installed here)'
    with open(a.image, 'rb') as f:
        png = f.read()
    url = 'data:image/png;base64,' + base64.b64encode(png).decode('ascii')
    base_url = 'http://%s:%d/v1' % (a.host, a.port)
    print('demo: client: %s; screenshot %s (%d bytes of PNG)' % (client, a.image, len(png)))
    results = {}
    for kind, image_url in (('text only', None), ('with the screenshot', url)):
        start = time.monotonic()
        status, usage, finish = ask(base_url, key, messages(image_url), a.max_tokens)
        results[kind] = usage
        print(json.dumps({'request': kind, 'status': status, 'usage': usage, 'finish_reason': finish,
                          'seconds': round(time.monotonic() - start, 2)}))
        if status != 200:
            return 1
    text, image = results['text only']['prompt_tokens'], results['with the screenshot']['prompt_tokens']
    if image <= text:
        print('demo: FAILED: the request with the screenshot has %d prompt tokens, the text-only one %d: '
              'the image did not reach the model' % (image, text))
        return 1
    print('demo: the screenshot added %d prompt tokens (%d with it, %d without)' % (image - text, image, text))
    return 0


if __name__ == '__main__':
    sys.exit(main())
