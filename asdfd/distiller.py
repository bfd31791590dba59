"""The distillation loop shared by every method: it never reads real data (only the ``real-kd``
and ``finetune`` reference synthesizers do, by definition).

Per student step: if the schedule says so, the synthesizer crafts a fresh batch (adapted to the
student as it is now) into its replay pool; a batch is drawn from the pool; the frozen teacher
labels it in one pass (logits, and hidden states when hidden-state KD is on; samples that already
carry their logits skip the pass when logits are all it needs); the student and any
synthesizer-side head take one AdamW step on ``L_kd + lambda_hidden * L_hid + lambda_attn * L_attn
+ lambda_jac * L_jac + L_synth``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from . import parallel, runtime, synthesizers
from .card import CARD_NAME, model_card, weights_sha256
from .checkpoint import CHECKPOINT, Interrupted, load_checkpoint, partial_dir, rng_state, save_checkpoint, set_rng_state
from .config import DistillConfig, save_config
from .errors import UserError
from .losses import attention_loss, hidden_loss, input_gradient_loss, kd_loss
from .models import TokenSpace, build_student, eager_attention, embedding_block, load_teacher, load_tokenizer, resolve_student_layers
from .runtime import atomic_dir, autocast, check_output_dir, progress, resolve_device, seed_everything, set_threads, stop_on_sigint

REPORT_NAME = "distill_report.json"
MAX_BAD_STEPS = 20  # consecutive non-finite student steps that stop a run


@dataclass
class DistillResult:
    student: PreTrainedModel
    tokenizer: object
    report: dict = field(default_factory=dict)
    log_dir: Path | None = None  # TensorBoard logs written during the run, moved into the output by save

    def save(self, output: str | Path, overwrite: bool = False) -> Path:
        """Write the student (safetensors), tokenizer and report; atomically replaces ``output``."""
        out = check_output_dir(output, overwrite)
        with atomic_dir(out) as tmp:
            self.student.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / REPORT_NAME).write_text(json.dumps(self.report, indent=2) + "\n")
            if "config" in self.report:
                save_config(self.report["config"], tmp)
            (tmp / CARD_NAME).write_text(model_card(self.report, out.resolve().name))
            if self.log_dir is not None and self.log_dir.is_dir():
                shutil.move(self.log_dir, tmp / "tensorboard")
                self.log_dir = out / "tensorboard"
        return out


class Distiller:
    def __init__(self, teacher_dir: str | Path, cfg: DistillConfig, teacher: PreTrainedModel | None = None, tokenizer=None):
        """``teacher`` and ``tokenizer``, when the caller has them loaded from ``teacher_dir``
        already (demo, bench), are used as they are instead of being read again."""
        self.cfg = cfg.validate()
        set_threads()
        device = resolve_device(cfg.device)
        self.ranks = parallel.Ranks.current(cpu=device.type == "cpu")
        if cfg.num_processes != self.ranks.count:  # a run in one process must not claim to be several
            raise UserError(f"num_processes={cfg.num_processes} needs a launcher: run `asdfd distill --num-processes {cfg.num_processes} ...`")
        self.device = self.ranks.device or device
        # what this process runs: the whole config, or one rank's share of it (own seed, 1/N budgets)
        self.local = parallel.local_config(cfg, self.ranks)
        self.generator = seed_everything(self.local.seed)
        if not self.ranks.main:
            runtime.QUIET = True
        t0 = time.perf_counter()
        self.teacher_dir = str(teacher_dir)
        self.teacher_sha256 = weights_sha256(teacher_dir)
        if teacher is None:
            teacher = load_teacher(teacher_dir, cfg.allow_pickle)
        self.teacher = teacher.eval().requires_grad_(False).to(self.device)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(teacher_dir)
        self.space = TokenSpace.from_teacher(self.teacher, self.tokenizer)
        if cfg.max_len + 2 > self.space.max_positions:
            raise UserError(
                f"max_len {cfg.max_len} + 2 special tokens exceeds the teacher's {self.space.max_positions} positions; "
                f"pass --max-len <= {self.space.max_positions - 2}"
            )
        n_teacher = int(self.teacher.config.num_hidden_layers)
        self.layers = resolve_student_layers(n_teacher, cfg.student_layers)
        frozen = cfg.embedding_lr_scale == 0
        self.student = build_student(self.teacher, self.layers, freeze_embeddings=frozen, dropout=cfg.student_dropout).to(self.device)
        self.synth = synthesizers.build(cfg.method, self.teacher, self.space, self.local, self.device, self.generator)
        self.ranks.broadcast([*self.student.parameters(), *self.synth.parameters()])  # one starting point
        # the moving average of the student's weights (cfg.ema > 0); buffers are constants here
        self.average = AveragedModel(self.student, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema)) if cfg.ema > 0 else None
        self.times = {"load": time.perf_counter() - t0, "synthesis": 0.0, "student": 0.0, "heldout": 0.0}
        self.skipped_steps = self.bad_in_a_row = 0

    def _optimizer(self) -> tuple[torch.optim.Optimizer, object]:
        cfg = self.cfg
        # the embedding block gets its own learning rate when it is neither frozen nor at lr
        scaled = {id(p) for p in embedding_block(self.student).parameters()} if cfg.embedding_lr_scale not in (0, 1) else set()
        decay, no_decay, scaled_decay, scaled_no_decay = [], [], [], []
        for name, p in self.student.named_parameters():
            if p.requires_grad:
                no_wd = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
                if id(p) in scaled:
                    (scaled_no_decay if no_wd else scaled_decay).append(p)
                else:
                    (no_decay if no_wd else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if scaled:
            emb_lr = cfg.lr * cfg.embedding_lr_scale
            groups += [
                {"params": scaled_decay, "weight_decay": cfg.weight_decay, "lr": emb_lr},
                {"params": scaled_no_decay, "weight_decay": 0.0, "lr": emb_lr},
            ]
        extra = self.synth.parameters()
        if extra:  # a fresh head learns faster than the pretrained student
            groups.append({"params": extra, "weight_decay": 0.0, "lr": 1e-3})
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup * cfg.student_steps), cfg.student_steps)
        return opt, sched

    def teacher_outputs(self, batch, hidden: bool, attentions: bool = False) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """The teacher's logits on a student batch, with its hidden states when ``hidden`` and its
        attention distributions when ``attentions``: one teacher pass at most, none when the
        logits are all the step needs and the batch has them."""
        if not hidden and not attentions and batch.teacher_logits is not None:
            return batch.teacher_logits, None, None
        # no_grad, not inference_mode: these tensors are targets in the student's autograd graph
        with torch.no_grad(), autocast(self.device, self.cfg.precision):
            out = self.teacher(
                inputs_embeds=batch.embeds, attention_mask=batch.attention_mask, output_hidden_states=hidden, output_attentions=attentions
            )
        return out.logits.float(), (out.hidden_states if hidden else None), (out.attentions if attentions else None)

    def _student_step(self, batch, opt, sched) -> dict[str, float]:
        if self.synth.hard_labels:
            return self._gold_step(batch, opt, sched)
        cfg = self.cfg
        use_hidden, use_attn, use_jac = cfg.lambda_hidden > 0, cfg.lambda_attn > 0, cfg.lambda_jac > 0
        x = batch.embeds.detach().requires_grad_(True) if use_jac else batch.embeds
        # attention weights come out of the eager attention code only (SDPA does not return them),
        # and only it can be differentiated twice (input-gradient matching)
        with eager_attention(self.teacher, self.student, when=use_attn or use_jac):
            t_logits, t_hidden, t_attn = self.teacher_outputs(batch, use_hidden, use_attn)
            with autocast(self.device, cfg.precision):
                s_out = self.student(
                    inputs_embeds=x, attention_mask=batch.attention_mask, output_hidden_states=use_hidden, output_attentions=use_attn
                )
            l_jac = self._input_gradient_loss(x, s_out.logits, batch.attention_mask) if use_jac else None
        with autocast(self.device, cfg.precision):
            l_kd = kd_loss(s_out.logits, t_logits, cfg.temperature, cfg.kd_objective)
            loss = l_kd
            logs = {"kd": l_kd.item()}
            if use_hidden:
                l_hid = hidden_loss(s_out.hidden_states, t_hidden, self.layers, batch.attention_mask)
                loss = loss + cfg.lambda_hidden * l_hid
                logs["hidden"] = l_hid.item()
            if use_attn:
                l_attn = attention_loss(s_out.attentions, t_attn, self.layers, batch.attention_mask)
                loss = loss + cfg.lambda_attn * l_attn
                logs["attn"] = l_attn.item()
            if l_jac is not None:
                loss = loss + cfg.lambda_jac * l_jac
                logs["jac"] = l_jac.item()
            l_syn = self.synth.student_loss(self.student, batch)
            if l_syn is not None:
                loss = loss + l_syn
                logs["ss"] = l_syn.item()
        self._update(loss, opt, sched)
        return logs

    def _input_gradient_loss(self, x: torch.Tensor, s_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Input-gradient matching: for a random direction ``r`` per sample, the gradients of
        ``r . log_softmax(logits)`` with respect to the input embeddings, student against teacher.
        KD matches the two functions at the samples; this also matches how they change around
        them, the directions the guessing steps follow. The student's gradient keeps its graph."""
        r = torch.randn(s_logits.shape, generator=self.generator).to(x.device)
        xt = x.detach().requires_grad_(True)
        with torch.enable_grad(), autocast(self.device, self.cfg.precision):
            t_logits = self.teacher(inputs_embeds=xt, attention_mask=attention_mask).logits
        (g_t,) = torch.autograd.grad((t_logits.float().log_softmax(-1) * r).sum(), xt)
        (g_s,) = torch.autograd.grad((s_logits.float().log_softmax(-1) * r).sum(), x, create_graph=True)
        return input_gradient_loss(g_s, g_t, attention_mask)

    def _gold_step(self, batch, opt, sched) -> dict[str, float]:
        """The ``finetune`` reference: cross-entropy on gold labels, no teacher."""
        with autocast(self.device, self.cfg.precision):
            logits = self.student(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), batch.targets)
        self._update(loss, opt, sched)
        return {"ce": loss.item()}

    def _update(self, loss: torch.Tensor, opt, sched) -> None:
        """One optimiser step, or none when the loss or the gradient is not finite: the step is
        skipped and counted, and ``MAX_BAD_STEPS`` skipped in a row stop the run."""
        opt.zero_grad(set_to_none=True)
        finite = self.ranks.all(bool(torch.isfinite(loss)))  # every rank steps, or none
        if finite:
            loss.backward()
            params = [p for g in opt.param_groups for p in g["params"]]
            self.ranks.average_gradients(params)
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            finite = bool(torch.isfinite(norm))  # averaged gradients: the same on every rank
        if not finite:
            opt.zero_grad(set_to_none=True)
            self.skipped_steps += 1
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
        sched.step()
        if self.average is not None:
            self.average.update_parameters(self.student)

    @property
    def result_student(self) -> PreTrainedModel:
        """The student as it would be saved now: the weight average when there is one."""
        return self.average.module if self.average is not None else self.student

    def run(
        self,
        on_step: Callable[[int, PreTrainedModel], None] | None = None,
        log_dir: str | Path | None = None,
        checkpoint: str | Path | None = None,
        resume: bool = False,
    ) -> DistillResult:
        """Distil; ``on_step(steps_done, student)`` is called after every student step (for
        learning curves); it may switch the student to eval mode, training mode is restored.
        With ``log_dir``, TensorBoard scalars are written there as the run goes. With
        ``checkpoint`` (a file path), the run's whole state is saved there every
        ``cfg.checkpoint_every`` steps and on SIGINT (then the run stops with ``Interrupted``);
        ``resume`` continues from it."""
        cfg, local = self.cfg, self.local
        opt, sched = self._optimizer()
        writer = self._writer(log_dir) if self.ranks.main else None
        rounds = math.ceil(local.pseudo_samples / local.batch_size)
        start, crafted = 0, 0
        logs: dict[str, float] = {}
        if resume:
            state = load_checkpoint(Path(checkpoint), cfg.to_dict())
            start, crafted, logs = self._restore(state, opt, sched)
        self.student.train()
        bar = progress(range(start, cfg.student_steps), desc=f"distill ({cfg.method})", unit="step", initial=start, total=cfg.student_steps)
        with stop_on_sigint() as stop:
            for step in bar:
                due = math.ceil((step + 1) * rounds / cfg.student_steps)
                t0 = time.perf_counter()
                new = crafted < due
                while crafted < due:
                    self.synth.synthesize(self.student)
                    crafted += 1
                t1 = time.perf_counter()
                lr = sched.get_last_lr()[0]
                logs = self._student_step(self.synth.sample(local.batch_size, self.student), opt, sched)
                t2 = time.perf_counter()
                if writer is not None:
                    self._log_step(writer, step + 1, logs, lr, self.synth.stats() if new else None)
                self.times["synthesis"] += t1 - t0
                self.times["student"] += t2 - t1
                if step % 20 == 0:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
                if on_step is not None:
                    on_step(step + 1, self.result_student)
                    self.student.train()
                done = step + 1
                stopping = self.ranks.any(stop.requested)
                if checkpoint is not None and done < cfg.student_steps:
                    if stopping or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                        self._save(Path(checkpoint), done, crafted, logs, opt, sched)
                if stopping:
                    if writer is not None:
                        writer.close()
                    where = f"checkpoint saved in {Path(checkpoint).parent}; rerun the same command with --resume" if checkpoint else "nothing saved"
                    raise Interrupted(f"interrupted after student step {done} of {cfg.student_steps}; {where}")
        if self.average is not None:  # the average becomes the student
            self.student.load_state_dict(self.average.module.state_dict())
        t0 = time.perf_counter()
        agreement = self.heldout_agreement()
        self.times["heldout"] = time.perf_counter() - t0
        if writer is not None:
            if agreement["agreement"] is not None:
                writer.add_scalar("heldout/pseudo_agreement", agreement["agreement"], cfg.student_steps)
            writer.close()
        self.student.eval()
        report = {
            "teacher": self.teacher_dir,
            "teacher_sha256": self.teacher_sha256,
            "config": cfg.to_dict(),
            "student_layers": self.layers,
            "teacher_layers": int(self.teacher.config.num_hidden_layers),
            "device": str(self.device),
            "wall_time_s": {k: round(v, 3) for k, v in self.times.items()},
            "synthesis": self.synth.stats(),
            "heldout_pseudo_agreement": agreement,
            "final_losses": logs,
            "skipped_steps": self.skipped_steps,  # non-finite loss or gradient
            "real_data_used": self.synth.reads_task_data,
            "general_text_used": self.synth.reads_general_text,
        }
        if self.ranks.count > 1:
            self._report_ranks(report)
        return DistillResult(self.student, self.tokenizer, report, Path(log_dir) if log_dir is not None else None)

    def _save(self, path: Path, done: int, crafted: int, logs: dict, opt, sched) -> None:
        """One checkpoint file for all ranks: the shared student state once, and each rank's own
        synthesizer and random state (rank 0's at the top, the others' in ``other_ranks``)."""
        own = self.ranks.gather({"synthesizer": self.synth.state_dict(), "rng": rng_state(self.generator)})
        if self.ranks.main:
            save_checkpoint(path, {**self._state(done, crafted, logs, opt, sched), **own[0], "other_ranks": own[1:]})
        self.ranks.wait()

    def _state(self, done: int, crafted: int, logs: dict, opt, sched) -> dict:
        return {
            "config": self.cfg.to_dict(),
            "step": done,
            "crafted": crafted,
            "logs": logs,
            "times": dict(self.times),
            "skipped_steps": self.skipped_steps,
            "bad_in_a_row": self.bad_in_a_row,
            "student": self.student.state_dict(),
            "average": self.average.state_dict() if self.average is not None else None,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        }

    def _restore(self, state: dict, opt, sched) -> tuple[int, int, dict]:
        self.student.load_state_dict(state["student"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        own = state if self.ranks.main else state["other_ranks"][self.ranks.index - 1]
        self.synth.load_state_dict(own["synthesizer"])
        set_rng_state(own["rng"], self.generator)
        self.times.update({k: v for k, v in state["times"].items() if k != "load"})
        self.skipped_steps, self.bad_in_a_row = state["skipped_steps"], state["bad_in_a_row"]
        if not runtime.QUIET:
            tqdm.write(f"resuming after student step {state['step']} of {self.cfg.student_steps}")
        return state["step"], state["crafted"], state["logs"]

    @staticmethod
    def _writer(log_dir: str | Path | None):
        if log_dir is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package; pip install tensorboard (or asdfd[tensorboard])") from None
        if not runtime.QUIET:
            tqdm.write(f"TensorBoard logs: tensorboard --logdir {log_dir}")
        return SummaryWriter(str(log_dir))

    @staticmethod
    def _log_step(writer, step: int, logs: dict[str, float], lr: float, stats: dict | None) -> None:
        for name, value in logs.items():
            writer.add_scalar(f"loss/{name}", value, step)
        writer.add_scalar("lr", lr, step)
        if stats:  # running means over the samples crafted so far
            for key in ("teacher_mean_max_prob", "teacher_mean_target_prob"):
                if stats.get(key) is not None:
                    writer.add_scalar(f"synthesis/{key}", stats[key], step)

    def heldout_agreement(self) -> dict:
        """Teacher-student argmax agreement on fresh pseudo samples the student never trained on."""
        n = self.local.heldout_samples
        if n == 0 or self.synth.needs_data:
            return {"samples": 0, "agreement": None}
        agree = total = 0
        self.student.eval()
        for start in range(0, n, self.local.batch_size):
            batch = self.synth.craft(min(self.local.batch_size, n - start), self.student)
            with torch.inference_mode(), autocast(self.device, self.cfg.precision):
                s_logits = self.student(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits
            agree += int((s_logits.argmax(-1) == batch.teacher_logits.argmax(-1)).sum())
            total += len(batch)
        agree, total = self.ranks.sum([agree, total])
        return {"samples": int(total), "agreement": agree / total}

    def _report_ranks(self, report: dict) -> None:
        """Evidence that data parallelism worked: per-rank fingerprints of the student (all equal)
        and of the replay pool (all different); sample counts summed over ranks."""
        synth_state = self.synth.state_dict()
        mine = {
            "student_sha256": _fingerprint(self.student.state_dict().values()),
            "pool_sha256": _fingerprint(_tensors(synth_state.get("pool") or synth_state)),
            "stats": self.synth.stats(),
        }
        ranks = self.ranks.gather(mine)
        if not self.ranks.main:
            return
        for key in ("pseudo_samples", "pooled_samples", "real_samples_seen"):
            if key in report["synthesis"]:
                report["synthesis"][key] = sum(r["stats"][key] for r in ranks)
        report["data_parallel"] = {
            "processes": self.ranks.count,
            "student_sha256": [r["student_sha256"] for r in ranks],
            "pool_sha256": [r["pool_sha256"] for r in ranks],
            "pseudo_samples_per_rank": [r["stats"].get("pseudo_samples", r["stats"].get("real_samples_seen")) for r in ranks],
        }


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in _tensors(v)]
    return []


def _fingerprint(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def preflight(output: str | Path | None, cfg: DistillConfig, overwrite: bool, resume: bool) -> None:
    """The checks on the output folder and checkpoint that fail a run before any work (nothing is
    changed); the CLI runs them before launching a data-parallel run too."""
    if output is None:
        if cfg.tensorboard or resume:
            raise UserError("--tensorboard and --resume work through the output folder; pass an output (--output)")
        return
    partial = partial_dir(output)
    ckpt = partial / CHECKPOINT
    if resume and not ckpt.is_file():
        raise UserError(f"--resume found no checkpoint of an unfinished run into '{output}' (looked for {ckpt}); run without --resume")
    if not resume and ckpt.is_file() and not overwrite:
        raise UserError(f"an unfinished run into '{output}' left a checkpoint in {partial}; pass --resume to continue, or --overwrite")
    check_output_dir(output, overwrite)


def distill(
    teacher_dir: str | Path,
    output: str | Path | None = None,
    cfg: DistillConfig | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> DistillResult:
    """Distil the classifier in ``teacher_dir`` into a smaller student without any real data.

    With an ``output``, the run checkpoints into ``.OUTPUT.partial/`` beside it (every
    ``cfg.checkpoint_every`` steps and on Ctrl-C); ``resume`` continues a killed run from there."""
    cfg = (cfg or DistillConfig()).validate()
    preflight(output, cfg, overwrite, resume)
    if output is None:
        return Distiller(teacher_dir, cfg).run()
    partial = partial_dir(output)
    ckpt = partial / CHECKPOINT
    distiller = Distiller(teacher_dir, cfg)  # every rank has checked the same files by now
    main = distiller.ranks.main  # only rank 0 of a data-parallel run writes
    if main and not resume and partial.exists():  # discarded with --overwrite, or a dead run's logs without a checkpoint
        shutil.rmtree(partial)
    distiller.ranks.wait()
    log_dir = partial / "tensorboard" if cfg.tensorboard else None
    result = distiller.run(log_dir=log_dir, checkpoint=ckpt, resume=resume)
    if main:
        result.save(output, overwrite=overwrite)
        shutil.rmtree(partial, ignore_errors=True)
    distiller.ranks.wait()
    return result
