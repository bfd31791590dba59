"""AS-DFD's two stages on a tiny random teacher: guessing, best starts, the adversarial step."""

from __future__ import annotations

import pytest
import torch

from asdfd.errors import UserError
from asdfd.synthesizers import ASDFD, RandomText

from .conftest import method_setup


def test_guessing_raises_teacher_confidence(tiny_teacher_dir):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, guess_lr=0.05, ss_task="none")

    def mean_target_prob(k: int) -> float:
        cfg.guess_steps = k
        synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(1))
        batch = synth.craft(64, student)
        return float(batch.teacher_logits.softmax(-1).gather(1, batch.targets[:, None]).mean())

    p0, p5, p20 = mean_target_prob(0), mean_target_prob(5), mean_target_prob(20)
    assert p0 < p5 < p20, (p0, p5, p20)
    assert p20 > p0 + 0.2


def test_adversarial_step_raises_student_selfsup_loss(tiny_teacher_dir):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, lambda_adv=50.0, guess_lr=0.05, lambda_norm=0.0)
    student.eval()
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(2))
    c = synth.start(64)

    def ss_loss() -> float:  # the same corruption every time: only z differs
        x = space.compose(c.z.detach(), c.base, c.slot)
        with torch.no_grad():
            return float(synth.task.loss(student, x, c.slot, c.attn, torch.Generator().manual_seed(7)))

    before = ss_loss()
    for _ in range(3):
        synth.step(c, student, adversarial=True)
    after = ss_loss()
    assert after > before, (before, after)


def _start_probs(tiny_teacher_dir, k: int) -> torch.Tensor:
    """The teacher's probabilities on 96 starts picked from ``k`` random candidates each."""
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, ss_task="none", guess_steps=0, init_candidates=k)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(3))
    c = synth.start(96)
    with torch.no_grad():
        probs = synth.teacher_logits(space.compose(c.z, c.base, c.slot), c.attn).softmax(-1)
    assert torch.bincount(c.targets, minlength=3).tolist() == [32, 32, 32]  # targets stay balanced
    return probs


def test_boundary_starts_are_the_ones_the_teacher_is_least_sure_about(tiny_teacher_dir):
    def start_entropy(k: int) -> float:
        probs = _start_probs(tiny_teacher_dir, k)
        return float(-(probs * probs.log()).sum(-1).mean())

    one, eight = start_entropy(1), start_entropy(8)
    assert eight > one + 0.05, (one, eight)


def test_one_candidate_keeps_the_plain_random_start(tiny_teacher_dir):
    cfg, teacher, space, student = method_setup(tiny_teacher_dir, ss_task="none", init_candidates=1)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(5))
    c = synth.start(16)
    g = torch.Generator().manual_seed(5)
    plain = RandomText(teacher, space, cfg, torch.device("cpu"), g).random_frame(16)
    assert torch.equal(c.z, space.embeddings[plain[0]]) and torch.equal(c.attn, plain[3])


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"ss_task": "shuffle"}, "unknown ss_task"),
        ({"ss_ratio": 1.5}, "ss_ratio"),
        ({"guess_steps": -1}, "guess_steps"),
        ({"init_candidates": 0}, "init_candidates"),
        ({"lambda_adv": -1.0}, "lambda_adv"),
    ],
)
def test_as_dfd_checks_its_own_options(kw, message):
    from asdfd.synthesizers import configure

    from .conftest import tiny_distill_config

    with pytest.raises(UserError, match=message):
        configure(tiny_distill_config(**kw))
    configure(tiny_distill_config(method="random-text", **kw))  # options of a method that does not run are not its business
