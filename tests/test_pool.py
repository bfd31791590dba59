"""The replay pool and the student batches drawn from it."""

from __future__ import annotations

import torch

from asdfd.synthesizers import RandomText
from asdfd.synthesizers.pool import ReplayPool

from .conftest import method_setup


def test_replay_pool_is_bounded_fifo(tiny_teacher_dir):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, replay_size=16)
    synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    for _ in range(5):
        synth.synthesize(student)  # 5 x 8 samples into a pool of 16
    assert synth.pool.size == 16 and synth.n_crafted == 40
    assert len(synth.sample(10)) == 10
    pool = ReplayPool(4, torch.Generator().manual_seed(0))
    b = synth.craft(4, student)
    pool.add(b)
    assert torch.equal(pool.store.embeds, b.embeds)


def test_splice_mixes_tokens_of_two_pool_samples_and_relabels(tiny_teacher_dir):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, mix=0.5)
    synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    for _ in range(4):
        synth.synthesize(student)
    batch = synth.sample(8)
    assert len(batch) == 8 and (batch.targets[:4] == -1).all()
    pool_tokens = {tuple(r.tolist()) for r in synth.pool.store.embeds[synth.pool.store.slot]}
    mixed = batch.embeds[:4][batch.slot[:4]]
    assert all(tuple(r.tolist()) in pool_tokens for r in mixed)  # tokens come from the pool
    whole = [torch.equal(x, y) for x in batch.embeds[:4] for y in synth.pool.store.embeds]
    assert sum(whole) < 4  # but at least one sample is a new combination of them
    # the mixtures are unlabelled (NaN rows) until the distiller's one teacher pass; the pool's draws carry their logits
    assert batch.teacher_logits[:4].isnan().all() and batch.teacher_logits[4:].isfinite().all()
    # and the student can train on them
    student(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits.sum().backward()


def test_the_pool_keeps_the_teachers_states_only_where_every_sample_has_them(tiny_teacher_dir):
    from asdfd.synthesizers import ASDFD

    cfg, teacher, space, student = method_setup(tiny_teacher_dir, replay_size=16)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    synth.keep_hidden = [1, 3]
    batch = synth.synthesize(student)
    assert batch.teacher_hidden.shape == (len(batch), 2, batch.embeds.shape[1], teacher.config.hidden_size)
    with torch.no_grad():
        states = teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask, output_hidden_states=True).hidden_states
    torch.testing.assert_close(batch.teacher_hidden[:, 1], states[3], atol=1e-5, rtol=1e-5)
    restored = ReplayPool(16, torch.Generator())
    restored.load_state_dict(synth.pool.state_dict())
    assert torch.equal(restored.store.teacher_hidden[: len(batch)], batch.teacher_hidden)
    # a pool restored from a checkpoint written before the states were kept: new samples' states are dropped, not mixed in
    old = synth.pool.state_dict()
    old["store"].pop("teacher_hidden")
    restored.load_state_dict(old)
    restored.add(synth.craft(8, student))
    assert restored.store.teacher_hidden is None and restored.sample(4).teacher_hidden is None


def test_balanced_draws_come_alike_from_each_of_the_teachers_classes():
    from asdfd.synthesizers import PseudoBatch

    n = 100
    logits = torch.zeros(n, 3)
    logits[:80, 0] = logits[80:95, 1] = logits[95:, 2] = 5.0  # 80 / 15 / 5 samples
    batch = PseudoBatch(
        torch.zeros(n, 4, 2), torch.ones(n, 4, dtype=torch.long), torch.ones(n, 4, dtype=torch.bool), torch.zeros(n, dtype=torch.long), logits
    )
    counts = {}
    for balanced in (False, True):
        pool = ReplayPool(n, torch.Generator().manual_seed(0), balanced=balanced)
        pool.add(batch)
        counts[balanced] = torch.bincount(pool.sample(6000).teacher_logits.argmax(-1), minlength=3)
    assert counts[False][2] < 500  # about 5% of plain draws
    assert (counts[True] - 2000).abs().max() < 200  # a third each
