"""Speed benchmark: synthesis against its compute floor, student vs teacher, inference, memory, scaling.

    python -m bench --speed                  # every section into bench/results/speed.{json,md}
    python -m bench --speed --sections inference,synthesis

Sections (each stored as soon as it finishes; a rerun skips finished ones unless --fresh):
  synthesis  K teacher forward+backward passes w.r.t. the inputs for one pseudo batch, plus the start
             pass over the random start candidates (the floor)
             against asdfd's crafting of that batch, interleaved in one process, per precision
  training   one student step of the distiller against one teacher fine-tuning step, same batch shape
  inference  teacher vs student, batch 1 and 32, sequence length 64: latency, throughput, size
  distill    `asdfd distill` in child processes: a default run (peak RSS) and 1x/2x/4x budgets
             (pseudo samples and student steps scaled together) for linearity
  parallel   `asdfd distill` at the 1x budget as one process and as `--num-processes 2`, alternated
  onnx       a default trec student exported to ONNX (fp32 and dynamic int8): test accuracy of
             PyTorch, ONNX and int8, and their latency/throughput at batch 1 and 32 (onnxruntime, CPU)
  lm         lm-text's crafting of one batch (the language model writes, the teacher labels) against
             AS-DFD's, interleaved in one process, per precision
  buckets    the passes a run makes most (a guessing step, the start pass, a student step) with the batch
             run whole and in 2, 3 and 4 length groups (asdfd/bucketing.py), interleaved in one process
  profile    torch.profiler over one crafted batch and three student steps of the default run: the
             time of each phase (starts, guessing, adversarial step, labelling; teacher pass, student
             forward, self-supervised loss, backward and AdamW) and the operators that take it
Every figure is a median over repetitions; ratios are taken between figures of the same run.

As an AVX2-only CPU: `--isa avx2` (part of the default `--isa native,avx2`) runs the same
sections in a child process whose kernels are capped at AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
MKL_ENABLE_INSTRUCTIONS) into RESULTS/avx2/, and checks from torch's and oneDNN's own reports that
the caps took. On a CPU without AVX-512 the native run is that run, so it is made once, there.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from asdfd.assets import cache_root
from asdfd.config import DistillConfig
from asdfd.data import load_dataset
from asdfd.demo import cached_teacher
from asdfd.distiller import REPORT_NAME, Distiller
from asdfd.models import build_student, load_classifier, load_teacher, load_tokenizer, resolve_student_layers
from asdfd.runtime import atomic_write_text, autocast, cpu_flags, native_bf16, set_threads

SECTIONS = ("synthesis", "training", "inference", "distill", "parallel", "onnx", "lm", "buckets", "profile")
# what makes an AVX-512 CPU run as an AVX2-only one: torch's own kernels, oneDNN's, MKL's (Intel CPUs)
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
PRECISIONS = ("fp32", "bf16")
# the sections time AS-DFD's arithmetic by name, as the committed timings were made (the package's default
# method is lm-text since 2026-12-06; its crafting is timed beside AS-DFD's in the lm section)
TIMED = "as-dfd"
SCALE_BASE = {"pseudo_samples": 384, "student_steps": 75}  # the default's 3072 : 600, an eighth of it


def median_time(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds of each function, run in turn so that machine noise hits them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def per_precision(section: str, measure: Callable[[Path, str, int], dict], teacher_dir: Path, reps: int, precisions=PRECISIONS) -> dict:
    out = {}
    for p in precisions:
        out[p] = measure(teacher_dir, p, reps)
        print(f"{section} {p}: {out[p]}", flush=True)
    return out


def synthesis_at(teacher_dir: Path, precision: str, reps: int) -> dict:
    d = Distiller(teacher_dir, DistillConfig(method=TIMED, precision=precision))
    cfg, synth, student = d.cfg, d.synth, d.student.eval()
    passes = cfg.guess_steps + cfg.adv_steps
    n = cfg.batch_size
    probe = synth.craft(n, student)  # a batch of the crafted shape for the floor
    # the start is part of the method: one teacher forward (no gradients) over init_candidates
    # random starts per sample, of which the most uncertain one is kept
    k = cfg.init_candidates
    ids, base, slot, attn = synth.random_frame(n * k)
    starts = d.space.compose(synth.token_embeddings(ids), base, slot)

    def floor() -> None:
        if k > 1:
            with torch.no_grad(), autocast(d.device, precision):
                d.teacher(inputs_embeds=starts, attention_mask=attn)
        x = probe.embeds.clone().requires_grad_(True)
        for _ in range(passes):
            with autocast(d.device, precision):
                logits = d.teacher(inputs_embeds=x, attention_mask=probe.attention_mask).logits
                loss = F.cross_entropy(logits.float(), probe.targets)
            (g,) = torch.autograd.grad(loss, [x])
            x = (x - 1e-3 * g).detach().requires_grad_(True)

    t = interleaved({"floor": floor, "craft": lambda: synth.craft(n, student)}, reps)
    return {
        "batch": n,
        "tokens": probe.embeds.shape[1],
        "teacher_passes": passes,
        "start_candidates": k,
        "floor_s": round(t["floor"], 4),
        "craft_s": round(t["craft"], 4),
        "ratio": round(t["craft"] / t["floor"], 3),
    }


def lm_at(teacher_dir: Path, precision: str, reps: int) -> dict:
    """One crafted batch of lm-text against one of AS-DFD (the student as it starts), and the
    language model's share of it: writing the batch's texts. lm-text's LM writes several batches'
    worth in one call and hands them out in turn, so each timing is that many crafted batches in a
    row, divided by their number."""
    runs = {m: Distiller(teacher_dir, DistillConfig(method=m, precision=precision)) for m in ("as-dfd", "lm-text")}
    n = runs["as-dfd"].cfg.batch_size
    synth = runs["lm-text"].synth
    k = synth.batches_per_call(n)
    instructions = synth.instructions(torch.arange(k * n) % synth.num_labels)
    fns = {m: (lambda d=d: [d.synth.craft(n, d.student.eval()) for _ in range(k)]) for m, d in runs.items()}
    writes = {
        "write": lambda: synth.writer.write(instructions, synth.cfg.max_len),
        "write_batch_at_a_time": lambda: [synth.writer.write(instructions[i : i + n], synth.cfg.max_len) for i in range(0, k * n, n)],
    }
    t = {m: s / k for m, s in interleaved({**fns, **writes}, reps).items()}
    return {
        "batch": n,
        "batches_per_write": k,
        "as_dfd_craft_s": round(t["as-dfd"], 3),
        "lm_text_craft_s": round(t["lm-text"], 3),
        "ratio": round(t["lm-text"] / t["as-dfd"], 2),
        "lm_write_s": round(t["write"], 3),
        "lm_share": round(t["write"] / t["lm-text"], 3),
        "lm_write_batch_at_a_time_s": round(t["write_batch_at_a_time"], 3),  # the same texts, one crafted batch per call
    }


def training_at(teacher_dir: Path, precision: str, reps: int) -> dict:
    """A distiller student step (pool draw, teacher pass, student forward/backward, AdamW) against a
    teacher fine-tuning step (forward/backward, AdamW) on real text padded to the same shape."""
    d = Distiller(teacher_dir, DistillConfig(method=TIMED, precision=precision))
    for _ in range(4):
        d.synth.synthesize(d.student)
    d.student.train()
    n, width = d.cfg.batch_size, d.cfg.max_len + 2
    teacher = load_classifier(teacher_dir).to(d.device).train()
    t_opt = torch.optim.AdamW(teacher.parameters(), lr=1e-5)
    texts = load_dataset("trec", "train").texts[:n]
    enc = d.tokenizer(texts, padding="max_length", truncation=True, max_length=width, return_tensors="pt")
    labels = torch.zeros(n, dtype=torch.long)

    def teacher_step() -> None:
        with autocast(d.device, precision):
            loss = teacher(**enc, labels=labels).loss
        t_opt.zero_grad(set_to_none=True)
        loss.backward()
        t_opt.step()

    def student_step() -> None:
        d.update(d.objective(d.synth.sample(n))[0])

    t = interleaved({"teacher": teacher_step, "student": student_step}, reps)
    return {
        "batch": n,
        "tokens": width,
        "teacher_train_step_s": round(t["teacher"], 4),
        "student_distill_step_s": round(t["student"], 4),
        "ratio": round(t["student"] / t["teacher"], 3),
    }


def forward_fn(model, enc: dict, precision: str) -> Callable[[], None]:
    def f() -> None:
        with torch.inference_mode(), autocast(torch.device("cpu"), precision):
            model(**enc)

    return f


def inference(teacher_dir: Path, reps: int) -> dict:
    teacher = load_teacher(teacher_dir)
    tokenizer = load_tokenizer(teacher_dir)
    layers = resolve_student_layers(teacher.config.num_hidden_layers, DistillConfig.student)
    models = {"teacher": teacher, "student": build_student(teacher, layers).eval()}
    texts = load_dataset("trec", "test").texts
    out: dict = {"sequence_length": 64, "student_layers": layers}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            model.save_pretrained(Path(tmp) / name, safe_serialization=True)
            size = sum(f.stat().st_size for f in (Path(tmp) / name).glob("*.safetensors"))
            out[name] = {"parameters": sum(p.numel() for p in model.parameters()), "file_mb": round(size / 2**20, 1)}
    for batch in (1, 32):
        enc = dict(tokenizer(texts[:batch], padding="max_length", truncation=True, max_length=64, return_tensors="pt"))
        for precision in PRECISIONS:
            fns = {name: forward_fn(m, enc, precision) for name, m in models.items()}
            t = interleaved(fns, reps * (4 if batch == 1 else 1))
            for name in models:
                out[name][f"b{batch}_{precision}"] = {"latency_ms": round(1e3 * t[name], 2), "throughput_per_s": round(batch / t[name], 1)}
            key = f"student_speedup_b{batch}_{precision}"
            out[key] = round(t["teacher"] / t["student"], 3)
            print(f"inference batch {batch} {precision}: student {out[key]}x the teacher's throughput", flush=True)
    return out


def distill_child(teacher_dir: Path, settings: dict) -> dict:
    """``asdfd distill`` in a child process: its wall time and its own peak RSS.

    The peak is the child's VmHWM, read by the child itself: rusage from wait4 is no good here,
    because Linux carries the parent's resident size over the fork into the child's maximum."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["distill", "--teacher", str(teacher_dir), "--output", f"{tmp}/student", "--quiet"]
        for k, v in settings.items():
            argv += [f"--{k.replace('_', '-')}", str(v)]
        cmd = [sys.executable, "-c", "import sys; from bench.speed import child; child(sys.argv[1:])", f"{tmp}/usage.json", *argv]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"distill child failed ({proc.returncode}): asdfd {' '.join(argv)}")
        usage = json.loads((Path(tmp) / "usage.json").read_text())
        report = json.loads((Path(tmp) / "student" / REPORT_NAME).read_text())
    phases = report["wall_time_s"]
    return {
        "settings": settings,
        "process_wall_s": round(wall, 1),
        "distill_wall_s": round(sum(phases.values()), 1),
        "phase_s": phases,
        "peak_rss_mb": round(usage["vm_hwm_kb"] / 1024, 1),
    }


def child(args: list[str]) -> None:
    """Entry point of ``distill_child``: run the CLI, then write this process's peak RSS."""
    from asdfd.cli import main

    out, argv = args[0], args[1:]
    rc = main(argv)
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    Path(out).write_text(json.dumps({"rc": rc, "vm_hwm_kb": hwm}))
    sys.exit(rc)


def distill_runs(teacher_dir: Path, done: dict, save: Callable[[dict], None]) -> dict:
    runs = dict(done)
    # the faster budget a user may choose (`--pseudo-samples 2048`, bench variant as-dfd-ps2048: 0.57 validation
    # points below the default, not adopted); real-data KD before and after them, since a shared machine's speed
    # drifts by tens of percent within an hour
    real_kd = {"method": "real-kd", "data": "trec"}
    as_dfd = {"method": TIMED}  # "default": AS-DFD's default run
    plan = {"default": as_dfd, "real-kd": real_kd, "as-dfd-ps2048": as_dfd | {"pseudo_samples": 2048}, "real-kd-again": real_kd}
    plan |= {f"scale{k}x": as_dfd | {key: v * k for key, v in SCALE_BASE.items()} for k in (1, 2, 4)}
    for name, settings in plan.items():
        if name in runs:
            continue
        runs[name] = distill_child(teacher_dir, settings)
        print(f"distill {name}: {runs[name]}", flush=True)
        save(runs)
    # the wall time against real-data KD of the same student at the same number of steps (its two runs' mean)
    real = statistics.mean(runs[k]["distill_wall_s"] for k in ("real-kd", "real-kd-again"))
    for name in ("default", "as-dfd-ps2048"):
        runs[name]["vs_real_kd"] = round(runs[name]["distill_wall_s"] / real, 3)
    base = runs["scale1x"]
    for k in (2, 4):
        r = runs[f"scale{k}x"]
        r["time_ratio"] = round(r["distill_wall_s"] / base["distill_wall_s"], 3)
        r["synthesis_ratio"] = round(r["phase_s"]["synthesis"] / base["phase_s"]["synthesis"], 3)
    return runs


def parallel_runs(teacher_dir: Path, reps: int) -> dict:
    """One process (all cores as torch threads) against two processes (the cores shared out),
    same global budget, alternated so machine noise hits both alike."""
    settings = {"one": dict(SCALE_BASE), "two": {**SCALE_BASE, "num_processes": 2}}
    runs: dict[str, list[dict]] = {k: [] for k in settings}
    for _ in range(max(1, reps // 2)):
        for name, st in settings.items():
            runs[name].append(distill_child(teacher_dir, st))
            print(f"parallel {name}: {runs[name][-1]['process_wall_s']} s", flush=True)
    med = {k: statistics.median(r["process_wall_s"] for r in v) for k, v in runs.items()}
    return {
        "settings": settings,
        "process_wall_s": {k: [r["process_wall_s"] for r in v] for k, v in runs.items()},
        "median_s": med,
        "speedup": round(med["one"] / med["two"], 3),
    }


def onnx_export(teacher_dir: Path, reps: int) -> dict:
    """A default AS-DFD student of the trec teacher (fp32), exported; accuracy and speed of each form."""
    from asdfd.evaluator import evaluate_model
    from asdfd.onnx_export import INT8_NAME, OnnxClassifier, export_onnx

    test = load_dataset("trec", "test")
    student_dir = cache_root() / "bench" / f"onnx-student-{teacher_dir.name}"  # distilled once (5 min), then reused
    if not (student_dir / "model.safetensors").is_file():
        Distiller(teacher_dir, DistillConfig(method=TIMED, precision="fp32")).run().save(student_dir, overwrite=True)
    student, tokenizer = load_classifier(student_dir).eval(), load_tokenizer(student_dir)
    with tempfile.TemporaryDirectory() as tmp:
        report = export_onnx(student_dir, Path(tmp) / "onnx", quantize="int8")
        onnx_dir = Path(tmp) / "onnx"
        models = {"pytorch": student, "onnx": OnnxClassifier(onnx_dir), "onnx_int8": OnnxClassifier(onnx_dir / INT8_NAME)}
        out: dict = {
            "student": "as-dfd, package defaults, seed 0, fp32",
            "export": {k: report[k] for k in ("max_abs_diff", "opset", "files", "int8")},
        }
        for name, model in models.items():
            out[name] = {"test_accuracy": evaluate_model(model, tokenizer, test, desc=name)["accuracy"]}
        for batch in (1, 32):
            enc = dict(tokenizer(test.texts[:batch], padding="max_length", truncation=True, max_length=64, return_tensors="pt"))
            fns = {name: forward_fn(m, enc, "fp32") for name, m in models.items()}
            t = interleaved(fns, reps * (4 if batch == 1 else 1))
            for name in models:
                out[name][f"b{batch}"] = {"latency_ms": round(1e3 * t[name], 2), "throughput_per_s": round(batch / t[name], 1)}
            print(f"onnx batch {batch}: " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in t.items()), flush=True)
    return out


def bucket_runs(teacher_dir: Path, reps: int) -> dict:
    """Seconds of the three passes a run makes most, whole (1) and in 2-4 length groups; the same
    samples and the same student throughout (no optimiser step), interleaved."""
    from asdfd import bucketing
    from asdfd.losses import hidden_loss, kd_loss

    d = Distiller(teacher_dir, DistillConfig(method=TIMED))
    cfg, synth = d.cfg, d.synth
    batch = synth.craft(cfg.batch_size, d.student)
    starts = synth.craft(cfg.batch_size * cfg.init_candidates, d.student)  # the start pass's shape

    def guessing_step(k: int) -> None:
        x = batch.embeds.clone().requires_grad_(True)
        with autocast(d.device, cfg.precision):
            logits = bucketing.forward(d.teacher, x, batch.attention_mask, buckets=k, min_rows=8).logits
        torch.autograd.grad(F.cross_entropy(logits.float(), batch.targets), [x])

    def start_pass(k: int) -> None:
        with torch.no_grad(), autocast(d.device, cfg.precision):
            bucketing.forward(d.teacher, starts.embeds, starts.attention_mask, buckets=k, min_rows=8)

    def student_step(k: int) -> None:
        with torch.no_grad(), autocast(d.device, cfg.precision):
            t = bucketing.forward(d.teacher, batch.embeds, batch.attention_mask, True, buckets=k, min_rows=8)
        with autocast(d.device, cfg.precision):
            s = bucketing.forward(d.student, batch.embeds, batch.attention_mask, True, buckets=k, min_rows=8)
            hidden = hidden_loss(s.hidden_states, t.hidden_states, d.layers, batch.attention_mask)
            loss = kd_loss(s.logits, t.logits.float(), cfg.temperature) + hidden
        loss.backward()
        d.student.zero_grad(set_to_none=True)

    out: dict = {"precision": cfg.precision, "default": bucketing.BUCKETS}
    for name, fn in (("guessing_step", guessing_step), ("start_pass", start_pass), ("student_step", student_step)):
        t = interleaved({k: (lambda k=k, fn=fn: fn(k)) for k in (1, 2, 3, 4)}, reps)
        out[name] = {str(k): {"s": round(v, 4), "vs_whole": round(v / t[1], 3)} for k, v in t.items()}
        print(f"buckets {name}: " + ", ".join(f"{k}: {v:.3f}s" for k, v in t.items()), flush=True)
    return out


def profile_run(teacher_dir: Path, reps: int) -> dict:
    """torch.profiler over one crafted batch and three student steps of the default run (after two
    of each as warm-up): each phase's time and share, and the operators that take the most time."""
    from torch.profiler import ProfilerActivity, profile, record_function

    def labelled(label: str, fn: Callable) -> Callable:
        def run(*args, **kwargs):
            with record_function(label):
                return fn(*args, **kwargs)

        return run

    d = Distiller(teacher_dir, DistillConfig(method=TIMED))
    synth, n, steps = d.synth, d.cfg.batch_size, 3
    step = synth.step
    synth.step = lambda c, student, adversarial: labelled("adversarial step" if adversarial else "guessing steps", step)(c, student, adversarial)
    synth.best_starts = labelled("starts", synth.best_starts)
    synth.student_loss = labelled("self-supervised loss", synth.student_loss)
    d.objective.teacher_outputs = labelled("teacher pass", d.objective.teacher_outputs)
    for _ in range(2):
        synth.synthesize(d.student)
        d.update(d.objective(synth.sample(n))[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("craft"):
            synth.synthesize(d.student)
        for _ in range(steps):
            with record_function("step"):
                batch = synth.sample(n)
                with record_function("objective"):
                    loss = d.objective(batch)[0]
                with record_function("backward, clipping, AdamW"):
                    d.update(loss)
    events = prof.key_averages()
    t = {e.key: e.cpu_time_total / 1e6 for e in events}
    craft = {k: t.get(k, 0.0) for k in ("starts", "guessing steps", "adversarial step")}
    craft["labelling pass and the rest"] = t["craft"] - sum(craft.values())
    objective = t["objective"] - t["teacher pass"] - t.get("self-supervised loss", 0.0)
    student = {
        "teacher pass": t["teacher pass"],
        "student forward and KD losses": objective,
        "self-supervised loss": t.get("self-supervised loss", 0.0),
        "backward, clipping, AdamW": t["backward, clipping, AdamW"],
    }
    student["pool draw, mixtures and the rest"] = t["step"] - sum(student.values())
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    whole = sum(e.self_cpu_time_total for e in ops)

    def shares(parts: dict, total: float, per: int) -> dict:
        return {k: {"s": round(v / per, 4), "share": round(v / total, 3)} for k, v in parts.items()}

    return {
        "precision": d.cfg.precision,
        "craft_s": round(t["craft"], 3),
        "student_step_s": round(t["step"] / steps, 3),
        "craft": shares(craft, t["craft"], 1),
        "student_step": shares(student, t["step"], steps),
        "top_ops": [{"op": e.key, "share": round(e.self_cpu_time_total / whole, 3)} for e in ops[:10]],
    }


@functools.cache
def isa_probe() -> dict:
    """Which kernels this process's environment really gets (checked in a child with the same
    variables): torch's own CPU capability, the ISA oneDNN reports, MKL's banner (it names the ISA
    on Intel CPUs only), the CPU's vector flags, and the caps that were set."""
    code = (
        "import torch\n"
        "a = torch.randn(64, 64); a @ a\n"
        "with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):\n"
        "    torch.nn.Conv2d(16, 16, 3)(torch.randn(4, 16, 16, 16))\n"
        "print('aten:' + torch.backends.cpu.get_cpu_capability())\n"
    )
    run_env = {**os.environ, "MKL_VERBOSE": "1", "ONEDNN_VERBOSE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True).stdout
    found = {"aten": "", "onednn": "", "mkl": ""}
    for line in out.splitlines():
        if line.startswith("aten:"):
            found["aten"] = line[5:]
        elif ",isa:" in line:
            found["onednn"] = line.split(",isa:", 1)[1].strip()
        elif line.startswith("MKL_VERBOSE oneMKL") or line.startswith("MKL_VERBOSE Intel"):
            found["mkl"] = line.split(" for ", 1)[-1].split(",")[0]
    found["cpu_flags"] = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma")))
    found["caps"] = {k: v for k, v in os.environ.items() if k in AVX2_ENV}
    return found


def native_avx2_only() -> bool:
    """Is this CPU without AVX-512, so that its native run is the AVX2 run?"""
    return not torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa": isa_probe(),
        "platform": platform.platform(),
    }


def run_speed(results: Path, sections: list[str], reps: int, fresh: bool, isas: tuple[str, ...] = ("native", "avx2")) -> dict:
    """The sections natively into ``results`` and as an AVX2-only CPU into ``results/avx2`` (see the
    module's docstring); on a CPU without AVX-512 the one run goes to ``results/avx2``."""
    if "avx2" not in isas:
        return measure(results, sections, reps, fresh)
    if native_avx2_only():
        print("this CPU has no AVX-512: its native run is the AVX2 run, measured once into", results / "avx2", flush=True)
        return measure(results / "avx2", sections, reps, fresh)
    if "native" in isas:
        measure(results, sections, reps, fresh)
    cmd = [sys.executable, "-m", "bench", "--speed", "--isa", "native", "--sections", ",".join(sections), "--reps", str(reps)]
    cmd += ["--results", str(results / "avx2")] + (["--fresh"] if fresh else [])
    proc = subprocess.run(cmd, env={**os.environ, **AVX2_ENV}, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the AVX2 run failed ({proc.returncode})")
    data = json.loads((results / "avx2" / "speed.json").read_text())
    isa = next(iter(data["machine"].values()))["isa"]
    if isa["aten"] != "AVX2" or "AVX2" not in isa["onednn"].upper():
        raise SystemExit(f"bench: the AVX2 caps did not take (torch {isa['aten']}, oneDNN {isa['onednn']}); its figures are not an AVX2 CPU's")
    return data


def measure(results: Path, sections: list[str], reps: int, fresh: bool) -> dict:
    set_threads()
    path = results / "speed.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    if fresh:  # rerun the named sections, keep the others
        for section in sections:
            data.pop(section, None)
            data.get("machine", {}).pop(section, None)
    teacher_dir = cached_teacher("trec")
    data["teacher"] = str(teacher_dir.name)

    def save(section: str, value: dict) -> None:
        data[section] = value
        data.setdefault("machine", {})[section] = machine()
        results.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")

    native = ("fp32", "bf16") if native_bf16(torch.device("cpu")) else ("fp32",)  # emulated bf16 is not what a run uses
    for section in sections:
        if section in data and section != "distill":
            print(f"skip {section} (done; --fresh reruns it)")
            continue
        if section == "synthesis":
            save(section, per_precision(section, synthesis_at, teacher_dir, reps, native))
        elif section == "training":
            save(section, per_precision(section, training_at, teacher_dir, reps, native))
        elif section == "lm":
            save(section, per_precision(section, lm_at, teacher_dir, reps, native))
        elif section == "inference":
            save(section, inference(teacher_dir, reps))
        elif section == "parallel":
            save(section, parallel_runs(teacher_dir, reps))
        elif section == "onnx":
            save(section, onnx_export(teacher_dir, reps))
        elif section == "profile":
            save(section, profile_run(teacher_dir, reps))
        elif section == "buckets":
            save(section, bucket_runs(teacher_dir, reps))
        elif section == "distill":
            save(section, distill_runs(teacher_dir, data.get("distill", {}), lambda runs: save("distill", runs)))
    (results / "speed.md").write_text(speed_table(data))
    print(f"wrote {path} and {results / 'speed.md'}")
    return data


def speed_table(data: dict) -> str:
    lines = ["# Speed (python -m bench --speed)", ""]
    for section, m in data.get("machine", {}).items():
        isa = m.get("isa")
        kernels = f"; kernels: torch {isa['aten']}, oneDNN {isa['onednn'] or '?'}; CPU flags {' '.join(isa['cpu_flags'])}" if isa else ""
        caps = f"; capped by {', '.join(f'{k}={v}' for k, v in isa['caps'].items())}" if isa and isa["caps"] else ""
        lines.append(f"- {section}: {m['cpu']}, {m['cores_usable']} cores, {m['torch_threads']} torch threads, torch {m['torch']}{kernels}{caps}")
    if "synthesis" in data:
        lines += ["", "## Synthesis against its floor (one pseudo batch)", "", "| precision | floor s | craft s | ratio |", "|---|---|---|---|"]
        for p, r in data["synthesis"].items():
            lines.append(f"| {p} | {r['floor_s']:.3f} | {r['craft_s']:.3f} | {r['ratio']:.2f} |")
        r = next(iter(data["synthesis"].values()))
        start = f", plus one teacher forward pass over {r['start_candidates']} random starts per sample" if r.get("start_candidates", 1) > 1 else ""
        lines.append(
            f"\nFloor: {r['teacher_passes']} teacher forward+backward passes w.r.t. the inputs{start}, batch {r['batch']} x {r['tokens']} tokens."
        )
    if "lm" in data:
        lines += ["", "## lm-text against AS-DFD: one crafted batch", ""]
        lines += ["| precision | AS-DFD s | lm-text s | ratio | LM writing s (share) | LM writing a batch per call s |", "|---|---|---|---|---|---|"]
        for p, r in data["lm"].items():
            write = f"{r['lm_write_s']:.2f} ({r['lm_share']:.0%})" if "lm_write_s" in r else ""  # not measured before
            alone = f"{r['lm_write_batch_at_a_time_s']:.2f}" if "lm_write_batch_at_a_time_s" in r else ""
            lines.append(f"| {p} | {r['as_dfd_craft_s']:.2f} | {r['lm_text_craft_s']:.2f} | {r['ratio']:.2f} | {write} | {alone} |")
    if "training" in data:
        lines += ["", "## Training steps", "", "| precision | teacher fine-tuning step s | student distillation step s | ratio |"]
        lines.append("|---|---|---|---|")
        for p, r in data["training"].items():
            lines.append(f"| {p} | {r['teacher_train_step_s']:.3f} | {r['student_distill_step_s']:.3f} | {r['ratio']:.2f} |")
    if "inference" in data:
        inf = data["inference"]
        lines += ["", f"## Inference (sequence length {inf['sequence_length']}, PyTorch eager)", ""]
        lines += ["| model | parameters | file MB | setting | latency ms | throughput /s |", "|---|---|---|---|---|---|"]
        for name in ("teacher", "student"):
            r = inf[name]
            for key, v in r.items():
                if key.startswith("b"):
                    lines.append(f"| {name} | {r['parameters'] / 1e6:.1f}M | {r['file_mb']} | {key} | {v['latency_ms']} | {v['throughput_per_s']} |")
        for key, v in inf.items():
            if key.startswith("student_speedup"):
                lines.append(f"\n{key}: {v:.2f}x")
    if "distill" in data:
        lines += ["", "## asdfd distill in a child process", ""]
        lines.append("| run | settings | distill s | synthesis s | peak RSS MB | time ratio | synthesis ratio |")
        lines.append("|---|---|---|---|---|---|---|")
        for name, r in data["distill"].items():
            s = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
            lines.append(
                f"| {name} | {s} | {r['distill_wall_s']} | {r['phase_s']['synthesis']:.1f} | {r['peak_rss_mb']} | "
                f"{r.get('time_ratio', '')} | {r.get('synthesis_ratio', '')} |"
            )
    for name, r in data.get("distill", {}).items():
        if "vs_real_kd" in r:
            lines.append(f"\n{name} against real-data KD of the same student: {r['vs_real_kd']:.2f}x the wall time")
    if "buckets" in data:
        r = data["buckets"]
        lines += ["", f"## Length groups (asdfd/bucketing.py, {r['precision']}; the package uses {r['default']})", ""]
        lines += ["| pass | whole s | 2 groups | 3 groups | 4 groups |", "|---|---|---|---|---|"]
        for name in ("guessing_step", "start_pass", "student_step"):
            v = r[name]
            lines.append(f"| {name.replace('_', ' ')} | {v['1']['s']:.3f} | " + " | ".join(f"{v[k]['vs_whole']:.2f}x" for k in "234") + " |")
    if "profile" in data:
        r = data["profile"]
        lines += ["", f"## Where the time goes (torch.profiler, {r['precision']})", ""]
        lines += ["| part | s | share |", "|---|---|---|"]
        lines.append(f"| **one crafted batch** | {r['craft_s']:.3f} | |")
        lines += [f"| {k} | {v['s']:.3f} | {v['share']:.0%} |" for k, v in r["craft"].items()]
        lines.append(f"| **one student step** | {r['student_step_s']:.3f} | |")
        lines += [f"| {k} | {v['s']:.3f} | {v['share']:.0%} |" for k, v in r["student_step"].items()]
        lines.append("\nOperators by own time: " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in r["top_ops"]))
    if "parallel" in data:
        r = data["parallel"]
        lines += ["", "## One process against two (`--num-processes 2`), same global budget", ""]
        lines += ["| run | settings | wall s (each rep) | median s |", "|---|---|---|---|"]
        for name, st in r["settings"].items():
            s = ", ".join(f"{k}={v}" for k, v in st.items())
            lines.append(f"| {name} | {s} | {', '.join(map(str, r['process_wall_s'][name]))} | {r['median_s'][name]} |")
        lines.append(f"\nSpeed-up of two processes: {r['speedup']:.2f}x")
    if "onnx" in data:
        r = data["onnx"]
        lines += ["", f"## ONNX export ({r['student']}; opset {r['export']['opset']})", ""]
        lines += ["| form | file MB | trec test acc | b1 latency ms | b32 throughput /s |", "|---|---|---|---|---|"]
        files = {"onnx": "model.onnx", "onnx_int8": "model.int8.onnx"}
        for name in ("pytorch", "onnx", "onnx_int8"):
            v = r[name]
            mb = f"{r['export']['files'][files[name]] / 2**20:.1f}" if name in files else ""
            lines.append(f"| {name} | {mb} | {100 * v['test_accuracy']:.2f} | {v['b1']['latency_ms']} | {v['b32']['throughput_per_s']} |")
        lines.append(f"\nmax |logit difference| ONNX vs PyTorch on the check texts: {r['export']['max_abs_diff']:.1e}")
    return "\n".join(lines) + "\n"
