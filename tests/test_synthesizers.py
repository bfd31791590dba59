"""Each method's samples: pool defaults, the generator baselines, general text."""

from __future__ import annotations

import pytest
import torch

from asdfd.config import DistillConfig
from asdfd.errors import UserError
from asdfd.synthesizers import ASDFD, configure

from .conftest import method_setup, tiny_distill_config


def test_as_dfd_pools_only_the_newest_batch_by_default_and_the_baselines_4096(tiny_teacher_dir):
    assert configure(DistillConfig(method="as-dfd")).replay_size == DistillConfig().batch_size == 32
    assert configure(DistillConfig(method="as-dfd", batch_size=64)).replay_size == 64  # one crafted batch, whatever its size
    assert configure(DistillConfig(method="random-text")).replay_size == 4096
    assert configure(DistillConfig(replay_size=100)).replay_size == 100  # an explicit size wins
    assert DistillConfig().method == "lm-text" and configure(DistillConfig()).replay_size == 4096  # the default method
    assert configure(DistillConfig()).mix == 0.5 and configure(DistillConfig(method="random-text")).mix == 0.0
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, replay_size=None, mix=0.0, ss_task="none")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    first = synth.synthesize(student)
    newest = synth.synthesize(student)
    assert synth.pool.size == cfg.batch_size == 8
    drawn = synth.sample(32).embeds
    assert all(any(torch.equal(d, z) for z in newest.embeds) for d in drawn)  # every draw is from the newest batch
    assert not any(torch.equal(d, z) for d in drawn for z in first.embeds)


def test_zskt_generator_raises_teacher_student_divergence(tiny_teacher_dir):
    from asdfd.synthesizers import ModifiedZSKT

    cfg, teacher, space, student = method_setup(tiny_teacher_dir, generator_steps=30, generator_lr=1e-3)
    synth = ModifiedZSKT(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))

    def divergence() -> float:  # on the same noise and lengths each time
        synth.generator = torch.Generator().manual_seed(1)
        x, _, attn = synth._generate(32)
        with torch.no_grad():
            return -synth.generator_loss(x, attn, student).item()

    before = divergence()
    synth.generator = torch.Generator().manual_seed(0)
    synth.craft(8, student)
    assert divergence() > before


def test_dafl_generator_lowers_its_loss(tiny_teacher_dir):
    from asdfd.synthesizers import ModifiedDAFL

    cfg, teacher, space, student = method_setup(tiny_teacher_dir, generator_steps=30, generator_lr=1e-3)
    synth = ModifiedDAFL(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))

    def loss() -> float:
        synth.generator = torch.Generator().manual_seed(1)
        x, _, attn = synth._generate(32)
        with torch.no_grad():
            return synth.generator_loss(x, attn, student).item()

    before = loss()
    synth.generator = torch.Generator().manual_seed(0)
    synth.craft(8, student)
    assert loss() < before


def test_general_text_is_real_dialogue_labelled_by_the_teacher(tiny_teacher_dir):
    from asdfd.data import general_corpus
    from asdfd.synthesizers import GeneralText

    corpus = general_corpus()
    assert len(corpus) > 50_000 and all(len(t.split()) >= 3 for t in corpus[:1000])
    assert len(set(corpus)) == len(corpus)
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, method="general-text")
    synth = GeneralText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    batch = synth.craft(16, student)
    # [CLS] text [SEP], at most max_len word pieces of text, each a real word piece's vector, in the
    # pseudo samples' frame whatever the texts' lengths (the pool keeps one shape)
    assert int(batch.attention_mask.sum(1).max()) <= cfg.max_len + 2
    shortest = synth.bank.lengths.argsort()[:4]
    ids, attn, slot = synth.bank.frame(shortest, cfg.max_len + 2)
    assert ids.shape == attn.shape == slot.shape == (4, cfg.max_len + 2) and int(attn.sum(1).max()) < cfg.max_len + 2
    assert (ids[attn == 0] == space.pad_id).all() and not slot[attn == 0].any()
    synth.pool.add(synth.craft(4, student))
    for _ in range(3):
        synth.synthesize(student)
    assert synth.pool.size == 4 + 3 * cfg.batch_size
    tokens = batch.embeds[batch.slot]
    assert torch.equal(space.embeddings[space.nearest(tokens)], tokens)
    assert (batch.targets == -1).all()
    with torch.no_grad():
        again = teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(batch.teacher_logits, again)
    assert synth.stats()["general_texts"] == len(corpus)


def test_zskt_and_dafl_are_one_generator_with_other_loss_weights(tiny_teacher_dir):
    from asdfd.synthesizers.generator import GeneratorSynthesizer, LossWeights, ModifiedDAFL, ModifiedZSKT

    assert issubclass(ModifiedZSKT, GeneratorSynthesizer) and issubclass(ModifiedDAFL, GeneratorSynthesizer)
    assert ModifiedZSKT.weights == LossWeights(adversarial=1.0)
    assert ModifiedDAFL.weights == LossWeights(one_hot=1.0, activation=0.1, balance=5.0)
    assert set(ModifiedZSKT.__dict__) - {"__doc__", "__module__", "__qualname__", "__firstlineno__", "__static_attributes__"} == {"name", "weights"}


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"method": "no-such"}, "unknown method"),
        ({"method": "real-kd"}, "pass --data"),
        ({"method": "real-kd", "data": "trec", "mix": 0.5}, "real text only"),
        ({"method": "modified-zskt", "generator_lr": 0.0}, "generator_lr"),
        ({"replay_size": 4}, "smaller than batch_size"),
        ({"mix": 1.5}, "mix must be in"),
    ],
)
def test_configure_refuses_what_the_method_cannot_run(kw, message):
    with pytest.raises(UserError, match=message):
        configure(tiny_distill_config(**kw))
