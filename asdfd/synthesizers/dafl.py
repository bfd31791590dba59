"""``modified-dafl``: Data-Free Learning (Chen et al., 2019) moved from pixels to token embeddings.

A generator of pseudo-token embeddings is trained through the teacher alone with DAFL's three terms:
one-hot (teacher confident in its own argmax), activation (large teacher features; here the final
[CLS] hidden state) and information entropy (classes balanced over the batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .generator import GeneratorSynthesizer

ALPHA_ACTIVATION = 0.1  # DAFL's weights
BETA_ENTROPY = 5.0


class ModifiedDAFL(GeneratorSynthesizer):
    """Generator trained on the teacher's one-hot, activation and class-balance terms (baseline)."""

    name = "modified-dafl"

    def generator_loss(self, x, attn, student) -> torch.Tensor:
        out = self.teacher(inputs_embeds=x, attention_mask=attn, output_hidden_states=True)
        logits = out.logits
        one_hot = F.cross_entropy(logits, logits.argmax(-1))
        activation = -out.hidden_states[-1][:, 0].abs().mean()
        mean_p = logits.softmax(-1).mean(0)
        neg_entropy = (mean_p * mean_p.clamp_min(1e-8).log()).sum()
        return one_hot + ALPHA_ACTIVATION * activation + BETA_ENTROPY * neg_entropy
