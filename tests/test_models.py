"""Teacher loading, student construction and the token space."""

from __future__ import annotations

import torch

from asdfd.models import TokenSpace, build_student, evenly_spaced_layers, load_teacher, load_tokenizer


def test_student_copies_teacher_layers(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir)
    layers = [0, 3]
    student = build_student(teacher, layers)
    t, s = teacher.state_dict(), student.state_dict()
    for j, i in enumerate(layers):
        prefix_s, prefix_t = f"bert.encoder.layer.{j}.", f"bert.encoder.layer.{i}."
        keys = [k for k in s if k.startswith(prefix_s)]
        assert keys
        for k in keys:
            assert torch.equal(s[k], t[prefix_t + k[len(prefix_s) :]]), k
    for k in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight"):
        assert torch.equal(s[k], t[k])
    assert student.config.num_hidden_layers == 2
    assert not student.get_input_embeddings().weight.requires_grad


def test_evenly_spaced_layers():
    assert evenly_spaced_layers(6, 3) == [1, 3, 5]
    assert evenly_spaced_layers(12, 4) == [2, 5, 8, 11]
    assert evenly_spaced_layers(12, 6) == [1, 3, 5, 7, 9, 11]


def test_frame_places_special_tokens_and_mask(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir)
    space = TokenSpace.from_teacher(teacher, load_tokenizer(tiny_teacher_dir))
    base, slot, attn = space.frame(torch.tensor([2, 4]), max_len=4)
    E = space.embeddings
    assert torch.equal(base[0, 0], E[space.cls_id]) and torch.equal(base[0, 3], E[space.sep_id])
    assert torch.equal(base[0, 4], E[space.pad_id]) and torch.equal(base[1, 5], E[space.sep_id])
    assert slot[0].tolist() == [False, True, True, False, False, False]
    assert attn[0].tolist() == [1, 1, 1, 1, 0, 0] and attn[1].tolist() == [1] * 6
    z = torch.randn(2, 4, E.shape[1])
    x = space.compose(z, base, slot)
    assert torch.equal(x[0, 1:3], z[0, :2]) and torch.equal(x[1, 1:5], z[1])
    # ordinary ids exclude specials and [unusedN]
    assert not set(space.ordinary.tolist()) & {0, 1, 2, 3, 4, 5}
