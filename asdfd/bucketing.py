"""One forward pass over a padded batch as a few passes over samples of similar length.

Pseudo samples are 8 to 24 tokens long in frames of 26 positions, so about a third of what a
plain pass computes is padding. Sorted by length and cut into ``BUCKETS`` groups, each group
trimmed to its own longest sample, a large batch costs less: the teacher's pass over the 128 start
candidates of a crafted batch takes 0.76-0.87x the time on 2 AVX2 cores. A batch of 32 gains
nothing (0.97-1.05x: smaller matrix products use the cores less well), so groups have at least
``MIN_ROWS`` rows (docs/PERFORMANCE.md). The outputs are the plain pass's, up to float rounding:
padding is masked out of attention, so a sample's states do not depend on how much padding
follows it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BUCKETS = 3  # chosen by measurement on 2-core AVX2 (python -m bench --speed --sections buckets)
MIN_ROWS = 32  # smaller groups make the matrix products less efficient than the padding they save


def length_groups(lengths: torch.Tensor, buckets: int = BUCKETS, min_rows: int = MIN_ROWS) -> list[torch.Tensor]:
    """Row indices in up to ``buckets`` groups of at least ``min_rows`` rows of similar ``lengths``
    (shortest first; one group of every row, in order, where grouping would not pay: small
    batches, lengths nearly equal)."""
    groups = min(buckets, len(lengths) // min_rows)
    if groups <= 1 or int(lengths.max()) - int(lengths.min()) < 2:
        return [torch.arange(len(lengths), device=lengths.device)]
    return list(lengths.argsort(stable=True).tensor_split(groups))


def forward(
    model, embeds: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False, buckets: int = BUCKETS, min_rows: int = MIN_ROWS
):
    """``model(inputs_embeds=embeds, attention_mask=attention_mask)`` run by length groups.

    Returns the model's own output type with every field in the batch's own order; per-token fields
    (``last_hidden_state``, ``hidden_states``) are padded back to the full width with zeros where a
    group was trimmed. Padding must follow the tokens (right padding), as in every frame and
    tokenizer batch here; differentiable in ``embeds``. On a GPU it is the plain pass."""
    width = attention_mask.shape[1]
    extent = attention_mask.flip(1).cumsum(1).clamp(max=1).sum(1)  # last attended position + 1
    groups = length_groups(extent, buckets if embeds.device.type == "cpu" else 1, min_rows)  # a GPU gains nothing from smaller launches
    if len(groups) == 1:
        return model(inputs_embeds=embeds, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
    outs = []
    for idx in groups:
        w = int(extent[idx].max())
        outs.append(model(inputs_embeds=embeds[idx, :w], attention_mask=attention_mask[idx, :w], output_hidden_states=output_hidden_states))
    back = torch.cat(groups).argsort()

    def joined(parts: list[torch.Tensor]) -> torch.Tensor:
        if parts[0].dim() >= 3:  # (rows, tokens, ...): back to the full width
            parts = [F.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1])) for p in parts]
        return torch.cat(parts)[back]

    fields = {}
    for key in outs[0].keys():
        parts = [o[key] for o in outs]
        fields[key] = tuple(joined(list(layer)) for layer in zip(*parts, strict=True)) if isinstance(parts[0], tuple) else joined(parts)
    return type(outs[0])(**fields)
