"""The one protocol every way of making pseudo samples implements, and the replay pool they share.

A synthesizer owns its state (pool, self-supervised head, statistics). The distiller asks it to
``synthesize(student)`` a fresh batch now and then (adapted to the student as it is at that moment),
draws training batches with ``sample(n, student)`` (the student matters for hard-sample replay
only), adds ``student_loss`` to the student's objective and
optimises ``parameters()`` together with the student. A new method is one subclass that implements
``craft`` and is registered in ``asdfd.synthesizers``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from ..config import DistillConfig
from ..data import general_corpus, load_dataset
from ..errors import UserError
from ..losses import kd_per_sample
from ..models import TokenSpace
from ..runtime import autocast
from ..vocabulary import base_word_embeddings, training_vocabulary
from .text_bank import TextBank


@dataclass
class PseudoBatch:
    """Pseudo samples in embedding space, framed as ``[CLS] z_1..z_L [SEP] pad..``."""

    embeds: torch.Tensor  # (B, T, d) what goes into inputs_embeds
    attention_mask: torch.Tensor  # (B, T)
    slot: torch.Tensor  # (B, T) bool: positions holding pseudo tokens (not CLS/SEP/pad)
    targets: torch.Tensor  # (B,) class the sample was crafted toward, -1 if none
    # (B, C) teacher logits on these samples; None where nobody has run the teacher on them yet
    # (mixtures, real text): the distiller then runs it once, together with the hidden states
    teacher_logits: torch.Tensor | None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def _map(self, fn) -> PseudoBatch:
        return PseudoBatch(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device) -> PseudoBatch:
        return self._map(lambda t: t.to(device))

    def index(self, idx: torch.Tensor) -> PseudoBatch:
        return self._map(lambda t: t[idx])

    def rows(self, start: int, n: int) -> PseudoBatch:
        return self.index(torch.arange(start, start + n, device=self.embeds.device))

    def with_rows(self, start: int, rows: PseudoBatch) -> PseudoBatch:
        """This batch with rows ``start .. start + len(rows) - 1`` replaced by ``rows``."""
        end = start + len(rows)
        return PseudoBatch.concat([self.rows(0, start), rows, self.rows(end, len(self) - end)])

    @staticmethod
    def concat(batches: list[PseudoBatch]) -> PseudoBatch:
        """One batch of all rows; its teacher logits are None unless every part has them."""

        def cat(name: str) -> torch.Tensor | None:
            parts = [getattr(b, name) for b in batches]
            return None if any(p is None for p in parts) else torch.cat(parts)

        return PseudoBatch(**{f.name: cat(f.name) for f in fields(PseudoBatch)})


class ReplayPool:
    """A bounded FIFO of crafted samples on the CPU; ``sample`` draws uniformly from what it holds."""

    def __init__(self, capacity: int, generator: torch.Generator):
        self.capacity = capacity
        self.generator = generator
        self.store: PseudoBatch | None = None
        self.size = 0
        self.cursor = 0

    def add(self, batch: PseudoBatch) -> None:
        assert batch.teacher_logits is not None, "pooled samples carry their teacher logits"
        batch = batch.to(torch.device("cpu"))
        if self.store is None:
            self.store = PseudoBatch(
                **{f.name: getattr(batch, f.name).new_zeros((self.capacity, *getattr(batch, f.name).shape[1:])) for f in fields(batch)}
            )
        if len(batch) > self.capacity:  # only the newest samples fit
            batch = batch.index(torch.arange(len(batch) - self.capacity, len(batch)))
        n = len(batch)
        idx = (self.cursor + torch.arange(n)) % self.capacity
        for f in fields(batch):
            getattr(self.store, f.name)[idx] = getattr(batch, f.name)
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def state_dict(self) -> dict:
        store = None if self.store is None else {f.name: getattr(self.store, f.name)[: self.size].clone() for f in fields(self.store)}
        return {"store": store, "size": self.size, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.store, self.size, self.cursor = None, 0, 0
        if state["store"] is not None:
            self.add(PseudoBatch(**state["store"]))
        self.size, self.cursor = state["size"], state["cursor"]

    def sample(self, n: int) -> PseudoBatch:
        assert self.store is not None and self.size > 0, "sample() before any synthesize()"
        idx = torch.randint(self.size, (n,), generator=self.generator)
        return self.store.index(idx)


TOPIC_NEIGHBOURS = 64  # word pieces an anchor's subject is drawn from (topic > 0)


def task_unigram(space: TokenSpace, cfg: DistillConfig) -> torch.Tensor:
    """Counts over ``space.ordinary`` of each word piece in the train split of ``cfg.data``: the
    frequencies a word-piece prior from the weights can at best recover (``task_unigram``, a
    diagnostic that reads the task's texts, though never their order or labels)."""
    data = load_dataset(cfg.data, "train", cfg.text_column, cfg.label_column)
    counts = TextBank(space, data.texts, data.max_length).counts(space.vocab_size)[space.ordinary]
    if counts.sum() == 0:
        raise UserError(f"the train split of '{cfg.data}' holds no ordinary word piece of the teacher's tokenizer; check --data")
    return counts


class Synthesizer:
    """Base class: subclasses implement ``craft``; everything else is shared."""

    name = "base"
    needs_data = False  # True only for the data-driven references (real-kd, finetune)
    reads_general_text = False  # True: the run reads real general-domain text, not task data (general-text; general starts or fresh rows)
    hard_labels = False  # True: the student learns the batch's ``targets`` (gold labels), not the teacher
    default_mix = 0.0  # share of each student batch made of token-level mixtures unless cfg.mix says otherwise
    PARTNER_DRAWS = 4  # pool draws searched for a mixture partner of another class (mix_partner other-class)

    @classmethod
    def default_replay_size(cls, cfg) -> int:
        """Pool capacity unless ``cfg.replay_size`` says otherwise."""
        return 4096

    def __init__(
        self,
        teacher: PreTrainedModel,
        space: TokenSpace,
        cfg: DistillConfig,
        device: torch.device,
        generator: torch.Generator,
    ):
        self.teacher = teacher
        self.space = space
        self.cfg = cfg
        self.device = device
        self.generator = generator
        self.num_labels = int(teacher.config.num_labels)
        self.pool = ReplayPool(cfg.replay_size, generator)
        self.vocabulary = None  # with vocab_base: which ordinary word pieces the teacher was trained on
        if cfg.vocab_base:
            self.vocabulary = training_vocabulary(space.embeddings, base_word_embeddings(cfg.vocab_base))[space.ordinary]
        # None: uniform; task_unigram, a diagnostic, reads the train split's own frequencies
        self.token_prior = task_unigram(space, cfg) if cfg.task_unigram else space.draw_weights(cfg.zipf, cfg.zipf_alphabet, self.vocabulary)
        self.class_hist = torch.zeros(self.num_labels, dtype=torch.long)
        self.confidence_sum = 0.0
        self.target_prob_sum = 0.0
        self.n_targeted = 0
        self.n_crafted = 0  # samples asked for (the pseudo-sample budget)
        self.n_pooled = 0  # samples that entered the pool (more, with the guessing trajectory)
        # fresh_text "general": the fresh rows of student batches (and fresh mixture partners) are
        # lines of general English
        self.fresh_bank = self.general_bank if cfg.has_fresh_rows and cfg.fresh_text == "general" else None
        if self.fresh_bank is not None:  # else the class says (general-text reads text whatever its fresh rows)
            self.reads_general_text = True

    @property
    def reads_task_data(self) -> bool:
        """Whether the run reads the task's data: the references, and the task_unigram diagnostic."""
        return self.needs_data or self.cfg.task_unigram

    @cached_property
    def general_bank(self) -> TextBank:
        """The general corpus as word pieces, in the pool's frame width; tokenised once per run,
        whichever parts read it (general-text's samples, general starts, fresh rows)."""
        return TextBank(self.space, general_corpus(), self.cfg.max_len + 2)

    # ---- to implement
    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        raise NotImplementedError

    # ---- shared protocol
    def synthesize(self, student: PreTrainedModel) -> PseudoBatch | None:
        """Craft one batch of ``cfg.batch_size`` fresh samples, record it and add it to the pool."""
        batch = self.craft(self.cfg.batch_size, student)
        self.n_crafted += self.cfg.batch_size
        self._record(batch)
        self.pool.add(batch)
        return batch

    def sample(self, n: int, student: PreTrainedModel | None = None) -> PseudoBatch:
        """A training batch from the pool: uniform, or (``replay_hardness`` k > 1, given the student)
        the ``n`` of ``k * n`` uniform draws that the student currently matches worst."""
        k = self.cfg.replay_hardness
        if k > 1 and student is not None:
            batch = self.hardest(self.pool.sample(k * n).to(self.device), n, student)
        else:
            batch = self.pool.sample(n).to(self.device)
        n_mix = round(self.cfg.mix * n)
        if n_mix > 0:
            batch = self.splice(batch, n_mix)
        n_bridge = min(round(self.cfg.bridge * n), n - n_mix)
        if n_bridge > 0:
            batch = self.bridge_to_vocab(batch, n_mix, n_bridge)
        n_crop = min(round(self.cfg.crop * n), n - n_mix - n_bridge)
        if n_crop > 0:
            batch = self.crop(batch, n_mix + n_bridge, n_crop)
        n_fresh = min(round(self.cfg.fresh_random * n), n - n_mix - n_bridge - n_crop)
        if n_fresh > 0:
            batch = PseudoBatch.concat([batch.index(torch.arange(n - n_fresh, device=self.device)), self.fresh(n_fresh)])
        return batch

    def fresh(self, n: int) -> PseudoBatch:
        """``n`` new random-text samples (or lines of general text, ``fresh_text`` general) without
        teacher logits (the student step labels them), in the pool's frame."""
        if self.fresh_bank is None:
            ids, base, slot, attn = self.random_frame(n, shaped=self.cfg.prior_shapes("fresh"))
            embeds = self.space.compose(self.token_embeddings(ids), base, slot)
        else:
            ids, attn, slot = self.fresh_bank.draw(n, self.generator, self.cfg.max_len + 2)
            embeds, attn, slot = self.token_embeddings(ids), attn.to(self.device), slot.to(self.device)
        return PseudoBatch(embeds, attn, slot, torch.full((n,), -1, dtype=torch.long, device=self.device), None)

    @torch.no_grad()
    def hardest(self, cand: PseudoBatch, n: int, student: PreTrainedModel) -> PseudoBatch:
        """Keep the ``n`` candidates with the largest KL(teacher || student) at the KD temperature."""
        was_training = student.training
        student.eval()
        with self.autocast():
            s_logits = student(inputs_embeds=cand.embeds, attention_mask=cand.attention_mask).logits
        student.train(was_training)
        kl = kd_per_sample(s_logits, cand.teacher_logits, self.cfg.temperature)
        return cand.index(kl.topk(n).indices)

    @torch.no_grad()  # not inference_mode: the student trains on these tensors
    def splice(self, batch: PseudoBatch, n_mix: int) -> PseudoBatch:
        """Replace the first ``n_mix`` samples with mixtures of two pool samples a, b, with a share
        lam ~ U(0, 1) of b per mixture, at the positions where both have pseudo tokens (``mix_kind``:
        each of a's tokens swapped for b's with probability lam, one contiguous run of lam of a's
        tokens swapped, or every token interpolated; b is any pool sample, or with ``mix_partner``
        "other-class" one of another class than a, or "fresh" a new row of random text, so crafted
        evidence sits among plain word pieces). The mixtures keep a's frame and carry no
        teacher logits, so the distiller labels the whole batch in its one teacher pass, and their
        labels fall between the parents' classes."""
        a = batch.index(torch.arange(n_mix, device=batch.embeds.device))
        if self.cfg.mix_partner == "other-class":
            other = self.partners(a)
        elif self.cfg.mix_partner == "fresh":
            other = self.fresh(n_mix)
        else:
            other = self.pool.sample(n_mix).to(self.device)
        lam = torch.rand(n_mix, 1, generator=self.generator).to(self.device)
        both = a.slot & other.slot  # every pool sample has the pool's frame width, so positions line up
        embeds = a.embeds.clone()
        if self.cfg.mix_kind == "interpolate":
            embeds[both] = ((1 - lam[:, :, None]) * a.embeds + lam[:, :, None] * other.embeds)[both]
        else:
            if self.cfg.mix_kind == "span":
                take = self.span(a.slot, lam)
            else:
                take = torch.rand(a.slot.shape, generator=self.generator).to(self.device) < lam
            take &= both
            embeds[take] = other.embeds[take]
        mixed = PseudoBatch(embeds, a.attention_mask, a.slot, torch.full_like(a.targets, -1), None)
        rest = batch.index(torch.arange(n_mix, len(batch), device=batch.embeds.device))
        return PseudoBatch.concat([mixed, rest])

    def partners(self, a: PseudoBatch) -> PseudoBatch:
        """For each sample of ``a`` (pool samples, with their teacher logits), a pool sample that the
        teacher puts in another class (``other_class_draws``)."""
        return self.other_class_draws(a.teacher_logits.argmax(-1))

    def other_class_draws(self, classes: torch.Tensor) -> PseudoBatch:
        """For each class id in ``classes``, the first of ``PARTNER_DRAWS`` pool draws that the teacher
        puts in another class (the first draw where none is)."""
        n, k = len(classes), self.PARTNER_DRAWS
        cand = self.pool.sample(n * k).to(self.device)
        other = (cand.teacher_logits.argmax(-1).view(n, k) != classes[:, None]).float()
        pick = torch.arange(n, device=self.device) * k + other.argmax(1)  # argmax: the first other-class draw, else 0
        return cand.index(pick)

    def span(self, slot: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """(B, T) mask of one contiguous run per row: round(lam * L) of the row's L pseudo tokens,
        starting at a uniformly random place among those where it fits."""
        length = slot.sum(1, keepdim=True)
        run = (lam * length).round().long()
        first = slot.long().argmax(1, keepdim=True)  # pseudo tokens are contiguous, after [CLS]
        offset = (torch.rand(lam.shape, generator=self.generator).to(self.device) * (length - run + 1)).floor().long()
        pos = torch.arange(slot.shape[1], device=slot.device)[None, :]
        start = first + offset
        return (pos >= start) & (pos < start + run)

    @torch.no_grad()  # not inference_mode: the student trains on these tensors
    def bridge_to_vocab(self, batch: PseudoBatch, start: int, n: int) -> PseudoBatch:
        """Move the pseudo tokens of rows ``start .. start + n - 1`` a share ``a ~ U(0, 1)`` (one per
        sample) of the way to their nearest real word pieces, ``z + a (E[nearest(z)] - z)``. Crafted
        tokens end off the vocabulary and real text sits on it; the teacher labels the points in
        between (the rows lose their logits, so the student step's teacher pass labels them)."""
        part = batch.rows(start, n)
        z = part.embeds[part.slot]  # the pseudo tokens only: [CLS], [SEP] and padding stay, unsearched
        share = torch.rand(n, 1, generator=self.generator).to(z).expand(part.slot.shape)[part.slot].unsqueeze(-1)
        embeds = part.embeds.clone()
        embeds[part.slot] = z + share * (self.token_embeddings(self.space.nearest(z)).to(z) - z)
        return batch.with_rows(start, PseudoBatch(embeds, part.attention_mask, part.slot, torch.full_like(part.targets, -1), None))

    @torch.no_grad()  # not inference_mode: the student trains on these tensors
    def crop(self, batch: PseudoBatch, start: int, n: int) -> PseudoBatch:
        """Cut rows ``start .. start + n - 1`` to one contiguous run of their ``L`` pseudo tokens, of a
        length uniform in ``[ceil(L / 2), L]`` at a uniformly random place, moved to the front of a
        fresh frame ``[CLS] run [SEP] pad``. Crafted tokens were placed by the guessing steps at
        fixed positions in samples of fixed lengths; the teacher labels them again at other ones
        (the rows lose their logits, so the student step's teacher pass labels them)."""
        part = batch.rows(start, n)
        dev = part.embeds.device
        width = part.embeds.shape[1] - 2  # the pool's frame: [CLS] + width slots + [SEP]
        length = part.slot.sum(1).cpu()
        lo = (length + 1) // 2
        keep = lo + (torch.rand(n, generator=self.generator) * (length - lo + 1)).floor().long()
        offset = (torch.rand(n, generator=self.generator) * (length - keep + 1)).floor().long()
        first = part.slot.long().argmax(1).cpu()  # pseudo tokens are contiguous, after [CLS]
        src = (first + offset)[:, None] + torch.arange(width)[None, :]
        src = src.clamp(max=part.embeds.shape[1] - 1).to(dev)  # past the run: padding, which the new frame drops
        z = part.embeds.gather(1, src[..., None].expand(-1, -1, part.embeds.shape[-1]))
        base, slot, attn = self.space.frame(keep, width)
        embeds = self.space.compose(z, base.to(z), slot.to(dev))
        return batch.with_rows(start, PseudoBatch(embeds, attn.to(part.attention_mask), slot.to(dev), torch.full_like(part.targets, -1), None))

    def student_loss(self, student: PreTrainedModel, batch: PseudoBatch) -> torch.Tensor | None:
        """Extra loss for the student (e.g. a self-supervised task); None when there is none."""
        return None

    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained together with the student (e.g. a self-supervised head)."""
        return []

    # ---- checkpointing: everything that changes as the run goes (the random generator is the run's)
    COUNTERS = ("confidence_sum", "target_prob_sum", "n_targeted", "n_crafted", "n_pooled")

    def state_dict(self) -> dict:
        """What a resumed run needs; subclasses with more moving parts extend it."""
        return {
            "pool": self.pool.state_dict(),
            "class_hist": self.class_hist.clone(),
            "counters": {k: getattr(self, k) for k in self.COUNTERS},
            "modules": {name: m.state_dict() for name, m in self.modules().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
        self.class_hist = state["class_hist"].clone()
        for k, v in state["counters"].items():
            setattr(self, k, v)
        for name, m in self.modules().items():
            m.load_state_dict(state["modules"][name])

    def modules(self) -> dict:
        """Named objects with their own ``state_dict`` (heads, generators, their optimisers)."""
        return {}

    def stats(self) -> dict:
        n = max(self.n_pooled, 1)
        id2label = self.teacher.config.id2label
        stats = {
            "pseudo_samples": self.n_crafted,
            "pooled_samples": self.n_pooled,
            "teacher_class_histogram": {id2label[i]: int(c) for i, c in enumerate(self.class_hist.tolist())},
            "teacher_mean_max_prob": self.confidence_sum / n,
            "teacher_mean_target_prob": (self.target_prob_sum / self.n_targeted) if self.n_targeted else None,
        }
        if self.vocabulary is not None:
            stats["vocabulary_word_pieces"] = int(self.vocabulary.sum())
        # every run that reads general text (general-text, general starts, fresh rows) reads this bank
        return {**stats, "general_texts": len(self.general_bank)} if self.reads_general_text else stats

    # ---- helpers for subclasses
    def random_frame(self, n: int, shaped: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random lengths and random ordinary token ids (uniform, or Zipf over the estimated frequency
        ranks when ``cfg.zipf`` > 0; with ``vocab_base`` only the teacher's training vocabulary;
        ``shaped`` False: uniform whatever those say); returns (ids, base, slot, attn) on device."""
        cfg = self.cfg
        lengths = torch.randint(cfg.min_len, cfg.max_len + 1, (n,), generator=self.generator)
        base, slot, attn = self.space.frame(lengths, cfg.max_len)
        ids = self.random_ids(n, shaped)
        if cfg.topic > 0:
            ids = self.topical(ids)
        return ids.to(self.device), base.to(self.device), slot.to(self.device), attn.to(self.device)

    def random_ids(self, n: int, shaped: bool = True) -> torch.Tensor:
        """(n, max_len) random ordinary word-piece ids on the CPU: uniform, or (``shaped``) drawn
        with the run's prior (``zipf``, ``vocab_base``) when it has one."""
        ordinary, width = self.space.ordinary, self.cfg.max_len
        if self.token_prior is None or not shaped:
            pick = torch.randint(len(ordinary), (n, width), generator=self.generator)
        else:
            pick = torch.multinomial(self.token_prior, n * width, replacement=True, generator=self.generator).view(n, width)
        return ordinary[pick]

    def topical(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` (n, L) with each word piece, with probability ``topic``, replaced by a uniform
        draw from the ``TOPIC_NEIGHBOURS`` nearest word pieces (cosine, in the embedding matrix) to
        one random anchor per row: "city" brings "town", "mayor", "downtown". Independent random
        word pieces mix unrelated subjects in every sample; real text keeps to one."""
        ordinary, unit = self.space.ordinary, self.unit_embeddings
        k = min(TOPIC_NEIGHBOURS, len(ordinary))
        anchors = torch.randint(len(ordinary), (len(ids),), generator=self.generator)
        near = (unit[anchors] @ unit.T).topk(k, dim=1).indices  # (n, k) rows of ordinary
        return self.swap_in(ids, ordinary[near], self.cfg.topic)

    def swap_in(self, ids: torch.Tensor, choices: torch.Tensor, share: float) -> torch.Tensor:
        """``ids`` (n, L) with each entry, with probability ``share``, replaced by a uniform draw from
        its row of ``choices`` (n, k): how the word-piece priors (``topic``, as-dfd's ``lexicon``)
        bring their words into random text."""
        swap = torch.rand(ids.shape, generator=self.generator) < share
        pick = torch.randint(choices.shape[1], ids.shape, generator=self.generator)
        return torch.where(swap.to(ids.device), choices.gather(1, pick).to(ids.device), ids)

    @cached_property
    def unit_embeddings(self) -> torch.Tensor:
        """The ordinary word pieces' vectors scaled to unit length (rows as in ``space.ordinary``)."""
        return F.normalize(self.space.embeddings[self.space.ordinary].float(), dim=-1)

    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """Word-piece vectors of ``ids`` (on any device) on device: the one place where ids meet the
        embedding table, which stays on the CPU."""
        table = self.space.embeddings
        return table[ids.to(table.device)].to(self.device)

    def autocast(self):
        """The run's mixed-precision context for forward passes (a no-op at fp32)."""
        return autocast(self.device, self.cfg.precision)

    def teacher_logits(self, embeds: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.teacher(inputs_embeds=embeds, attention_mask=attn).logits.float()

    def _record(self, batch: PseudoBatch) -> None:
        probs = F.softmax(batch.teacher_logits.float(), dim=-1).cpu()
        self.class_hist += torch.bincount(probs.argmax(-1), minlength=self.num_labels)
        self.confidence_sum += float(probs.max(-1).values.sum())
        targeted = batch.targets.cpu() >= 0
        if targeted.any():
            t = batch.targets.cpu()[targeted]
            self.target_prob_sum += float(probs[targeted].gather(1, t[:, None]).sum())
            self.n_targeted += int(targeted.sum())
        self.n_pooled += len(batch)
