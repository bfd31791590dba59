"""The distillation loop shared by every method: it never reads real data (only the ``real-kd``
and ``finetune`` reference synthesizers do, by definition).

Per student step: if the schedule says so, the synthesizer crafts a fresh batch (adapted to the
student as it is now) into its replay pool; a student batch is drawn from the pool; the student
(and any synthesizer-side head) takes one optimiser step on ``StudentObjective`` (asdfd/objective.py).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from . import parallel, runtime, synthesizers
from .assets import model_folder
from .card import CARD_NAME, model_card, weights_sha256
from .checkpoint import CHECKPOINT, Interrupted, load_checkpoint, partial_dir, rng_state, save_checkpoint, set_rng_state
from .config import DistillConfig, save_config
from .errors import UserError
from .models import TokenSpace, load_teacher, load_tokenizer
from .objective import GuardedStep, StudentObjective, build_optimizer
from .runtime import atomic_dir, autocast, check_output_dir, progress, resolve_device, seed_everything, set_threads, stop_on_sigint
from .student import build as build_student
from .tensorboard_log import TensorBoard

REPORT_NAME = "distill_report.json"
KEEP_HIDDEN_BYTES = 64 * 2**20


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
        self.cfg = synthesizers.configure(cfg)
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
        self.teacher_sha256 = weights_sha256(model_folder(teacher_dir))  # a hub name: its cached snapshot
        if teacher is None:
            teacher = load_teacher(teacher_dir, cfg.allow_pickle)
        self.teacher = teacher.eval().requires_grad_(False).to(self.device)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(teacher_dir)
        self.space = TokenSpace.from_teacher(self.teacher, self.tokenizer)
        self.plan = build_student(cfg.student, self.teacher, self.tokenizer, cfg.allow_pickle).to(self.device)
        self.layers = self.plan.layer_map
        self.student = self.plan.model
        positions = min(self.space.max_positions, TokenSpace.positions(self.student.config, self.plan.tokenizer))
        if cfg.max_len + 2 > positions:
            raise UserError(
                f"max_len {cfg.max_len} + 2 special tokens exceeds the {positions} positions that teacher and student read; "
                f"pass --max-len <= {positions - 2}"
            )
        adapters = [] if self.plan.adapters is None else list(self.plan.adapters.parameters())
        self.plan.attach()  # a student of another embedding space reads pseudo samples through the bridge
        student_hidden = int(self.student.config.hidden_size)
        self.synth = synthesizers.build(cfg.method, self.teacher, self.space, self.local, self.device, self.generator, student_hidden=student_hidden)
        # crafted samples keep the teacher's states at the distilled layers (where the pool holds them in
        # KEEP_HIDDEN_BYTES), so that a student step runs the teacher on the mixtures alone
        kept = self.local.replay_size * len(self.layers) * (cfg.max_len + 2) * int(self.teacher.config.hidden_size) * 4
        if cfg.lambda_hidden > 0 and kept <= KEEP_HIDDEN_BYTES:
            self.synth.keep_hidden = [t + 1 for t in self.layers]
        self.ranks.broadcast([*self.student.parameters(), *self.synth.parameters(), *adapters])  # one starting point
        self.objective = StudentObjective(self.teacher, self.student, self.synth, self.layers, cfg, self.device, self.plan.adapters)
        self.update = GuardedStep(*build_optimizer(self.student, self.synth, cfg, adapters), self.ranks, cfg.grad_clip)
        self.times = {"load": time.perf_counter() - t0, "synthesis": 0.0, "student": 0.0, "heldout": 0.0}

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
        board = TensorBoard.open(log_dir) if self.ranks.main and log_dir is not None else None
        rounds = math.ceil(local.pseudo_samples / local.batch_size)  # crafted batches over the run
        start, crafted, logs = 0, 0, {}
        if resume:
            start, crafted, logs = self.restore(load_checkpoint(Path(checkpoint), cfg.to_dict()))
        self.student.train()
        bar = progress(range(start, cfg.student_steps), desc=f"distill ({cfg.method})", unit="step", initial=start, total=cfg.student_steps)
        with stop_on_sigint() as stop:
            for step in bar:
                # craft the fresh batches due by now, against the student as it is
                t0 = time.perf_counter()
                due = math.ceil((step + 1) * rounds / cfg.student_steps)
                new = crafted < due
                while crafted < due:
                    self.synth.synthesize(self.student)
                    crafted += 1
                # one student step on a batch from the pool
                t1 = time.perf_counter()
                lr = self.update.sched.get_last_lr()[0]
                loss, logs = self.objective(self.synth.sample(local.batch_size))
                self.update(loss)
                t2 = time.perf_counter()
                self.times["synthesis"] += t1 - t0
                self.times["student"] += t2 - t1
                # report, and keep what a resumed run needs
                if board is not None:
                    board.log_step(step + 1, logs, lr, self.synth.stats() if new else None)
                if step % 20 == 0:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
                if on_step is not None:
                    on_step(step + 1, self.student)
                    self.student.train()
                done = step + 1
                stopping = self.ranks.any(stop.requested)
                if checkpoint is not None and done < cfg.student_steps:
                    if stopping or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                        self.save(Path(checkpoint), done, crafted, logs)
                if stopping:
                    if board is not None:
                        board.close()
                    where = f"checkpoint saved in {Path(checkpoint).parent}; rerun the same command with --resume" if checkpoint else "nothing saved"
                    raise Interrupted(f"interrupted after student step {done} of {cfg.student_steps}; {where}")
        t0 = time.perf_counter()
        agreement = self.heldout_agreement()
        self.times["heldout"] = time.perf_counter() - t0
        if board is not None:
            board.close(agreement["agreement"], cfg.student_steps)
        self.plan.detach()  # the student reads token ids from here on, as the saved one will
        self.student.eval()
        return DistillResult(self.student, self.plan.tokenizer, self.report(agreement, logs), Path(log_dir) if log_dir is not None else None)

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

    def report(self, agreement: dict, logs: dict) -> dict:
        report = {
            "teacher": self.teacher_dir,
            "teacher_sha256": self.teacher_sha256,
            "config": self.cfg.to_dict(),
            "student_layers": self.layers,  # the teacher layer each student layer learned from
            "teacher_layers": int(self.teacher.config.num_hidden_layers),
            "student": self.plan.info,
            "device": str(self.device),
            "wall_time_s": {k: round(v, 3) for k, v in self.times.items()},
            "synthesis": self.synth.stats(),
            "heldout_pseudo_agreement": agreement,
            "final_losses": logs,
            "skipped_steps": self.update.skipped,  # non-finite loss or gradient
            "real_data_used": self.synth.needs_data,
            "general_text_used": self.synth.reads_general_text,
        }
        if self.ranks.count > 1:
            parallel.report_ranks(self.ranks, report, self.student, self.synth)
        return report

    # ---- checkpoints: one file for all ranks, the shared student state once and each rank's own
    # synthesizer and random state (rank 0's at the top, the others' in ``other_ranks``)
    def save(self, path: Path, done: int, crafted: int, logs: dict) -> None:
        own = self.ranks.gather({"synthesizer": self.synth.state_dict(), "rng": rng_state(self.generator)})
        if self.ranks.main:
            shared = {"config": self.cfg.to_dict(), "step": done, "crafted": crafted, "logs": logs, "times": dict(self.times)}
            adapters = self.plan.adapters.state_dict() if self.plan.adapters is not None else None
            state = {**shared, "student": self.student.state_dict(), "adapters": adapters, **self.update.state_dict()}
            save_checkpoint(path, {**state, **own[0], "other_ranks": own[1:]})
        self.ranks.wait()

    def restore(self, state: dict) -> tuple[int, int, dict]:
        self.student.load_state_dict(state["student"])
        if self.plan.adapters is not None:
            self.plan.adapters.load_state_dict(state["adapters"])
        self.update.load_state_dict(state)
        own = state if self.ranks.main else state["other_ranks"][self.ranks.index - 1]
        self.synth.load_state_dict(own["synthesizer"])
        set_rng_state(own["rng"], self.generator)
        self.times.update({k: v for k, v in state["times"].items() if k != "load"})
        if not runtime.QUIET:
            tqdm.write(f"resuming after student step {state['step']} of {self.cfg.student_steps}")
        return state["step"], state["crafted"], state["logs"]


def preflight(output: str | Path | None, cfg: DistillConfig, overwrite: bool, resume: bool, teacher_dir: str | Path | None = None) -> None:
    """The checks on the output folder and checkpoint that fail a run before any work (nothing is
    changed); the CLI runs them before launching a data-parallel run too."""
    if output is not None and teacher_dir is not None:
        out, teacher = Path(output).resolve(), model_folder(teacher_dir).resolve()
        if out == teacher or teacher in out.parents or out in teacher.parents:
            where = "is" if out == teacher else "is inside" if teacher in out.parents else "contains"
            raise UserError(f"--output '{output}' {where} the teacher folder '{teacher_dir}', which a run never writes to; pass another --output")
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
    cfg = synthesizers.configure(cfg or DistillConfig())
    preflight(output, cfg, overwrite, resume, teacher_dir)
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
