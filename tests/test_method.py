"""The method's moving parts on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asdfd.errors import UserError
from asdfd.losses import attention_loss, hidden_loss, input_gradient_loss, kd_loss
from asdfd.models import TokenSpace, build_student, eager_attention, evenly_spaced_layers, frequency_ranks, load_teacher, load_tokenizer
from asdfd.synthesizers import ASDFD, RandomText
from asdfd.synthesizers.base import ReplayPool

from .conftest import tiny_distill_config


def _setup(teacher_dir, **kw):
    cfg = tiny_distill_config(**kw).validate()
    teacher = load_teacher(teacher_dir)
    space = TokenSpace.from_teacher(teacher, load_tokenizer(teacher_dir))
    student = build_student(teacher, evenly_spaced_layers(4, 2))
    return cfg, teacher, space, student


def test_guessing_raises_teacher_confidence(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, guess_lr=0.05, ss_task="none")

    def mean_target_prob(k: int) -> float:
        cfg.guess_steps = k
        synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(1))
        batch = synth.craft(64, student)
        return float(batch.teacher_logits.softmax(-1).gather(1, batch.targets[:, None]).mean())

    p0, p5, p20 = mean_target_prob(0), mean_target_prob(5), mean_target_prob(20)
    assert p0 < p5 < p20, (p0, p5, p20)
    assert p20 > p0 + 0.2


def test_discrete_guessing_swaps_in_word_pieces_toward_the_target(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", token_flips=2, init_candidates=1)

    def craft(k: int):
        cfg.guess_steps = k
        synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(1))
        batch = synth.craft(64, student)
        return batch, float(batch.teacher_logits.softmax(-1).gather(1, batch.targets[:, None]).mean())

    (start, p0), (after, p4) = craft(0), craft(4)
    assert p4 > p0 + 0.1, (p0, p4)
    # every pseudo token is still exactly one word piece's embedding, and at most 4 x 2 moved
    tokens = after.embeds[after.slot]
    assert torch.equal(space.embeddings[space.nearest(tokens)], tokens)
    moved = (after.embeds != start.embeds).any(-1).sum(1)
    assert int(moved.max()) <= 8 and int(moved.sum()) > 0


def test_soft_tokens_stay_mixtures_of_word_pieces_and_move_toward_the_target(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", soft_tokens=2.0, init_candidates=1)

    def craft(k: int):
        synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(1))
        c = synth.start(64)
        for _ in range(k):
            synth.step(c, student, adversarial=False)
        x = space.compose(c.z.detach(), c.base, c.slot)
        p = teacher(inputs_embeds=x, attention_mask=c.attn).logits.softmax(-1).gather(1, c.targets[:, None]).mean()
        return c, float(p)

    (start, p0), (after, p5) = craft(0), craft(5)
    assert p5 > p0 + 0.1, (p0, p5)
    # every pseudo token is the mixture its logits say, of real word pieces only
    E = space.embeddings[space.ordinary]
    torch.testing.assert_close(after.z.detach(), after.logits.softmax(-1) @ E)
    # a start puts 0.99 of each token's mass on its random word piece; the steps move mass away
    assert torch.allclose(start.logits.softmax(-1).max(-1).values, torch.tensor(0.99), atol=1e-4)
    moved = after.logits.softmax(-1).max(-1).values[after.slot[:, 1 : cfg.max_len + 1]]
    assert float(moved.mean()) < 0.9


def test_robust_guessing_hides_pseudo_tokens_only_and_still_reaches_the_target(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", guess_drop=0.3, guess_lr=0.05, init_candidates=1)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(2))
    c = synth.start(256)
    seen = synth.dropped_view(c)
    # [CLS], [SEP] and padding keep their mask; about 30% of the pseudo tokens are hidden
    assert torch.equal(seen[~c.slot], c.attn[~c.slot])
    hidden = float((seen[c.slot] == 0).float().mean())
    assert 0.25 < hidden < 0.35, hidden

    def mean_target_prob(k: int) -> float:
        cfg.guess_steps = k
        synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(1))
        batch = synth.craft(64, student)  # labelled on every token
        return float(batch.teacher_logits.softmax(-1).gather(1, batch.targets[:, None]).mean())

    p0, p10 = mean_target_prob(0), mean_target_prob(10)
    assert p10 > p0 + 0.1, (p0, p10)


def test_diversity_term_pushes_same_target_samples_apart(tiny_teacher_dir):
    def similarity(weight: float) -> float:
        cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", lambda_diverse=weight, guess_lr=0.05, init_candidates=1)
        synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(3))
        c = synth.start(64)
        for _ in range(5):
            synth.step(c, student, adversarial=False)
        x = space.compose(c.z.detach(), c.base, c.slot)
        with torch.no_grad():
            features = teacher(inputs_embeds=x, attention_mask=c.attn, output_hidden_states=True).hidden_states[-1][:, 0]
        return float(ASDFD.similarity(features, c.targets))

    s0, s20 = similarity(0.0), similarity(20.0)
    assert s20 < s0 - 0.01
    # pairs of distinct samples with the same target only
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert float(ASDFD.similarity(f, torch.tensor([0, 0, 1]))) == pytest.approx(1.0)
    assert float(ASDFD.similarity(f, torch.tensor([0, 1, 2]))) == 0.0


def test_rotation_task_turns_pseudo_tokens_by_quarter_turns():
    from asdfd.selfsup import RotationPrediction

    task = RotationPrediction(6, None, 0.15)  # type: ignore[arg-type]  # the space is not used
    x = torch.randn(4, 3, 6)
    turned = task.turn(x, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(turned[0], x[0])  # no turn
    assert torch.allclose(turned[2], -x[2])  # a half turn in every plane
    assert torch.allclose(turned.norm(dim=-1), x.norm(dim=-1))  # norms kept
    assert not torch.allclose(turned[1], x[1]) and not torch.allclose(turned[1], -x[1])
    assert torch.allclose(task.turn(turned[1:2], torch.tensor([3])), x[1:2])  # four quarter turns: back
    # the planes pair up every dimension (hidden 6: three planes)
    assert set(task.first.tolist()) | set(task.second.tolist()) == set(range(6))
    with pytest.raises(UserError, match="unknown ss_task 'rotate'; choose replaced, shuffle, rotation or none"):
        tiny_distill_config(ss_task="rotate").validate()


@pytest.mark.parametrize("task", ["replaced", "shuffle", "rotation"])
def test_adversarial_step_raises_student_selfsup_loss(tiny_teacher_dir, task):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task=task, lambda_adv=50.0, guess_lr=0.05, lambda_norm=0.0)
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


def test_disagreement_step_raises_teacher_student_divergence(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", lambda_disagree=50.0, guess_lr=0.05, lambda_norm=0.0)
    student.eval()
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(2))
    c = synth.start(64)

    def divergence() -> float:
        x = space.compose(c.z.detach(), c.base, c.slot)
        with torch.no_grad():
            return kd_loss(student(inputs_embeds=x, attention_mask=c.attn).logits, teacher(inputs_embeds=x, attention_mask=c.attn).logits, 2.0).item()

    before = divergence()
    for _ in range(3):
        synth.step(c, student, adversarial=True)
    assert divergence() > before
    # without a pretext task the adversarial steps still run, for the divergence alone
    cfg.guess_steps, cfg.adv_steps = 0, 2
    calls = []
    synth.step = lambda c, s, adversarial: calls.append(adversarial) or ASDFD.step(synth, c, s, adversarial)
    synth.craft(8, student)
    assert calls == [True, True]


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


def test_student_dropout_replaces_the_teachers(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir)  # trained without dropout
    ids = torch.randint(5, 30, (4, 7))

    def two_passes(student):
        student.train()
        return student(input_ids=ids).logits, student(input_ids=ids).logits

    a, b = two_passes(build_student(teacher, [0, 3]))
    assert torch.equal(a, b)
    student = build_student(teacher, [0, 3], dropout=0.5)
    assert student.config.hidden_dropout_prob == student.config.attention_probs_dropout_prob == 0.5
    a, b = two_passes(student)
    assert not torch.equal(a, b)
    assert teacher.config.hidden_dropout_prob == 0.0  # the teacher's config is left as it was
    from asdfd.distiller import Distiller

    assert Distiller(tiny_teacher_dir, tiny_distill_config(student_dropout=0.3)).student.config.classifier_dropout == 0.3
    with pytest.raises(UserError, match="student_dropout"):
        tiny_distill_config(student_dropout=1.0).validate()


def test_evenly_spaced_layers():
    assert evenly_spaced_layers(6, 3) == [1, 3, 5]
    assert evenly_spaced_layers(12, 4) == [2, 5, 8, 11]
    assert evenly_spaced_layers(12, 6) == [1, 3, 5, 7, 9, 11]


def test_kd_loss_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(5, 4)
    assert abs(float(kd_loss(logits, logits.clone(), 2.0))) < 1e-6
    assert float(kd_loss(logits, torch.randn(5, 4), 2.0)) > 0
    assert abs(float(kd_loss(logits, logits.clone(), 2.0, "mse"))) < 1e-9
    assert float(kd_loss(logits, torch.randn(5, 4), 2.0, "mse")) > 0
    # where the teacher is sure, the KL hardly tells a student with half its margin apart; MSE does
    teacher, student = torch.tensor([[20.0, 0.0]]), torch.tensor([[10.0, 0.0]])
    assert float(kd_loss(student, teacher, 2.0)) < 0.05 and float(kd_loss(student, teacher, 2.0, "mse")) == 50.0
    with pytest.raises(UserError, match="unknown kd_objective"):
        tiny_distill_config(kd_objective="l1").validate()


def test_hidden_loss_zero_when_copied_layers_match():
    h_t = tuple(torch.randn(2, 5, 8) for _ in range(5))  # embeddings + 4 layers
    layers = [1, 3]
    h_s = (h_t[0], h_t[2], h_t[4])
    mask = torch.ones(2, 5)
    assert float(hidden_loss(h_s, h_t, layers, mask)) < 1e-9
    assert float(hidden_loss((h_t[0], h_t[1], h_t[2]), h_t, layers, mask)) > 0


def test_attention_loss_zero_when_copied_layers_match_and_ignores_padding():
    a_t = tuple(torch.randn(2, 3, 5, 5).softmax(-1) for _ in range(4))  # 4 layers, 3 heads
    layers = [1, 3]
    mask = torch.ones(2, 5)
    assert float(attention_loss((a_t[1], a_t[3]), a_t, layers, mask)) < 1e-6
    assert float(attention_loss((a_t[0], a_t[2]), a_t, layers, mask)) > 0
    # rows of padded query positions do not count
    mask[:, 3:] = 0
    a_s = tuple(a.clone() for a in (a_t[1], a_t[3]))
    for a in a_s:
        a[:, :, 3:] = a[:, :, 3:].flip(-1)
    assert float(attention_loss(a_s, a_t, layers, mask)) < 1e-6


def test_attention_kd_trains_and_leaves_models_as_they_were(tiny_teacher_dir):
    from asdfd.distiller import Distiller

    cfg = tiny_distill_config(method="random-text", lambda_attn=1.0, student_steps=2)
    d = Distiller(tiny_teacher_dir, cfg)
    impl = d.teacher.config._attn_implementation
    assert impl != "eager"  # so that the restore below is a real check
    d.synth.synthesize(d.student)
    batch = d.synth.sample(4)
    logs = d._student_step(batch, *d._optimizer())
    assert logs["attn"] > 0 and math.isfinite(logs["attn"])
    assert d.teacher.config._attn_implementation == impl == d.student.config._attn_implementation


def test_logit_mse_objective_is_what_the_student_step_lowers(tiny_teacher_dir):
    from asdfd.distiller import Distiller

    cfg = tiny_distill_config(method="random-text", kd_objective="mse", lambda_hidden=0.0, student_steps=20, lr=1e-3, warmup=0.0)
    d = Distiller(tiny_teacher_dir, cfg)
    d.synth.synthesize(d.student)
    batch = d.synth.sample(8)
    d.student.eval()  # no dropout, so the step's loss can be computed again here
    opt, sched = d._optimizer()
    with torch.no_grad():
        logits = d.student(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
        expected = torch.nn.functional.mse_loss(logits, batch.teacher_logits)
    losses = [d._student_step(batch, opt, sched)["kd"] for _ in range(10)]
    assert losses[0] == pytest.approx(float(expected), rel=1e-4)
    assert losses[-1] < 0.5 * losses[0]


def test_input_gradient_matching_is_zero_for_the_teacher_itself(tiny_teacher_dir):
    g = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5)
    assert float(input_gradient_loss(g, g, mask)) == 0 and float(input_gradient_loss(2 * g, g, mask)) == pytest.approx(1.0)
    mask[:, 3:] = 0
    h = g.clone()
    h[:, 3:] += 1  # padded positions do not count
    assert float(input_gradient_loss(h, g, mask)) == 0

    from asdfd.distiller import Distiller

    d = Distiller(tiny_teacher_dir, tiny_distill_config(method="random-text", lambda_jac=1.0))
    d.synth.synthesize(d.student)
    batch = d.synth.sample(4)
    x = batch.embeds.detach().requires_grad_(True)
    with torch.no_grad():  # a student equal to the teacher: no gradient mismatch
        full = build_student(d.teacher, list(range(d.teacher.config.num_hidden_layers)))
    full.eval()
    with eager_attention(full, d.teacher):
        same = d._input_gradient_loss(x, full(inputs_embeds=x, attention_mask=batch.attention_mask).logits, batch.attention_mask)
    assert float(same.detach()) < 1e-8
    logs = d._student_step(batch, *d._optimizer())  # and the term trains the student (double backward)
    assert logs["jac"] > 0 and math.isfinite(logs["jac"])


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


def test_replay_pool_is_bounded_fifo(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, replay_size=16)
    synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    for _ in range(5):
        synth.synthesize(student)  # 5 x 8 samples into a pool of 16
    assert synth.pool.size == 16 and synth.n_crafted == 40
    assert len(synth.sample(10)) == 10
    pool = ReplayPool(4, torch.Generator().manual_seed(0))
    b = synth.craft(4, student)
    pool.add(b)
    assert torch.equal(pool.store.embeds, b.embeds)


def test_as_dfd_pools_only_the_newest_batch_by_default_and_the_baselines_4096(tiny_teacher_dir):
    from asdfd.config import DistillConfig

    assert DistillConfig().validate().replay_size == DistillConfig().batch_size == 32
    assert DistillConfig(batch_size=64).validate().replay_size == 64  # one crafted batch, whatever its size
    assert DistillConfig(trajectory=True).validate().replay_size == 32 * (5 + 1 + 1)  # ... with its guessing trajectory
    assert DistillConfig(method="random-text").validate().replay_size == 4096
    assert DistillConfig(replay_size=100).validate().replay_size == 100  # an explicit size wins
    cfg, teacher, space, student = _setup(tiny_teacher_dir, replay_size=None, mix=0.0, ss_task="none")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    first = synth.synthesize(student)
    newest = synth.synthesize(student)
    assert synth.pool.size == cfg.batch_size == 8
    drawn = synth.sample(32).embeds
    assert all(any(torch.equal(d, z) for z in newest.embeds) for d in drawn)  # every draw is from the newest batch
    assert not any(torch.equal(d, z) for d in drawn for z in first.embeds)


def test_shuffle_task_permutes_only_pseudo_tokens_of_shuffled_samples(tiny_teacher_dir, monkeypatch):
    import asdfd.selfsup as ss

    cfg, teacher, space, student = _setup(tiny_teacher_dir)
    base, slot, attn = space.frame(torch.tensor([3, 6, 8, 5]), max_len=8)
    z = torch.randn(4, 8, space.embeddings.shape[1])
    x = space.compose(z, base, slot)
    seen = {}

    def fake_hidden(model, embeds, mask):
        seen["x"] = embeds
        return torch.zeros(embeds.shape[0], embeds.shape[1], 32)

    monkeypatch.setattr(ss, "last_hidden", fake_hidden)
    ss.ShuffleDetection(32, space, 0.15).loss(student, x, slot, attn, torch.Generator().manual_seed(3))
    mixed = seen["x"]
    assert torch.equal(mixed[~slot], x[~slot])  # CLS, SEP and padding never move
    for i in range(4):  # each sample's pseudo tokens are a permutation of its own
        a, b = x[i][slot[i]], mixed[i][slot[i]]
        assert torch.allclose(a.sum(0), b.sum(0), atol=1e-5) and {tuple(r.tolist()) for r in a} == {tuple(r.tolist()) for r in b}


# general-text reads its packaged general corpus, never the task's data
@pytest.mark.parametrize(
    "method, extra",
    [
        ("as-dfd", {}),
        ("as-dfd", {"start_text": "general"}),
        ("as-dfd", {"fresh_random": 0.25, "fresh_text": "general"}),
        ("random-text", {}),
        ("modified-zskt", {}),
        ("modified-dafl", {}),
        ("general-text", {}),
    ],
)
def test_data_free_methods_never_read_real_data(tiny_teacher_dir, monkeypatch, method, extra):
    import asdfd.data
    import asdfd.synthesizers.real_kd
    from asdfd.distiller import distill

    def forbidden(*a, **k):
        raise AssertionError("the distiller read real data")

    monkeypatch.setattr(asdfd.data, "load_dataset", forbidden)
    monkeypatch.setattr(asdfd.data, "_read_file", forbidden)
    monkeypatch.setattr(asdfd.synthesizers.real_kd, "load_dataset", forbidden)
    result = distill(tiny_teacher_dir, None, tiny_distill_config(method=method, data="trec", **extra))
    assert result.report["real_data_used"] is False


def test_tiny_batches_distil(tiny_teacher_dir):
    from asdfd.distiller import distill

    result = distill(tiny_teacher_dir, None, tiny_distill_config(batch_size=2, replay_size=8, pseudo_samples=4))
    assert result.report["synthesis"]["pseudo_samples"] == 4


def test_trajectory_keeps_the_random_start_and_every_step(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, trajectory=True, guess_steps=3, adv_steps=1)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    batch = synth.craft(4, student)
    assert len(batch) == 4 * (3 + 1 + 1)
    start = batch.embeds[:4][batch.slot[:4]]
    # the first slice is the random-token start: every pseudo token is a row of E
    assert torch.cdist(start, space.embeddings, compute_mode="donot_use_mm_for_euclid_dist").min(-1).values.max() < 1e-5
    # the teacher logits stored with each slice are the teacher's on that slice
    with torch.inference_mode():
        again = teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
    assert torch.allclose(again, batch.teacher_logits, atol=1e-4)
    # later slices moved away from the start
    assert not torch.allclose(batch.embeds[4:8], batch.embeds[:4])


def test_zskt_generator_raises_teacher_student_divergence(tiny_teacher_dir):
    from asdfd.synthesizers import ModifiedZSKT

    cfg, teacher, space, student = _setup(tiny_teacher_dir, generator_steps=30, generator_lr=1e-3)
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

    cfg, teacher, space, student = _setup(tiny_teacher_dir, generator_steps=30, generator_lr=1e-3)
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


def test_splice_mixes_tokens_of_two_pool_samples_and_relabels(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.5)
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
    # the mixtures are unlabelled until the distiller's one teacher pass over the student batch
    assert batch.teacher_logits is None
    # and the student can train on them
    student(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits.sum().backward()


def test_span_and_interpolated_mixtures_take_one_run_or_one_share_of_a_second_pool_sample(tiny_teacher_dir):
    for kind in ("span", "interpolate"):
        cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.5, mix_kind=kind)
        synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
        for _ in range(4):
            synth.synthesize(student)
        a = synth.pool.sample(16)
        out = synth.splice(a, 16)
        assert out.teacher_logits is None and (out.targets == -1).all()
        assert torch.equal(out.attention_mask, a.attention_mask) and torch.equal(out.slot, a.slot)
        assert torch.equal(out.embeds[~a.slot], a.embeds[~a.slot])  # [CLS], [SEP] and padding stay
        pool, pool_slot = synth.pool.store.embeds, synth.pool.store.slot
        changed = 0
        for i in range(16):
            d = out.embeds[i] - a.embeds[i]
            moved = d.abs().sum(-1) > 0
            if not moved.any():
                continue
            changed += 1
            if kind == "span":  # one contiguous run, every token of it the same pool sample's at that place
                where = moved.nonzero().squeeze(1)
                assert int(where[-1] - where[0]) + 1 == len(where), where
                assert any(torch.equal(out.embeds[i][moved], pool[j][moved]) and pool_slot[j][moved].all() for j in range(len(pool)))
            else:  # every shared pseudo token moved by one share lam of the way to the same pool sample
                fits = []
                for j in range(len(pool)):
                    both = a.slot[i] & pool_slot[j]
                    v = (pool[j] - a.embeds[i])[both]
                    lam = float((d[both] * v).sum() / (v * v).sum().clamp_min(1e-12))
                    fits.append(0.0 <= lam <= 1.0 and torch.allclose(d[both], lam * v, atol=1e-5) and not d[~both].any())
                assert any(fits)
        assert changed >= 12  # lam ~ U(0, 1): almost every mixture takes something from its partner
    with pytest.raises(UserError, match="mix_kind"):
        tiny_distill_config(method="random-text", mix_kind="span").validate()  # random text: mix 0, no mixtures
    with pytest.raises(UserError, match="unknown mix_kind"):
        tiny_distill_config(mix_kind="blend").validate()


def test_other_class_partners_cross_the_teachers_decision_boundary(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.5, mix_partner="other-class")
    synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    for _ in range(4):
        synth.synthesize(student)
    draws = []
    pool_sample = synth.pool.sample
    synth.pool.sample = lambda n: draws.append(pool_sample(n)) or draws[-1]
    a = pool_sample(64)
    b = synth.partners(a)
    k = synth.PARTNER_DRAWS
    cls_a, cls_b = a.teacher_logits.argmax(-1), b.teacher_logits.argmax(-1)
    cand = draws[-1].teacher_logits.argmax(-1).view(64, k)
    assert len(draws) == 1 and len(set(cand.flatten().tolist())) > 1
    for i in range(64):  # another class whenever one of the k draws has it, and then the first such draw
        crossing = (cand[i] != cls_a[i]).nonzero()
        if len(crossing):
            assert cls_b[i] != cls_a[i] and torch.equal(b.embeds[i], draws[-1].embeds[i * k + int(crossing[0])])
        else:
            assert torch.equal(b.embeds[i], draws[-1].embeds[i * k])
    assert float((cls_b != cls_a).float().mean()) > float((cand[:, 0] != cls_a).float().mean())
    synth.pool.sample = pool_sample
    assert synth.sample(8).teacher_logits is None  # the mixtures still go to the student step's teacher pass
    with pytest.raises(UserError, match="mix_partner"):
        tiny_distill_config(method="random-text", mix_partner="other-class").validate()


def test_fresh_partners_set_crafted_tokens_among_new_random_word_pieces(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.5, mix_partner="fresh")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    synth.synthesize(student)
    draws, partners = [], []
    pool_sample, fresh = synth.pool.sample, synth.fresh
    synth.pool.sample = lambda n: draws.append(pool_sample(n)) or draws[-1]
    synth.fresh = lambda n: partners.append(fresh(n)) or partners[-1]
    batch = synth.sample(16)
    assert len(draws) == 1 and len(partners) == 1 and len(partners[0]) == 8  # partners: new rows, not pool draws
    a, b, mixed = draws[0].rows(0, 8), partners[0], batch.rows(0, 8)
    assert torch.equal(batch.embeds[8:], draws[0].embeds[8:]) and batch.teacher_logits is None
    from_a = (mixed.embeds == a.embeds).all(-1)
    from_b = (mixed.embeds == b.embeds).all(-1) & ~from_a
    assert (from_a | from_b).all() and from_b.any()  # every token is a's or its partner's, and partners give some
    assert not (from_b & ~(a.slot & b.slot)).any()  # only where both have pseudo tokens
    tokens = mixed.embeds[from_b]
    assert torch.equal(space.embeddings[space.nearest(tokens)], tokens)  # plain word pieces
    pool = synth.pool.store.embeds[: synth.pool.size][synth.pool.store.slot[: synth.pool.size]]
    assert not (tokens[:, None] == pool[None]).all(-1).any()  # new ones: crafted tokens are off the vocabulary
    # the prior can shape the partners alone, and a fresh partner needs mixtures to go into
    tiny_distill_config(mix_partner="fresh", zipf=1.0, prior_scope="fresh").validate()
    tiny_distill_config(mix_partner="fresh", fresh_text="general").validate()
    with pytest.raises(UserError, match="mix_partner fresh sets how mixtures are made"):
        tiny_distill_config(mix_partner="fresh", mix=0.0).validate()


def test_fresh_random_text_fills_the_end_of_each_student_batch(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.25, fresh_random=0.5)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    synth.synthesize(student)
    batch = synth.sample(8)
    assert len(batch) == 8 and batch.teacher_logits is None  # labelled by the student step's pass
    assert (batch.targets[:2] == -1).all() and (batch.targets[2:4] >= 0).all() and (batch.targets[4:] == -1).all()
    # the fresh half is plain word pieces, none of them from the pool, new at every draw
    tokens = batch.embeds[4:][batch.slot[4:]]
    assert torch.equal(space.embeddings[space.nearest(tokens)], tokens)
    pool = synth.pool.store.embeds[: synth.pool.size]
    assert not any(torch.equal(x, y) for x in batch.embeds[4:] for y in pool)
    assert not torch.equal(synth.sample(8).embeds[4:], batch.embeds[4:])
    with pytest.raises(UserError, match="fresh_random"):
        tiny_distill_config(mix=0.5, fresh_random=0.75).validate()
    with pytest.raises(UserError, match="real text only"):  # not silently ignored
        tiny_distill_config(method="real-kd", data="trec", fresh_random=0.25).validate()


def test_fresh_general_text_rows_are_dialogue_lines_in_the_pool_frame(tiny_teacher_dir, monkeypatch):
    import asdfd.synthesizers.base
    from asdfd.data import general_corpus

    lines = general_corpus()[:3000]  # a slice: tokenising the whole corpus is slow for a unit test
    monkeypatch.setattr(asdfd.synthesizers.base, "general_corpus", lambda: lines)
    cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.25, fresh_random=0.5, fresh_text="general")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    plain = ASDFD(teacher, space, _setup(tiny_teacher_dir)[0], torch.device("cpu"), torch.Generator())
    assert synth.reads_general_text and not plain.reads_general_text
    synth.synthesize(student)
    batch = synth.sample(8)
    assert batch.embeds.shape == synth.pool.store.embeds[:8].shape and batch.teacher_logits is None
    assert (batch.targets[:2] == -1).all() and (batch.targets[2:4] >= 0).all() and (batch.targets[4:] == -1).all()
    texts = {tuple(r[: int(n)].tolist()) for r, n in zip(synth.fresh_bank.ids, synth.fresh_bank.lengths, strict=True)}
    for row in range(4, 8):  # read each fresh row back as word-piece ids: a framed line of the corpus
        n = int(batch.attention_mask[row].sum())
        read = (batch.embeds[row, :n, None, :] == space.embeddings[None]).all(-1).float().argmax(-1)
        assert tuple(read.tolist()) in texts
        # the slot is every word piece of the line but the special ones ([CLS], [SEP], [UNK]..)
        assert torch.equal(batch.slot[row, :n], ~torch.isin(read, synth.fresh_bank.special)) and not batch.slot[row, n:].any()
    with pytest.raises(UserError, match="fresh_text"):
        tiny_distill_config(fresh_text="news").validate()
    with pytest.raises(UserError, match="fresh_random is 0"):  # not silently ignored
        tiny_distill_config(fresh_text="general").validate()


def test_bridged_samples_lie_between_crafted_tokens_and_their_nearest_word_pieces(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.25, bridge=0.5)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    crafted = synth.craft(8, student)
    out = synth.bridge_to_vocab(crafted, 2, 4)
    keep = torch.tensor([0, 1, 6, 7])
    assert torch.equal(out.embeds[keep], crafted.embeds[keep]) and out.teacher_logits is None
    assert (out.targets[2:6] == -1).all() and torch.equal(out.targets[keep], crafted.targets[keep])
    z, moved, slot = crafted.embeds[2:6], out.embeds[2:6], crafted.slot[2:6]
    assert torch.equal(moved[~slot], z[~slot])  # CLS, SEP and padding stay
    toward = space.embeddings[space.nearest(z)] - z
    shares = []
    for i in range(4):  # one share a in [0, 1] per sample: moved = z + a (nearest - z) on every pseudo token
        d, v = (moved[i] - z[i])[slot[i]], toward[i][slot[i]]
        a = float((d * v).sum() / (v * v).sum())
        assert 0.0 <= a <= 1.0 and torch.allclose(d, a * v, atol=1e-5)
        shares.append(a)
    assert len({round(a, 4) for a in shares}) == 4
    synth.pool.add(crafted)
    batch = synth.sample(8)  # mixtures first, then the bridged rows, then plain pool samples
    assert batch.teacher_logits is None and (batch.targets[:6] == -1).all() and (batch.targets[6:] >= 0).all()
    with pytest.raises(UserError, match="bridge must be in"):
        tiny_distill_config(mix=0.5, bridge=0.75).validate()
    with pytest.raises(UserError, match="real text only"):
        tiny_distill_config(method="real-kd", data="trec", bridge=0.25).validate()


def test_cropped_samples_are_a_contiguous_run_of_pool_tokens_moved_to_the_front(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, mix=0.25, bridge=0.25, crop=0.25)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    crafted = synth.craft(16, student)
    out = synth.crop(crafted, 4, 8)
    keep = torch.cat([torch.arange(4), torch.arange(12, 16)])
    assert torch.equal(out.embeds[keep], crafted.embeds[keep]) and out.teacher_logits is None
    assert (out.targets[4:12] == -1).all() and torch.equal(out.targets[keep], crafted.targets[keep])
    assert out.embeds.shape == crafted.embeds.shape  # the pool's frame width stays
    cls, sep = space.embeddings[space.cls_id], space.embeddings[space.sep_id]
    shorter = 0
    for i in range(4, 12):
        z = crafted.embeds[i][crafted.slot[i]]  # the parent's L pseudo tokens
        run = out.embeds[i][out.slot[i]]
        n = len(run)
        assert (len(z) + 1) // 2 <= n <= len(z)
        starts = [o for o in range(len(z) - n + 1) if torch.equal(z[o : o + n], run)]
        assert starts, "the run is a contiguous part of the parent's pseudo tokens"
        assert out.slot[i, 1 : n + 1].all() and out.slot[i].sum() == n  # right after [CLS]
        assert torch.equal(out.embeds[i, 0], cls) and torch.equal(out.embeds[i, n + 1], sep)
        assert out.attention_mask[i].sum() == n + 2
        shorter += n < len(z) or starts[0] > 0
    assert shorter >= 4  # most crops move tokens to other positions or drop some
    synth.pool.add(crafted)
    batch = synth.sample(8)  # mixtures, bridged rows, cropped rows, then plain pool samples
    assert batch.teacher_logits is None and (batch.targets[:6] == -1).all() and (batch.targets[6:] >= 0).all()
    with pytest.raises(UserError, match="crop must be in"):
        tiny_distill_config(mix=0.5, bridge=0.25, crop=0.5).validate()
    with pytest.raises(UserError, match="real text only"):
        tiny_distill_config(method="real-kd", data="trec", crop=0.25).validate()


@pytest.mark.parametrize(
    "kw",
    [
        {"method": "as-dfd", "mix": 0.5},  # mixtures: labelled in the step's own teacher pass
        {"method": "as-dfd", "mix": 0.0, "lambda_hidden": 0.0},  # pooled logits suffice: no pass at all
        {"method": "as-dfd", "mix": 0.0, "lambda_hidden": 0.0, "fresh_random": 0.5},  # fresh random text needs it
        {"method": "as-dfd", "mix": 0.0, "lambda_hidden": 0.0, "bridge": 0.5},  # so do bridged samples
        {"method": "as-dfd", "mix": 0.0, "lambda_hidden": 0.0, "crop": 0.5},  # and cropped ones
        {"method": "random-text"},
    ],
)
def test_the_teacher_runs_at_most_once_per_student_step(tiny_teacher_dir, kw):
    from asdfd.distiller import Distiller

    cfg = tiny_distill_config(student_steps=3, pseudo_samples=8, batch_size=4, **kw)
    d = Distiller(tiny_teacher_dir, cfg)
    opt, sched = d._optimizer()
    for _ in range(2):
        d.synth.synthesize(d.student)
    calls = []
    d.teacher.register_forward_hook(lambda *a: calls.append(1))
    batch = d.synth.sample(cfg.batch_size, d.student)
    d._student_step(batch, opt, sched)
    assert len(calls) == (0 if cfg.lambda_hidden == 0 and not cfg.mix and not cfg.fresh_random and not cfg.bridge and not cfg.crop else 1)
    # and what the step used is the teacher's output on that very batch
    logits, hidden, _ = d.teacher_outputs(batch, hidden=True)
    with torch.no_grad():
        again = d.teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask, output_hidden_states=True)
    assert torch.allclose(logits, again.logits, atol=1e-5) and len(hidden) == len(again.hidden_states)


def test_real_kd_batches_are_labelled_by_the_distillers_one_pass(tiny_teacher_dir, tiny_csv):
    from asdfd.distiller import Distiller

    cfg = tiny_distill_config(method="real-kd", data=str(tiny_csv), student_steps=2, batch_size=4)
    d = Distiller(tiny_teacher_dir, cfg)
    opt, sched = d._optimizer()
    calls = []
    d.teacher.register_forward_hook(lambda *a: calls.append(1))
    d._student_step(d.synth.sample(4), opt, sched)
    assert len(calls) == 1


def test_real_text_shuffled_keeps_each_bag_and_unigram_only_the_vocabulary(tiny_teacher_dir, tiny_csv):
    from asdfd.distiller import Distiller

    def batch(real_text):
        d = Distiller(tiny_teacher_dir, tiny_distill_config(method="real-kd", data=str(tiny_csv), real_text=real_text))
        b = d.synth.sample(40)
        return d.synth, b, d.space.nearest(b.embeds)

    synth, real, ids = batch("as-is")
    _, shuf, sids = batch("shuffled")  # the same seed draws the same texts
    assert torch.equal(real.attention_mask, shuf.attention_mask) and torch.equal(real.slot, shuf.slot)
    assert torch.equal(ids[:, 0], sids[:, 0]) and torch.equal(ids[~real.slot], sids[~real.slot])  # [CLS], [SEP], padding
    for a, b, m in zip(ids, sids, real.slot, strict=True):
        assert sorted(a[m].tolist()) == sorted(b[m].tolist())
    assert not torch.equal(ids, sids) and torch.equal(shuf.targets, real.targets)
    uni_synth, uni, uids = batch("unigram")
    assert torch.equal(uni.slot, real.slot) and torch.equal(uids[~uni.slot], ids[~real.slot])
    vocab = set(torch.nonzero(uni_synth.unigram).flatten().tolist())
    assert set(uids[uni.slot].tolist()) <= vocab and len(vocab) > 10
    assert not torch.equal(uids, ids) and (uni.targets == -1).all()
    with pytest.raises(UserError, match="real_text"):
        tiny_distill_config(method="random-text", real_text="shuffled").validate()


def test_vocab_base_reads_the_word_pieces_fine_tuning_moved(tiny_teacher_dir, tmp_path):
    from asdfd.distiller import Distiller
    from asdfd.vocabulary import base_word_embeddings, training_vocabulary

    # a "fine-tuned" teacher: every row shrunk by a common decay, a few rows moved by gradients
    teacher = load_teacher(tiny_teacher_dir)
    tok = load_tokenizer(tiny_teacher_dir)
    seen = torch.tensor(tok.convert_tokens_to_ids(["city", "river", "film", "vote"]))
    with torch.no_grad():
        E = teacher.get_input_embeddings().weight
        E.mul_(0.998)
        E[seen] += 0.05 * torch.randn(len(seen), E.shape[1])
    tuned = tmp_path / "tuned"
    teacher.save_pretrained(tuned, safe_serialization=True)
    tok.save_pretrained(tuned)
    base_E = base_word_embeddings(str(tiny_teacher_dir))
    assert torch.equal(torch.nonzero(training_vocabulary(E, base_E)).flatten(), seen.sort().values)
    d = Distiller(tuned, tiny_distill_config(method="random-text", vocab_base=str(tiny_teacher_dir), pseudo_samples=64))
    batch = d.synth.craft(64, d.student)
    ids = d.space.nearest(batch.embeds)[batch.slot]
    assert set(ids.tolist()) <= set(seen.tolist())
    assert d.synth.stats()["vocabulary_word_pieces"] == len(seen)
    from asdfd.card import model_card

    card = model_card({"config": {"method": "random-text", "vocab_base": "base"}, "synthesis": {"vocabulary_word_pieces": 4}}, "s")
    assert "training vocabulary (4 word pieces)" in card
    card = model_card({"config": {"method": "as-dfd", "vocab_base": "base", "prior_scope": "fresh"}, "synthesis": {}}, "s")
    assert "The random word pieces of its fresh random text came from the teacher's training vocabulary" in card
    card = model_card({"config": {"method": "as-dfd", "vocab_base": "base", "prior_scope": "held"}, "synthesis": {}}, "s")
    assert "The held word pieces of its starts came from the teacher's training vocabulary" in card
    card = model_card({"config": {"method": "as-dfd", "vocab_base": "base", "prior_scope": "pretext"}, "synthesis": {}}, "s")
    assert "The word pieces its self-supervised task swapped in came from the teacher's training vocabulary" in card
    with pytest.raises(UserError, match="hold no vocabulary"):
        training_vocabulary(base_E, base_E)
    with pytest.raises(UserError, match="fine-tuned from"):
        training_vocabulary(E[:-1], base_E)
    with pytest.raises(UserError, match="vocab_base"):
        tiny_distill_config(method="modified-dafl", vocab_base="minilm").validate()


def test_general_text_is_real_dialogue_labelled_by_the_teacher(tiny_teacher_dir):
    from asdfd.data import general_corpus
    from asdfd.synthesizers import GeneralText

    corpus = general_corpus()
    assert len(corpus) > 50_000 and all(len(t.split()) >= 3 for t in corpus[:1000])
    assert len(set(corpus)) == len(corpus)
    cfg, teacher, space, student = _setup(tiny_teacher_dir, method="general-text")
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


def test_general_starts_are_dialogue_lines_moved_toward_their_targets(tiny_teacher_dir, monkeypatch):
    import asdfd.synthesizers.base
    from asdfd.data import general_corpus

    lines = general_corpus()[:3000]  # a slice: the test builds three synthesizers, each tokenises its corpus
    monkeypatch.setattr(asdfd.synthesizers.base, "general_corpus", lambda: lines)
    cfg, teacher, space, student = _setup(tiny_teacher_dir, start_text="general", init_candidates=2, guess_lr=0.05)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    random_starts = ASDFD(teacher, space, _setup(tiny_teacher_dir)[0], torch.device("cpu"), torch.Generator())
    assert synth.reads_general_text and not random_starts.reads_general_text
    ids, base, slot, attn = synth.text_frame(8)
    assert ids.shape == (8, cfg.max_len) and base.shape[:2] == slot.shape == attn.shape == (8, cfg.max_len + 2)
    # each start is [CLS] line [SEP] pad..: the pseudo tokens are the line's word pieces, nothing else moves
    start = space.compose(synth.token_embeddings(ids), base, slot)
    assert torch.equal(start[~slot], base[~slot])
    texts = {tuple(r[: int(n)].tolist()) for r, n in zip(synth.bank.ids, synth.bank.lengths, strict=True)}
    for row in range(8):  # read each start back as word-piece ids: a line of the corpus, framed
        n = int(attn[row].sum())
        read = (start[row, :n, None, :] == space.embeddings[None]).all(-1).float().argmax(-1)
        assert tuple(read.tolist()) in texts

    def mean_target_prob(k: int) -> float:  # the same starts and targets (seed), k guessing steps
        cfg.guess_steps, cfg.adv_steps = k, 0
        batch = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(1)).craft(32, student)
        assert batch.embeds.shape == (32, cfg.max_len + 2, base.shape[-1])
        return float(batch.teacher_logits.softmax(-1).gather(1, batch.targets[:, None]).mean())

    assert mean_target_prob(5) > mean_target_prob(0) + 0.05


def test_bf16_autocast_runs_and_tracks_fp32(tiny_teacher_dir):
    """bf16 changes the arithmetic, not the method: the same seed gives nearly the same student."""
    from asdfd.distiller import distill

    students = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_distill_config(student_steps=6, pseudo_samples=16, batch_size=4, precision=precision)
        result = distill(tiny_teacher_dir, None, cfg)
        assert result.report["config"]["precision"] == precision
        students[precision] = torch.nn.utils.parameters_to_vector(result.student.parameters())
        assert torch.isfinite(students[precision]).all()
    start = build_student(load_teacher(tiny_teacher_dir), evenly_spaced_layers(4, 2))
    moved = students["fp32"] - torch.nn.utils.parameters_to_vector(start.parameters())
    gap = (students["bf16"] - students["fp32"]).norm() / moved.norm()
    assert 0 < gap < 0.5, gap


def test_hard_replay_keeps_the_samples_the_student_matches_worst(tiny_teacher_dir):
    from asdfd.losses import kd_loss

    cfg, teacher, space, student = _setup(tiny_teacher_dir, replay_hardness=4, mix=0.0)
    synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    for _ in range(4):
        synth.synthesize(student)
    student.eval()

    def per_sample_kl(b):
        with torch.no_grad():
            s = student(inputs_embeds=b.embeds, attention_mask=b.attention_mask).logits
        return torch.stack([kd_loss(s[i : i + 1], b.teacher_logits[i : i + 1], cfg.temperature) for i in range(len(b))])

    hard = synth.sample(8, student)
    uniform = synth.sample(8)
    assert len(hard) == 8 and per_sample_kl(hard).mean() > per_sample_kl(uniform).mean()
    everything = synth.pool.store.index(torch.arange(synth.pool.size))
    assert per_sample_kl(hard).min() >= per_sample_kl(everything).median()


def test_non_finite_steps_are_skipped_and_persistent_divergence_stops_the_run(tiny_teacher_dir, monkeypatch, tmp_path):
    import asdfd.distiller as dist
    from asdfd.errors import UserError

    real = dist.kd_loss
    calls = {"n": 0}

    def sometimes_nan(*a, **kw):
        calls["n"] += 1
        out = real(*a, **kw)
        return out * float("nan") if calls["n"] in (2, 3) else out

    monkeypatch.setattr(dist, "kd_loss", sometimes_nan)
    result = dist.distill(tiny_teacher_dir, None, tiny_distill_config(student_steps=6))
    assert result.report["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in result.student.parameters())

    monkeypatch.setattr(dist, "kd_loss", lambda *a, **kw: real(*a, **kw) * float("inf"))
    with pytest.raises(UserError, match="diverged"):
        dist.distill(tiny_teacher_dir, tmp_path / "out", tiny_distill_config(student_steps=dist.MAX_BAD_STEPS + 5))
    assert not (tmp_path / "out").exists()


def test_auto_precision_resolves_to_what_the_hardware_has(monkeypatch):
    import asdfd.runtime as rt
    from asdfd.config import DistillConfig

    monkeypatch.setattr(rt, "native_bf16", lambda device: True)
    assert DistillConfig(device="cpu").validate().precision == "bf16"
    monkeypatch.setattr(rt, "native_bf16", lambda device: False)
    cfg = DistillConfig(device="cpu").validate()
    assert cfg.precision == "fp32" and cfg.to_dict()["precision"] == "fp32"  # saved configs hold what ran
    assert DistillConfig(device="cpu", precision="bf16").validate().precision == "bf16"


def test_threads_rise_to_every_core_unless_the_caller_chose_a_count(monkeypatch):
    import asdfd.runtime as rt

    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # records the variable's state, so the test leaves it as it was
    monkeypatch.delenv("OMP_NUM_THREADS")
    default = rt._TORCH_DEFAULT_THREADS
    monkeypatch.setattr(rt.os, "sched_getaffinity", lambda pid: set(range(default + 1)))  # one core more than torch counts
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(default)  # nobody chose: torch's own count
        rt.set_threads()
        assert torch.get_num_threads() == default + 1
        chosen = default + 2
        torch.set_num_threads(chosen)  # a library user's own torch.set_num_threads()
        rt.set_threads()
        assert torch.get_num_threads() == chosen
        torch.set_num_threads(default)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        rt.set_threads()
        assert torch.get_num_threads() == default
    finally:
        torch.set_num_threads(before)


def test_projection_puts_every_pseudo_token_on_a_real_word_piece(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, project=True, guess_lr=0.5, ss_task="none")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    batch = synth.craft(8, student)
    tokens = batch.embeds[batch.slot]
    ordinary = space.embeddings[space.ordinary]
    assert torch.cdist(tokens, ordinary, compute_mode="donot_use_mm_for_euclid_dist").min(-1).values.max() < 1e-5
    with torch.inference_mode():  # relabelled after the projection
        again = teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
    assert torch.allclose(again, batch.teacher_logits, atol=1e-4)
    # nearest() agrees with a brute-force search
    z = torch.randn(5, ordinary.shape[1])
    assert torch.equal(space.nearest(z), space.ordinary[torch.cdist(z, ordinary).argmin(-1)])


def test_frequency_ranks_follow_the_vocabulary_after_its_alphabet():
    alphabet = list("abcdefghijklmnopqrstuvwxyz")
    ranks = frequency_ranks([*alphabet, "the", "##s", "of", "river"])
    assert ranks.tolist() == [*range(4, 30), 0, 1, 2, 3]
    # no alphabet block (fewer than 26 leading single characters): the vocabulary order as is
    assert frequency_ranks([".", "the", ",", "of"]).tolist() == [0, 1, 2, 3]
    # with embedding norms: the alphabet shortest row first, one character after each other piece
    norms = torch.ones(30)
    norms[[18, 0]] = torch.tensor([0.1, 0.2])  # "s" shortest, then "a"; the rest tie (vocabulary order)
    ranks = frequency_ranks([*alphabet, "the", "##s", "of", "river"], norms)
    assert ranks[[18, 26, 0, 27, 1, 28, 2, 29, 3]].tolist() == list(range(9))
    assert ranks[25] == 29  # "z": the last tie, after the other pieces ran out
    assert torch.equal(frequency_ranks([".", "the", ",", "of"], torch.rand(4)), torch.arange(4))
    norms[[1, 2]] = float("inf")  # "b" and "c" outside the training vocabulary: after everything
    ranks = frequency_ranks([*alphabet, "the", "##s", "of", "river"], norms)
    assert ranks[[18, 26, 0, 27, 3, 28, 4, 29]].tolist() == list(range(8))
    assert ranks[[25, 1, 2]].tolist() == [27, 28, 29]


def test_zipf_prior_draws_frequent_word_pieces_more_often(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir)
    assert space.token_prior(0.0) is None
    prior = space.token_prior(1.0)
    assert abs(float(prior.sum()) - 1) < 1e-6
    assert torch.equal(prior.argsort(descending=True), space.ranks.argsort())  # falls with the rank
    # the tiny vocabulary: WORDS in order, then the 26 "##x" pieces (not an alphabet: two characters)
    first = int(space.ordinary[space.ranks.argmin()])
    assert load_tokenizer(tiny_teacher_dir).convert_ids_to_tokens(first) == "what"

    def share_of_top5(zipf: float) -> float:
        cfg.zipf = zipf
        synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
        ids = synth.random_frame(400)[0]
        top5 = space.ordinary[space.ranks < 5]
        return float(torch.isin(ids, top5).float().mean())

    uniform, zipf = share_of_top5(0.0), share_of_top5(1.0)
    assert abs(uniform - 5 / len(space.ordinary)) < 0.02, uniform
    assert zipf > 3 * uniform, (zipf, uniform)

    # zipf_alphabet norm: the tiny vocabulary has no alphabet block, so the ranks stay; it needs
    # the training vocabulary, whose characters alone it orders
    vocabulary = torch.rand(len(space.ordinary)) < 0.5
    assert torch.equal(space.token_prior(1.0, "norm", vocabulary), prior)
    with pytest.raises(UserError, match="vocab_base"):
        space.token_prior(1.0, "norm")
    with pytest.raises(UserError, match="choose last or norm"):
        tiny_distill_config(zipf=1.0, zipf_alphabet="length").validate()
    with pytest.raises(UserError, match="zipf 0"):
        tiny_distill_config(zipf_alphabet="norm", vocab_base="minilm").validate()
    with pytest.raises(UserError, match="vocab_base"):
        tiny_distill_config(zipf=1.0, zipf_alphabet="norm").validate()


def test_prior_scope_fresh_keeps_the_starts_uniform(tiny_teacher_dir, monkeypatch):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, zipf=2.0, fresh_random=0.25, prior_scope="fresh")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    calls, draw = [], synth.random_frame

    def spy(n: int, shaped: bool = True):
        calls.append(shaped)
        return draw(n, shaped=shaped)

    monkeypatch.setattr(synth, "random_frame", spy)
    synth.start(6)
    synth.fresh(6)
    assert calls == [False, True]  # the starts uniform, the fresh rows from the prior
    # and the uniform draw ignores the prior: a Zipf law of exponent 2 puts most draws on the top word pieces
    top5 = space.ordinary[space.ranks < 5]
    assert float(torch.isin(draw(200, shaped=False)[0], top5).float().mean()) < 0.2
    assert float(torch.isin(draw(200)[0], top5).float().mean()) > 0.5
    with pytest.raises(UserError, match="prior_scope fresh"):
        tiny_distill_config(zipf=1.0, prior_scope="fresh").validate()  # no fresh rows
    with pytest.raises(UserError, match="choose all, fresh, held or pretext"):
        tiny_distill_config(prior_scope="starts").validate()


def _start_probs(tiny_teacher_dir, k: int, pick: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's probabilities on 96 starts picked from ``k`` random candidates each, and their targets."""
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", guess_steps=0, init_candidates=k, init_pick=pick)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(3))
    c = synth.start(96)
    with torch.no_grad():
        probs = synth.teacher_logits(space.compose(c.z, c.base, c.slot), c.attn).softmax(-1)
    assert torch.bincount(c.targets, minlength=3).tolist() == [32, 32, 32]  # targets stay balanced
    return probs, c.targets


def test_best_of_k_starts_lean_toward_their_targets(tiny_teacher_dir):
    def start_target_prob(k: int) -> float:
        probs, targets = _start_probs(tiny_teacher_dir, k, "target")
        return float(probs.gather(1, targets[:, None]).mean())

    one, eight = start_target_prob(1), start_target_prob(8)
    assert eight > one + 0.1, (one, eight)


def test_boundary_starts_are_the_ones_the_teacher_is_least_sure_about(tiny_teacher_dir):
    def start_entropy(k: int) -> float:
        probs, _ = _start_probs(tiny_teacher_dir, k, "boundary")
        return float(-(probs * probs.log()).sum(-1).mean())

    one, eight = start_entropy(1), start_entropy(8)
    assert eight > one + 0.05, (one, eight)


def test_soft_targets_spread_between_one_hot_and_uniform(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", soft_targets=1.0)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    targets = torch.arange(300) % 3
    dist = synth.target_distribution(targets)
    assert torch.allclose(dist.sum(-1), torch.ones(300))
    assert torch.equal(dist.argmax(-1), targets)  # the chosen class stays the largest share
    top = dist.max(-1).values
    assert float(top.min()) < 0.4 and float(top.max()) > 0.95  # from near uniform to near one-hot
    cfg.soft_targets = 0.0
    assert torch.equal(synth.target_distribution(targets), torch.nn.functional.one_hot(targets, 3).float())

    # guessing toward soft targets leaves the teacher less sure than toward one-hot ones
    def mean_target_prob(soft: float) -> float:
        cfg.soft_targets, cfg.guess_steps, cfg.guess_lr = soft, 20, 0.05
        synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(1))
        batch = synth.craft(48, student)
        return float(batch.teacher_logits.softmax(-1).gather(1, batch.targets[:, None]).mean())

    assert mean_target_prob(1.0) < mean_target_prob(0.0) - 0.05


def test_one_candidate_keeps_the_plain_random_start(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", init_candidates=1)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(5))
    c = synth.start(16)
    g = torch.Generator().manual_seed(5)
    plain = RandomText(teacher, space, cfg, torch.device("cpu"), g).random_frame(16)
    assert torch.equal(c.z, space.embeddings[plain[0]]) and torch.equal(c.attn, plain[3])


def test_ema_saves_the_moving_average_of_the_students_weights(tiny_teacher_dir):
    from asdfd.distiller import Distiller

    d = Distiller(tiny_teacher_dir, tiny_distill_config(ema=0.5, student_steps=4))
    seen, real = [], d._update

    def record(*a):
        real(*a)
        seen.append({k: v.detach().clone() for k, v in d.student.named_parameters() if v.requires_grad})

    d._update = record
    result = d.run()
    assert len(seen) == 4
    expected = seen[0]
    for w in seen[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * w[k] for k in w}
    final = dict(result.student.named_parameters())
    for k, v in expected.items():
        assert torch.allclose(final[k], v, atol=1e-6), k
    assert not torch.allclose(final["classifier.weight"], seen[-1]["classifier.weight"])  # not the last weights
    with pytest.raises(UserError, match="ema must be in"):
        tiny_distill_config(ema=1.0).validate()


@pytest.mark.parametrize("scale", [1.0, 0.0, 10.0])
def test_embedding_lr_scale_sets_how_the_students_embedding_block_learns(tiny_teacher_dir, scale):
    from asdfd.distiller import Distiller
    from asdfd.models import embedding_block

    cfg = tiny_distill_config(embedding_lr_scale=scale, student_steps=3)
    d = Distiller(tiny_teacher_dir, cfg)
    block = {id(p) for p in embedding_block(d.student).parameters()}
    lrs = {id(p): g["lr"] for g in d._optimizer()[0].param_groups for p in g["params"]}
    trainable = [p for p in embedding_block(d.student).parameters() if p.requires_grad]
    assert len(trainable) == (0 if scale == 0 else 4)  # position and token-type embeddings, LayerNorm weight and bias
    for p in trainable:
        assert lrs[id(p)] == pytest.approx(cfg.lr * scale)
    assert {lrs[i] for i in lrs if i not in block} <= {cfg.lr, 1e-3}  # the rest (and a method's extra head) unchanged
    before = {k: v.detach().clone() for k, v in d.student.named_parameters()}
    after = dict(d.run().student.named_parameters())
    names = [k for k in before if ".embeddings." in k and "word_embeddings" not in k]
    moved = {k: not torch.equal(before[k], after[k]) for k in before}
    assert not moved["bert.embeddings.word_embeddings.weight"]  # always frozen
    assert any(moved[k] for k in names) == (scale != 0)
    assert moved["classifier.weight"] and any(moved[k] for k in before if ".encoder." in k)  # the rest still learns
    with pytest.raises(UserError, match="embedding_lr_scale must be"):
        tiny_distill_config(embedding_lr_scale=-1.0).validate()


def test_restarts_take_pooled_samples_of_another_class_and_move_them_to_their_targets(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, restart=0.5, guess_lr=0.05, guess_steps=0, ss_task="none", replay_size=64)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    first = synth.craft(32, student)  # an empty pool: every start is new
    assert synth.pool.size == 0 and first.targets.shape == (32,)
    for _ in range(2):
        synth.synthesize(student)
    pooled = synth.pool.store.embeds[: synth.pool.size]
    start = synth.start(32)
    x = space.compose(start.z, start.base, start.slot)
    # K 0: the first half of the samples are pooled samples as they were, the rest new random starts
    from_pool = [bool((x[i] == pooled).all(-1).all(-1).any()) for i in range(32)]
    assert all(from_pool[:16]) and not any(from_pool[16:])
    with torch.no_grad():
        classes = teacher(inputs_embeds=x[:16], attention_mask=start.attn[:16]).logits.argmax(-1)
    assert float((classes != start.targets[:16]).float().mean()) > 0.5  # guessed toward another class

    def target_prob(k: int) -> float:  # the restarted half, after k guessing steps
        cfg.guess_steps = k
        synth.generator.manual_seed(3)
        batch = synth.craft(32, student)
        return float(batch.teacher_logits[:16].softmax(-1).gather(1, batch.targets[:16, None]).mean())

    assert target_prob(10) > target_prob(0) + 0.1
    for bad, match in (({"restart": 1.5}, "restart must be in"), ({"restart": 0.5, "method": "random-text"}, "restart re-guesses")):
        with pytest.raises(UserError, match=match):
            tiny_distill_config(**bad).validate()


def test_lexicon_starts_draw_their_share_of_word_pieces_from_the_targets_lexicon(tiny_teacher_dir, monkeypatch):
    import asdfd.synthesizers.as_dfd as as_dfd

    monkeypatch.setattr(as_dfd, "LEXICON_SIZE", 8)  # the tiny vocabulary holds fewer than 256 word pieces
    cfg, teacher, space, student = _setup(tiny_teacher_dir, lexicon=0.5, init_candidates=1, guess_steps=0, ss_task="none")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    C = teacher.config.num_labels
    assert synth.lexicons.shape == (C, 8)
    # each lexicon holds the 8 word pieces that, read alone, the teacher gives its class most
    alone = torch.tensor([[space.cls_id, int(w), space.sep_id] for w in space.ordinary])
    with torch.no_grad():
        scores = teacher(input_ids=alone).logits.log_softmax(-1)  # (n, C)
    for c in range(C):
        member = torch.isin(space.ordinary, synth.lexicons[c])
        assert scores[member, c].min() >= scores[~member, c].max() - 1e-5
    start = synth.start(512)
    ids = space.nearest(start.z)  # guess_steps 0, no noise: z holds the start word pieces exactly
    slot = start.slot[:, 1 : cfg.max_len + 1]
    in_own = torch.stack([torch.isin(ids[i], synth.lexicons[t]) for i, t in enumerate(start.targets.tolist())])
    share = float(in_own[slot].float().mean())
    base_rate = 8 / len(space.ordinary)  # a random word piece that falls in the lexicon anyway
    assert abs(share - (0.5 + 0.5 * base_rate)) < 0.05, share
    assert len(synth.stats()["lexicon_head"]) == C
    for bad, match in (({"lexicon": 1.5}, "lexicon must be in"), ({"lexicon": 0.5, "method": "random-text"}, "lexicon draws")):
        with pytest.raises(UserError, match=match):
            tiny_distill_config(**bad).validate()


def test_held_word_pieces_stay_on_the_vocabulary_while_the_rest_of_the_sample_is_guessed(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(
        tiny_teacher_dir, hold=0.5, zipf=4.0, prior_scope="held", guess_lr=0.05, guess_steps=3, min_len=16, max_len=16
    )
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    c = synth.start(256)  # 4 candidates per sample: the held mask is picked with its start
    start = c.z.detach().clone()
    for k in range(cfg.guess_steps + cfg.adv_steps):
        synth.step(c, student, adversarial=k >= cfg.guess_steps)
    held, moved = c.held, (c.z.detach() - start).norm(dim=-1) > 1e-6
    assert abs(float(held.float().mean()) - 0.5) < 0.05  # every position is a pseudo token here
    assert not moved[held].any() and moved[~held].float().mean() > 0.9
    on_vocab = (synth.token_embeddings(space.nearest(c.z.detach())) - c.z.detach()).norm(dim=-1) < 1e-6
    assert on_vocab[held].all()
    # prior_scope held: the held word pieces follow the Zipf prior, the moving starts stay uniform
    rank = {int(w): i for i, w in enumerate(space.ordinary)}
    ids = space.nearest(start)
    mean_rank = [sum(rank[int(w)] for w in ids[m]) / int(m.sum()) for m in (held, ~held)]
    assert mean_rank[0] < 0.5 * mean_rank[1], mean_rank
    for bad, match in (
        ({"hold": 1.0}, "hold must be in"),
        ({"hold": 0.5, "method": "random-text"}, "hold keeps"),
        ({"hold": 0.5, "token_flips": 2}, "hold keeps"),
        ({"hold": 0.5, "prior_scope": "held"}, "prior_scope held"),
    ):
        with pytest.raises(UserError, match=match):
            tiny_distill_config(**bad).validate()


def test_prior_scope_pretext_shapes_only_the_word_pieces_the_replaced_token_task_swaps_in(tiny_teacher_dir, monkeypatch):
    import asdfd.selfsup as selfsup

    cfg, teacher, space, student = _setup(tiny_teacher_dir, zipf=4.0, prior_scope="pretext", ss_ratio=0.5, min_len=16, max_len=16)
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    rank = {int(w): i for i, w in enumerate(space.ordinary)}

    def mean_rank(embeds: torch.Tensor) -> float:
        ids = space.nearest(embeds)
        return sum(rank[int(w)] for w in ids.flatten()) / ids.numel()

    c = synth.start(256)
    start = c.z.detach()
    seen = []
    monkeypatch.setattr(selfsup, "last_hidden", lambda s, e, a: seen.append(e) or torch.zeros(*e.shape[:2], e.shape[-1]))
    x = space.compose(start, c.base, c.slot)
    synth.task.loss(student, x, c.slot, c.attn, synth.generator)
    swapped = (seen[0] - x).norm(dim=-1) > 1e-6  # the positions the task replaced
    uniform = mean_rank(start)  # the starts stay uniform
    assert mean_rank(seen[0][swapped]) < 0.5 * uniform, (mean_rank(seen[0][swapped]), uniform)
    # prior_scope all (the default) shapes starts and fresh rows, not the pretext task: its runs predate the option
    cfg_all = tiny_distill_config(zipf=4.0).validate()
    assert cfg_all.prior_shapes("starts") and cfg_all.prior_shapes("held") and not cfg_all.prior_shapes("pretext")
    assert ASDFD(teacher, space, cfg_all, torch.device("cpu"), torch.Generator().manual_seed(0)).task.weights is None
    for bad in ({"prior_scope": "pretext"}, {"prior_scope": "pretext", "zipf": 1.0, "ss_task": "shuffle"}):
        with pytest.raises(UserError, match="prior_scope pretext"):
            tiny_distill_config(**bad).validate()


def test_topical_random_text_draws_its_share_of_word_pieces_near_one_anchor(tiny_teacher_dir, monkeypatch):
    import asdfd.synthesizers.base as base

    monkeypatch.setattr(base, "TOPIC_NEIGHBOURS", 4)  # of the tiny vocabulary's few dozen word pieces
    cfg, teacher, space, _ = _setup(tiny_teacher_dir, method="random-text", topic=0.75, min_len=24, max_len=24)
    synth = RandomText(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    ids = synth.random_frame(400)[0]
    unit = F.normalize(space.embeddings[space.ordinary], dim=-1)
    row = {int(w): i for i, w in enumerate(space.ordinary)}
    near = (unit @ unit.T).topk(4, dim=1).indices  # each word piece's 4 nearest (itself included)

    def best_anchor_share(sample: torch.Tensor) -> float:  # the largest share of a sample in one anchor's set
        rows = torch.tensor([row[int(w)] for w in sample])
        return max(float(torch.isin(rows, near[a]).float().mean()) for a in range(len(unit)))

    topical = [best_anchor_share(s) for s in ids[:100]]
    cfg.topic = 0.0
    plain = [best_anchor_share(s) for s in synth.random_frame(100)[0]]
    assert sum(topical) / 100 > 0.7 and sum(plain) / 100 < 0.4, (sum(topical) / 100, sum(plain) / 100)
    for bad, match in (({"topic": -0.1}, "topic must be in"), ({"topic": 0.5, "method": "modified-dafl"}, "topic shapes")):
        with pytest.raises(UserError, match=match):
            tiny_distill_config(**bad).validate()


def test_class_prior_draws_targets_by_the_given_frequencies(tiny_teacher_dir):
    cfg, teacher, space, student = _setup(tiny_teacher_dir, ss_task="none", class_prior="0.1,0.2,0.7")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    share = torch.bincount(synth.draw_targets(6000), minlength=3).float() / 6000
    assert torch.allclose(share, torch.tensor([0.1, 0.2, 0.7]), atol=0.03), share
    cfg.class_prior = "uniform"
    balanced = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(balanced.draw_targets(300), minlength=3), torch.tensor([100, 100, 100]))
    cfg.class_prior = "0.5,0.5"  # the tiny teacher has 3 classes
    with pytest.raises(UserError, match="2 frequencies and the teacher 3 classes"):
        ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))


def test_class_prior_from_the_bias_follows_its_order(tiny_teacher_dir):
    from asdfd.label_balance import BIAS_TEMPERATURE, classifier_bias, prior_from_bias

    teacher = load_teacher(tiny_teacher_dir)
    with torch.no_grad():
        teacher.classifier.bias.copy_(torch.tensor([0.004, -0.002, 0.0]))
    assert torch.equal(classifier_bias(teacher), teacher.classifier.bias.detach())
    prior = prior_from_bias(teacher)
    assert torch.allclose(prior.sum(), torch.tensor(1.0))
    assert prior[0] > prior[2] > prior[1]  # the class the bias favours most is drawn most
    assert torch.allclose(prior, (teacher.classifier.bias.detach() / BIAS_TEMPERATURE).softmax(-1))
    cfg, _, space, student = _setup(tiny_teacher_dir, ss_task="none", class_prior="bias")
    synth = ASDFD(teacher, space, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.allclose(synth.class_prior, prior)
    teacher.classifier.bias = None
    with pytest.raises(UserError, match="has none; pass uniform or the frequencies"):
        prior_from_bias(teacher)


def test_task_unigram_draws_word_pieces_by_their_train_split_frequencies(tiny_teacher_dir, tmp_path):
    from asdfd.card import model_card
    from asdfd.distiller import Distiller

    # a train split of three words, "city" nine times as often as each of the others
    rows = ["text,label"] + [f"city city city city city city city city city river film,{y}" for y in ("neg", "neu", "pos") * 10]
    data = tmp_path / "three.csv"
    data.write_text("\n".join(rows) + "\n")
    d = Distiller(tiny_teacher_dir, tiny_distill_config(method="random-text", task_unigram=True, data=str(data), pseudo_samples=64))
    batch = d.synth.craft(64, d.student)
    ids = d.space.nearest(batch.embeds)[batch.slot]
    tok = load_tokenizer(tiny_teacher_dir)
    city, river, film = tok.convert_tokens_to_ids(["city", "river", "film"])
    assert set(ids.tolist()) <= {city, river, film}
    share = float((ids == city).float().mean())
    assert 0.7 < share < 0.95, share  # 9 of 11
    report = d.run().report
    assert report["real_data_used"] is True
    card = model_card(report, "s")
    assert "frequencies in the train split" in card and "data-free" not in card.split("---")[1]
    with pytest.raises(UserError, match="pass --data"):
        tiny_distill_config(task_unigram=True).validate()
    with pytest.raises(UserError, match="drop zipf and vocab_base"):
        tiny_distill_config(task_unigram=True, data=str(data), zipf=1.0).validate()
    with pytest.raises(UserError, match="draws none"):
        tiny_distill_config(method="modified-dafl", task_unigram=True, data=str(data)).validate()
