"""What the student minimises on one batch, and the optimiser step that applies it.

``StudentObjective``: one teacher pass labels the batch (logits, and hidden states when
hidden-state KD is on; samples that carry their logits skip the pass when logits are all it
needs), then ``L_kd + lambda_hidden * L_hid + L_synth`` (the synthesizer's own term, AS-DFD's
self-supervised loss). The ``finetune`` reference learns gold labels instead.

``GuardedStep``: the AdamW step, skipped (and counted) when the loss or the gradient is not
finite, with the gradients averaged over the ranks of a data-parallel run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from . import bucketing
from .config import DistillConfig
from .errors import UserError
from .losses import hidden_loss, kd_loss
from .parallel import Ranks
from .runtime import autocast
from .synthesizers import PseudoBatch, Synthesizer

MAX_BAD_STEPS = 20  # consecutive non-finite student steps that stop a run
HEAD_LR = 1e-3  # a synthesizer's fresh head learns faster than the pretrained student


class StudentObjective:
    def __init__(
        self, teacher: PreTrainedModel, student: PreTrainedModel, synth: Synthesizer, layers: list[int], cfg: DistillConfig, device, adapters=None
    ):
        """``adapters`` project the student's hidden states to the teacher's width (asdfd.student.HiddenAdapters) for
        a student that is not a copy of the teacher; ``layers`` is the teacher layer each student layer learns from."""
        self.teacher, self.student, self.synth, self.layers, self.cfg, self.device = teacher, student, synth, layers, cfg, device
        self.adapters = adapters

    def __call__(self, batch: PseudoBatch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.synth.hard_labels:
            return self.gold(batch)
        cfg = self.cfg
        use_hidden = cfg.lambda_hidden > 0
        t_logits, t_hidden = self.teacher_outputs(batch, use_hidden)
        with autocast(self.device, cfg.precision):
            s_out = bucketing.forward(self.student, batch.embeds, batch.attention_mask, output_hidden_states=use_hidden)
            loss = kd_loss(s_out.logits, t_logits, cfg.temperature)
            logs = {"kd": loss.item()}
            if use_hidden:
                s_hidden = s_out.hidden_states if self.adapters is None else self.adapters(s_out.hidden_states)
                l_hid = hidden_loss(s_hidden, t_hidden, self.layers, batch.attention_mask)
                loss = loss + cfg.lambda_hidden * l_hid
                logs["hidden"] = l_hid.item()
            l_syn = self.synth.student_loss(self.student, batch)
            if l_syn is not None:
                loss = loss + l_syn
                logs["ss"] = l_syn.item()
        return loss, logs

    def teacher_outputs(self, batch: PseudoBatch, hidden: bool) -> tuple[torch.Tensor, Sequence | Mapping | None]:
        """The teacher's logits on a student batch, with its hidden states (indexed like the teacher's
        ``hidden_states``) when ``hidden``: one teacher pass at most, over the samples that do not carry
        what the step needs (crafted samples carry their logits and kept states; their mixtures do not)."""
        logits, kept = batch.teacher_logits, batch.teacher_hidden
        if logits is None or (hidden and kept is None):  # nothing usable carried: one pass over every row
            out = self.teacher_pass(batch, hidden)
            return out.logits.float(), (out.hidden_states if hidden else None)
        todo = logits.isnan().any(-1).nonzero().squeeze(1)  # the rows that carry nothing (NaN rows)
        if len(todo):
            out = self.teacher_pass(batch.index(todo), hidden)
            logits = logits.index_copy(0, todo, out.logits.float())
            if hidden:
                kept = kept.index_copy(0, todo, torch.stack([out.hidden_states[i] for i in self.synth.keep_hidden], 1).to(kept.dtype))
        # kept states are stacked in the order of Synthesizer.keep_hidden, the indices that crafted them
        return logits, ({i: kept[:, j] for j, i in enumerate(self.synth.keep_hidden)} if hidden else None)

    def teacher_pass(self, batch: PseudoBatch, hidden: bool):
        # no_grad, not inference_mode: these tensors are targets in the student's autograd graph
        with torch.no_grad(), autocast(self.device, self.cfg.precision):
            return bucketing.forward(self.teacher, batch.embeds, batch.attention_mask, output_hidden_states=hidden)

    def gold(self, batch: PseudoBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The ``finetune`` reference: cross-entropy on gold labels, no teacher."""
        with autocast(self.device, self.cfg.precision):
            logits = self.student(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
        loss = F.cross_entropy(logits.float(), batch.targets)
        return loss, {"ce": loss.item()}


def build_optimizer(student: PreTrainedModel, synth: Synthesizer, cfg: DistillConfig, adapters: list | None = None):
    """AdamW (no decay on biases and LayerNorms; the synthesizer's head and the hidden-state ``adapters`` at
    ``HEAD_LR``) with linear warm-up and decay."""
    decay, no_decay = [], []
    for name, p in student.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if synth.parameters():
        groups.append({"params": synth.parameters(), "weight_decay": 0.0, "lr": HEAD_LR})
    if adapters:
        groups.append({"params": adapters, "weight_decay": 0.0, "lr": HEAD_LR})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    return opt, get_linear_schedule_with_warmup(opt, int(cfg.warmup * cfg.student_steps), cfg.student_steps)


class GuardedStep:
    """One optimiser step per call, or none when the loss or the gradient is not finite: the step is
    skipped and counted, and ``MAX_BAD_STEPS`` skipped in a row stop the run."""

    def __init__(self, opt, sched, ranks: Ranks, grad_clip: float):
        self.opt, self.sched, self.ranks, self.grad_clip = opt, sched, ranks, grad_clip
        self.skipped = self.bad_in_a_row = 0

    def __call__(self, loss: torch.Tensor) -> None:
        opt = self.opt
        opt.zero_grad(set_to_none=True)
        finite = self.ranks.all(bool(torch.isfinite(loss)))  # every rank steps, or none
        if finite:
            loss.backward()
            params = [p for g in opt.param_groups for p in g["params"]]
            self.ranks.average_gradients(params)
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            finite = bool(torch.isfinite(norm))  # averaged gradients: the same on every rank
        if not finite:
            opt.zero_grad(set_to_none=True)
            self.skipped += 1
            self.bad_in_a_row += 1
            tqdm.write(f"warning: non-finite {'loss' if not torch.isfinite(loss) else 'gradient'}; student step skipped")
            if self.bad_in_a_row >= MAX_BAD_STEPS:
                raise UserError(
                    f"training diverged: {self.bad_in_a_row} student steps in a row had a non-finite loss or gradient; "
                    "nothing was saved; lower --lr or pass --precision fp32"
                )
            return
        self.bad_in_a_row = 0
        opt.step()
        self.sched.step()

    def state_dict(self) -> dict:
        return {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "skipped_steps": self.skipped,
            "bad_in_a_row": self.bad_in_a_row,
        }

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.skipped, self.bad_in_a_row = state["skipped_steps"], state["bad_in_a_row"]
