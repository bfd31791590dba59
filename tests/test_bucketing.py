"""A forward pass by length groups gives the plain pass's outputs and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertForSequenceClassification

from asdfd import bucketing
from tests.conftest import tiny_config


def right_padded(n: int, width: int, lengths: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    lengths = lengths or torch.randint(3, width + 1, (n,), generator=g).tolist()
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return torch.randn(n, width, 32, generator=g), mask


@pytest.mark.parametrize("buckets", [2, 3, 4])
def test_groups_give_the_plain_outputs_and_gradients(buckets):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config()).eval()
    embeds, mask = right_padded(40, 26)
    x1 = embeds.clone().requires_grad_(True)
    plain = model(inputs_embeds=x1, attention_mask=mask, output_hidden_states=True)
    x2 = embeds.clone().requires_grad_(True)
    grouped = bucketing.forward(model, x2, mask, output_hidden_states=True, buckets=buckets, min_rows=8)
    assert torch.allclose(plain.logits, grouped.logits, atol=1e-5)
    assert len(plain.hidden_states) == len(grouped.hidden_states)
    keep = mask.bool()
    for a, b in zip(plain.hidden_states, grouped.hidden_states, strict=True):
        assert a.shape == b.shape  # padded back to the full width
        assert torch.allclose(a[keep], b[keep], atol=1e-5)
    (g1,) = torch.autograd.grad(plain.logits.sum() + sum(h[keep].sum() for h in plain.hidden_states), [x1])
    (g2,) = torch.autograd.grad(grouped.logits.sum() + sum(h[keep].sum() for h in grouped.hidden_states), [x2])
    assert torch.allclose(g1, g2, atol=1e-4)


def test_small_or_even_batches_take_the_plain_pass():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config()).eval()
    calls = []
    model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["inputs_embeds"].shape), with_kwargs=True)
    embeds, mask = right_padded(48, 20)  # fewer rows than two groups of MIN_ROWS need
    bucketing.forward(model, embeds, mask)
    embeds, mask = right_padded(32, 20, [20] * 32)  # nothing to trim
    bucketing.forward(model, embeds, mask)
    assert calls == [(48, 20, 32), (32, 20, 32)]
    embeds, mask = right_padded(32, 20, [4] * 16 + [20] * 16)
    calls.clear()
    bucketing.forward(model, embeds, mask, buckets=2, min_rows=16)
    assert calls == [(16, 4, 32), (16, 20, 32)]  # each group cut to its own longest sample


def test_an_encoder_without_a_head_gets_its_own_output_back():
    """The self-supervised task reads the student's base model: last hidden state and pooler output."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config()).eval().base_model
    embeds, mask = right_padded(24, 18)
    plain = model(inputs_embeds=embeds, attention_mask=mask)
    grouped = bucketing.forward(model, embeds, mask, min_rows=8)
    assert type(grouped) is type(plain) and grouped.last_hidden_state.shape == plain.last_hidden_state.shape
    keep = mask.bool()
    assert torch.allclose(plain.last_hidden_state[keep], grouped.last_hidden_state[keep], atol=1e-5)
    assert torch.allclose(plain.pooler_output, grouped.pooler_output, atol=1e-5)


def test_teacher_training_gets_the_whole_batch_gradient(tiny_teacher_dir):
    from asdfd.models import load_classifier, load_tokenizer
    from asdfd.teacher import accumulate_gradients

    tok = load_tokenizer(tiny_teacher_dir)
    model = load_classifier(tiny_teacher_dir).train()  # the tiny config has no dropout
    words = "what who where city river film movie plot good bad great".split()
    texts = [" ".join(words[: 1 + i % len(words)]) for i in range(24)]
    enc = tok(texts)
    lengths = torch.tensor([len(ids) for ids in enc["input_ids"]])
    y = torch.arange(24) % 3
    idx = torch.randperm(24, generator=torch.Generator().manual_seed(0)).numpy()
    loss = accumulate_gradients(model, tok, enc, lengths, idx, y, torch.device("cpu"))
    grouped = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    whole = tok.pad({k: [enc[k][j] for j in idx] for k in ("input_ids", "attention_mask")}, return_tensors="pt")
    plain = model(**whole, labels=y[idx]).loss
    plain.backward()
    assert abs(loss - plain.item()) < 1e-5
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(grouped[n], p.grad, atol=1e-5), n


def test_teacher_training_in_bf16_follows_fp32(tiny_teacher_dir):
    """bf16 autocast in the teacher's forward passes: the same loss and gradient to bf16's precision."""
    from asdfd.models import load_classifier, load_tokenizer
    from asdfd.teacher import accumulate_gradients

    tok = load_tokenizer(tiny_teacher_dir)
    texts = ["what city has the longest river", "a good film", "who wrote the plot", "bad movie"] * 4
    enc = tok(texts)
    lengths = torch.tensor([len(ids) for ids in enc["input_ids"]])
    y, idx = torch.arange(16) % 3, np.arange(16)
    grads, losses = [], []
    for precision in ("fp32", "bf16"):
        model = load_classifier(tiny_teacher_dir).train()
        losses.append(accumulate_gradients(model, tok, enc, lengths, idx, y, torch.device("cpu"), precision))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert losses[0] != losses[1]  # bf16 did run
    assert abs(losses[0] - losses[1]) < 0.05 * abs(losses[0])
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.95


def test_a_fp32_teachers_cache_key_is_the_one_from_before_precision(tmp_path, monkeypatch):
    """Teachers cached before ``precision`` was an option keep their folder; bf16 gets its own."""
    import hashlib
    import json

    from asdfd import demo
    from asdfd.config import TeacherConfig

    monkeypatch.setattr(demo, "load_dataset", lambda data, split: None)
    monkeypatch.setattr(demo, "train_teacher", lambda *a, **k: None)
    before = {k: v for k, v in TeacherConfig().to_dict().items() if k != "precision"}
    key = hashlib.sha256(json.dumps({"data": "trec", **before}, sort_keys=True).encode()).hexdigest()[:10]
    assert demo.cached_teacher("trec", cache_dir=tmp_path).name == f"trec-{key}"
    assert demo.cached_teacher("trec", TeacherConfig(precision="bf16"), cache_dir=tmp_path).name != f"trec-{key}"
