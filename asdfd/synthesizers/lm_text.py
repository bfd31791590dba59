"""``lm-text``: pseudo text written by a small general-purpose language model, labelled by the teacher.

The packaged SmolLM2-135M-Instruct (``asdfd.language_model``) is asked, for a balanced set of the
teacher's classes, to "Write one {genre} about {label name}." (``id2label``); a label without words
(``LABEL_0``, ``3``) gives "Write one {genre}." The genre is the user's one-line ``task_hint``
("movie review") or, without one, drawn from a fixed list of everyday genres. The texts go through
the teacher's own tokenizer, cut to ``max_len`` word pieces like every pseudo sample (the LM writes
at most ``max_len`` tokens of its own and stops at the end of the first line, all that is kept), and the
teacher labels them with its soft outputs: the prompt's class only steers what gets written.
Student batches are drawn from the pool alike from each of the teacher's classes, and half of each
is token-level mixtures of two pooled texts, as AS-DFD's are. Nothing of the task is read but the
teacher and its label names (and the hint, when given).
"""

from __future__ import annotations

import re

import torch
from transformers import PreTrainedModel

from .. import language_model
from ..errors import UserError
from .base import PseudoBatch, Synthesizer
from .text_bank import TextBank

GENRES = ("question", "news headline", "short review", "sentence", "short comment", "statement")
WORDLESS = re.compile(r"(label|class)?[\s_-]*\d+", re.IGNORECASE)  # LABEL_0, class 3, 7


def label_names(id2label: dict) -> list[str | None]:
    """Each class's name as words for a prompt, or None where the label carries none."""
    names = []
    for i in range(len(id2label)):
        name = str(id2label.get(i, id2label.get(str(i), ""))).replace("_", " ").strip()
        names.append(None if not name or WORDLESS.fullmatch(name) else name)
    return names


def clean(text: str) -> str:
    """The first line of a written text, without the quotes small chat models like to add."""
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    return line.strip().strip("\"'“”").strip()


class LMText(Synthesizer):
    """Texts written by a small general-purpose language model from the teacher's label names, labelled by the teacher."""

    name = "lm-text"
    # the LM's texts lean to a few of the teacher's classes (trec: ENTY 1501 of 3072, NUM 107): drawn alike from
    # each class, and half of each student batch mixtures of two of them (chosen on the validation splits, docs/RESULTS.md)
    balanced_draws = True
    default_mix = 0.5
    # the LM writes this many texts per call (whole crafted batches' worth) and hands them out a batch at a time: a text
    # costs 0.53x at bf16 and 0.73x at fp32 of what it does written 32 per call (two CPU cores, docs/PERFORMANCE.md)
    WRITE_AHEAD = 128
    # the report's first texts, and texts written but not yet handed out, survive a resume
    COUNTERS = (*Synthesizer.COUNTERS, "examples", "unserved")

    @classmethod
    def check(cls, cfg) -> None:
        if "\n" in cfg.task_hint or len(cfg.task_hint) > 100:
            raise UserError("task_hint is one short line about what the task's texts are (e.g. 'movie reviews'); shorten it")

    def __init__(self, teacher, space, cfg, device, generator, **kw):
        super().__init__(teacher, space, cfg, device, generator, **kw)
        self.writer = language_model.TextWriter(language_model.packaged_lm(), device, cfg.precision)
        self.names = label_names(teacher.config.id2label)
        self.examples: list[str] = []
        self.unserved: list[tuple[str, int]] = []  # (text, the class its prompt named), written ahead

    def instructions(self, targets: torch.Tensor) -> list[str]:
        genres = torch.randint(len(GENRES), (len(targets),), generator=self.generator).tolist()
        out = []
        for target, g in zip(targets.tolist(), genres, strict=True):
            genre, name = self.cfg.task_hint or GENRES[g], self.names[target]
            out.append(f"Write one {genre} about {name}." if name else f"Write one {genre}.")
        return out

    def write(self, batches: int, n: int) -> list[tuple[str, int]]:
        """``batches`` batches' worth of texts in one call of the LM, each batch aimed alike at every class."""
        targets = torch.cat([torch.randperm(n, generator=self.generator) % self.num_labels for _ in range(batches)])
        texts = [clean(t) for t in self.writer.write(self.instructions(targets), self.cfg.max_len)]
        return list(zip(texts, targets.tolist(), strict=True))

    def batches_per_call(self, n: int) -> int:
        """How many crafted batches of ``n`` texts the LM writes in one call."""
        return max(1, self.WRITE_AHEAD // n)

    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        if len(self.unserved) < n:
            self.unserved += self.write(self.batches_per_call(n), n)
        served, self.unserved = self.unserved[:n], self.unserved[n:]
        texts, targets = [text for text, _ in served], torch.tensor([target for _, target in served])
        if len(self.examples) < 8:
            self.examples += texts[: 8 - len(self.examples)]
        ids, attn, slot = TextBank(self.space, texts, self.frame_width).frame(torch.arange(n), self.frame_width)
        with torch.inference_mode():
            return self.labelled(self.token_embeddings(ids), attn.to(self.device), slot.to(self.device), targets.to(self.device))

    def stats(self) -> dict:
        prompted = {str(i): name for i, name in enumerate(self.names)}
        lm = {**self.writer.card, "label_names_in_prompts": prompted, "task_hint": self.cfg.task_hint or None, "example_texts": self.examples}
        return {**super().stats(), "language_model": lm}
