"""What every synthesizer hands the distiller: a batch of pseudo samples in embedding space."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class PseudoBatch:
    """Pseudo samples in embedding space, framed as ``[CLS] z_1..z_L [SEP] pad..``."""

    embeds: torch.Tensor  # (B, T, d) what goes into inputs_embeds
    attention_mask: torch.Tensor  # (B, T)
    slot: torch.Tensor  # (B, T) bool: positions holding pseudo tokens (not CLS/SEP/pad)
    targets: torch.Tensor  # (B,) class the sample was crafted toward (gold label for real text), -1 if none
    # (B, C) teacher logits on these samples; None where nobody has run the teacher on them yet
    # (mixtures, real text), NaN rows where a batch joins such samples to labelled ones: the
    # distiller then runs the teacher once on those, together with the hidden states
    teacher_logits: torch.Tensor | None
    # (B, K, T, d) the teacher's hidden states at the K layers the student learns from
    # (``Synthesizer.keep_hidden``), kept from the labelling pass; None, or NaN rows, likewise
    teacher_hidden: torch.Tensor | None = None

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

    @staticmethod
    def concat(batches: list[PseudoBatch]) -> PseudoBatch:
        """One batch of all rows; its teacher outputs are None where no part has them, NaN rows for the
        parts that lack them where others have them."""

        def cat(name: str) -> torch.Tensor | None:
            parts = [getattr(b, name) for b in batches]
            known = next((p for p in parts if p is not None), None)
            if known is None:
                return None
            nan = float("nan")
            return torch.cat([p if p is not None else known.new_full((len(b), *known.shape[1:]), nan) for p, b in zip(parts, batches, strict=True)])

        return PseudoBatch(**{f.name: cat(f.name) for f in fields(PseudoBatch)})
