# -*- coding: utf-8 -*-
"""RowSampler: per-row parameters in one batch, checked against reference definitions."""


def _sampler(params, prompts, vocab=12):
    from autoglm_service.sampling import RowSampler
    s = RowSampler(len(params), vocab, 'cpu')
    s.set_rows(0, params, prompts, len(params))
    return s


def test_penalties_follow_openai_and_vllm_definitions():
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor
    from autoglm_service.types import SamplingParams as P
    torch.manual_seed(0)
    logits = torch.randn(3, 12) * 3
    prompts = [[1, 2], [3], [4, 4]]
    params = [P(temperature=0, frequency_penalty=0.5, presence_penalty=0.25), P(temperature=0),
              P(temperature=0, repetition_penalty=1.3)]
    s = _sampler(params, prompts)
    out = [[5, 5, 7], [5, 5, 7], [5, 9, 9]]          # tokens generated so far per row
    for step in range(3):
        s.observe(torch.tensor([out[0][step], out[1][step], out[2][step]]))
    got = s.penalize(logits.clone(), 0)
    # row 0: OpenAI: logit - count * frequency - (count > 0) * presence (prompt not counted)
    want0 = logits[0].clone()
    for tok, count in ((5, 2), (7, 1)):
        want0[tok] -= count * 0.5 + 0.25
    assert torch.allclose(got[0], want0)
    assert torch.equal(got[1], logits[1])                                  # no penalty: untouched
    ref = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([prompts[2] + out[2]]), logits[2:3].clone())
    assert torch.allclose(got[2], ref[0])


def test_greedy_rows_beside_sampled_rows_and_seeds():
    import torch
    from autoglm_service.types import SamplingParams as P
    logits = torch.randn(4, 50)
    params = [P(temperature=0), P(temperature=1.0, seed=7), P(temperature=1.0, seed=7, top_k=3),
              P(temperature=0.8, top_p=0.5)]
    s = _sampler(params, [[1]] * 4, vocab=50)
    assert not s.all_plain_greedy
    a = s.sample(logits)
    s2 = _sampler(params, [[1]] * 4, vocab=50)
    b = s2.sample(logits)
    assert a[0] == torch.argmax(logits[0]) and b[0] == a[0]
    assert a[1] == b[1] and a[2] == b[2]                                   # same seed, same choice
    assert int(a[2]) in torch.topk(logits[2], 3).indices.tolist()         # top_k respected
    probs = torch.softmax(logits[3] / 0.8, -1)
    sp, si = torch.sort(probs, descending=True)
    nucleus = si[(torch.cumsum(sp, 0) - sp) <= 0.5].tolist()
    assert int(a[3]) in nucleus                                            # top_p respected


def test_rows_move_with_their_state():
    import torch
    from autoglm_service.types import SamplingParams as P
    s = _sampler([P(temperature=0), P(temperature=0, presence_penalty=2.0)], [[0], [0]])
    s.observe(torch.tensor([3, 3]))
    s.move_row(1, 0, 1)
    logits = torch.zeros(1, 12)
    logits[0, 3] = 1.0
    assert int(s.sample(logits)) != 3 and s.any_penalty                    # row 0 now has row 1's penalty
    s.truncate(0)
    assert s.all_plain_greedy
