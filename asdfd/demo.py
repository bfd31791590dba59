"""``asdfd demo``: the whole story on a packaged dataset, from teacher to evaluated student."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from .assets import cache_root
from .card import record_evaluation
from .checkpoint import partial_dir
from .config import DistillConfig, TeacherConfig
from .data import load_dataset
from .distiller import REPORT_NAME, Distiller
from .evaluator import evaluate_model
from .models import load_teacher, load_tokenizer
from .runtime import check_output_dir
from .student import build as build_student
from .teacher import REPORT_NAME as TEACHER_REPORT
from .teacher import train_teacher

DEMO_REPORT = "demo_report.json"


def cached_teacher(data: str, cfg: TeacherConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Fine-tune (once) and cache the teacher for a packaged dataset; later calls reuse it."""
    cfg = (cfg or TeacherConfig()).validate()
    settings = cfg.to_dict()
    if settings["precision"] == "fp32":  # the key of a teacher cached before precision was an option
        del settings["precision"]
    key = hashlib.sha256(json.dumps({"data": data, **settings}, sort_keys=True).encode()).hexdigest()[:10]
    path = cache_root(cache_dir) / "teachers" / f"{data}-{key}"
    if (path / TEACHER_REPORT).is_file():
        return path
    splits = [load_dataset(data, s) for s in ("train", "validation", "test")]
    print(f"training the {data} teacher (cached in {path} for next time)")
    train_teacher(*splits, path, cfg, overwrite=True)
    return path


def run_demo(data: str, output: Path, cfg: DistillConfig, cache_dir: str | Path | None = None, overwrite: bool = False) -> dict:
    # the demo may replace its own earlier output, nothing else
    overwrite = overwrite or (output / DEMO_REPORT).is_file()
    check_output_dir(output, overwrite)
    t0 = time.perf_counter()
    teacher_dir = cached_teacher(data, cache_dir=cache_dir)
    test = load_dataset(data, "test")
    teacher = load_teacher(teacher_dir)
    tokenizer = load_tokenizer(teacher_dir)
    start = build_student(cfg.student, teacher, tokenizer, cfg.allow_pickle)
    size = f"{len(start.layer_map)} layers"
    rows = {
        "teacher": evaluate_model(teacher, tokenizer, test, desc="teacher")["accuracy"],
        f"untrained student ({size})": evaluate_model(start.model, start.tokenizer, test, desc="untrained")["accuracy"],
    }
    del start
    log_dir = partial_dir(output) / "tensorboard" if cfg.tensorboard else None
    result = Distiller(teacher_dir, cfg, teacher=teacher, tokenizer=tokenizer).run(log_dir=log_dir)
    result.save(output, overwrite=overwrite)
    shutil.rmtree(partial_dir(output), ignore_errors=True)
    res = evaluate_model(result.student, result.tokenizer, test, teacher=teacher, teacher_tokenizer=tokenizer, desc="student")
    record_evaluation(output, res, REPORT_NAME)  # into the report and the model card
    rows[f"{cfg.method} student ({size})"] = res["accuracy"]
    report = {
        "dataset": data,
        "split": "test",
        "n": res["n"],
        "teacher_dir": str(teacher_dir),
        "student_dir": str(output),
        "accuracy": rows,
        "student_agreement_with_teacher": res["agreement_with_teacher"],
        "distill_wall_time_s": result.report["wall_time_s"],
        "total_wall_time_s": round(time.perf_counter() - t0, 1),
    }
    (output / DEMO_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    width = max(map(len, rows))
    print(f"\n{data} test split, n={res['n']}")
    print(f"{'model':{width}s}  accuracy")
    for name, acc in rows.items():
        print(f"{name:{width}s}  {100 * acc:6.2f}%")
    print(f"student agreement with teacher on real text: {100 * res['agreement_with_teacher']:.2f}%")
    print(f"student written to {output}; total {report['total_wall_time_s']:.0f}s")
    return report
