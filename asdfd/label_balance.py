"""The class balance of a teacher's training data, read from its classifier's bias.

The gradient of the cross-entropy with respect to the bias of class ``c`` is the batch mean of
``p_c - y_c``: fine-tuning raises the bias while the class is more frequent in the batches than
the model predicts and lowers it while the class is rarer. The bias starts at zero, so after
fine-tuning its entries tend to be ordered as the classes' frequencies (the benchmark's teachers
of trec, mr and bbc: their train splits' order, but for two classes of trec 0.00002 apart).
Their size depends on how long and how fast the teacher was trained; ``BIAS_TEMPERATURE`` is the
scale at which the benchmark's teachers' biases give their train splits' frequencies
(docs/RESULTS.md, "a class balance for the guessing targets").
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from .errors import UserError

BIAS_TEMPERATURE = 0.005


def classifier_bias(teacher: PreTrainedModel) -> torch.Tensor | None:
    """The bias of the teacher's output layer (one entry per class), or None if it has none."""
    head = getattr(teacher, "classifier", None)
    layer = getattr(head, "out_proj", head)  # RoBERTa and MPNet heads end in out_proj
    bias = getattr(layer, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.numel() == teacher.config.num_labels:
        return bias.detach().float().cpu()
    return None


def prior_from_bias(teacher: PreTrainedModel, temperature: float = BIAS_TEMPERATURE) -> torch.Tensor:
    """Estimated class frequencies ``softmax(b / temperature)`` of the teacher's classifier bias."""
    bias = classifier_bias(teacher)
    if bias is None:
        raise UserError("class_prior bias reads the bias of the teacher's classification head, and it has none; pass uniform or the frequencies")
    return (bias / temperature).softmax(-1)
