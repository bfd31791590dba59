"""``asdfd`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from . import parallel, runtime
from .checkpoint import Interrupted
from .config import RETIRED, DistillConfig, TeacherConfig, read_config_file, retired, typed_value
from .errors import UserError


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


DATA_FIELDS = ("data", "text_column", "label_column")
FLAG_TYPES = {"mix": float, "replay_size": int}  # options whose default (None) does not tell their type


def _add_config_flags(p: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One ``--kebab-name`` flag per dataclass field; unset flags keep the dataclass default."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default
        kind = str if f.name == "student" else _parse_bool if isinstance(default, bool) else FLAG_TYPES.get(f.name, type(default))
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata["help"] + ("" if default in (None, "") else f" (default: {default})")
        p.add_argument(flag, type=kind, default=None, help=help_)


def _config_from_args(cls, args: argparse.Namespace):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    if cls is DistillConfig:
        from .synthesizers import configure  # the method's defaults and checks

        return configure(DistillConfig(**values))
    return cls(**values).validate()


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="trec | mr | bbc, a .csv/.tsv/.jsonl/.parquet file, a folder or a cached hub dataset",
    )
    p.add_argument("--text-column", default="text", help="text column of a data file (default: text)")
    p.add_argument("--label-column", default="label", help="label column of a data file (default: label)")


def _common(p: argparse.ArgumentParser, config: bool = True) -> None:
    if config and any(a.dest == "output" for a in p._actions):  # the commands that run a job take a config file
        p.add_argument("--config", default=None, help="YAML file of options (any flag of this command, by name); flags given here win")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asdfd", description="Data-free distillation of transformer text classifiers (an LM prior; AS-DFD).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-teacher", help="fine-tune a base encoder into a classifier")
    _add_data_flags(p)
    p.add_argument("--output", required=True, help="folder for the teacher")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    _add_config_flags(p, TeacherConfig)
    _common(p)

    p = sub.add_parser("distill", help="distil a teacher into a smaller student without data")
    p.add_argument("--teacher", required=True, help="fine-tuned classifier: a folder (safetensors) or a hub name in the Hugging Face cache")
    p.add_argument("--output", required=True, help="folder for the student")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output (and any unfinished run's checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue a killed or interrupted run into --output from its last checkpoint")
    _add_config_flags(p, DistillConfig)
    _common(p)

    p = sub.add_parser("evaluate", help="accuracy of a classifier on real labelled text")
    p.add_argument("--model", required=True, help="classifier folder or hub name in the Hugging Face cache")
    _add_data_flags(p)
    p.add_argument(
        "--split",
        default=None,
        help="train | validation | test | all (default: a file's every row; else test)",
    )
    p.add_argument("--teacher", default=None, help="also report agreement with this teacher")
    p.add_argument("--max-length", type=int, default=None, help="token limit per text (default: the dataset's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.add_argument("--record", action="store_true", help="also add the results to the student's distill_report.json and model card (README.md)")
    p.add_argument(
        "--allow-pickle", action="store_true", help="read pytorch_model.bin (tensors only, weights_only=True) when a folder has no safetensors"
    )
    _common(p)

    p = sub.add_parser("demo", help="teacher -> data-free student (lm-text unless --method says otherwise) -> evaluation on packaged data")
    p.add_argument("--data", default="trec", help="trec | mr | bbc (default: trec)")
    p.add_argument("--output", default="asdfd-demo", help="folder for the demo's student and report")
    p.add_argument("--cache-dir", default=None, help="where trained teachers are cached (default: ~/.cache/asdfd)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    _add_config_flags(p, DistillConfig, skip=DATA_FIELDS)
    _common(p)

    p = sub.add_parser("inspect", help="decode and plot a run's pseudo samples (fresh ones, crafted as the run did)")
    p.add_argument("--run", required=True, help="student folder written by asdfd distill")
    p.add_argument("--output", default=None, help="folder for the text and plots (default: RUN/inspect)")
    p.add_argument("--n", type=int, default=256, help="pseudo samples to craft (default: 256)")
    p.add_argument("--data", default=None, help="real texts to compare with: trec | mr | bbc or a data file/folder (as --data of evaluate)")
    p.add_argument("--split", default="validation", help="split of --data (default: validation)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--teacher", default=None, help="teacher folder, if it moved since the run (default: the one in the report)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    _common(p, config=False)
    p = sub.add_parser("export", help="export a classifier to ONNX (checked against PyTorch under onnxruntime)")
    p.add_argument("--model", required=True, help="classifier folder (a student written by asdfd distill, or any classifier)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    p.add_argument("--output", default=None, help="folder for the export (default: MODEL-onnx)")
    p.add_argument("--quantize", default=None, help="int8: also write a dynamic-int8 model.int8.onnx")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    _common(p, config=False)
    sub.add_parser("methods", help="list the pseudo-sample methods")
    parser.commands = sub.choices  # type: ignore[attr-defined]
    return parser


def defaults_from_config_file(parser: argparse.ArgumentParser, path: str, name: str) -> None:
    """Make the values in the YAML file at ``path`` the defaults of ``parser``'s flags, so that flags
    given on the command line still win. Unknown keys and wrong types are refused by name."""
    values = read_config_file(path)
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    fields = {f.name: f.default for cls in (DistillConfig, TeacherConfig) for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in actions:
            valid = ", ".join(sorted(actions))
            raise UserError(f"config file {path}: unknown key '{key}'; valid keys are the flags of `{name}`: {valid}")
        action = actions[key]
        action.required = False
        if value is None and key in fields and fields[key] is None:  # an option left to the method (replay_size, mix)
            continue
        default = FLAG_TYPES[key]() if key in FLAG_TYPES else fields.get(key, action.default if action.default is not None else "")
        values[key] = typed_value(key, value, default, f"config file {path}")
    parser.set_defaults(**values)


def _refuse_retired_flags(argv: list[str]) -> None:
    """A flag of an option that was explored and not adopted gets its own one-line answer."""
    for arg in argv:
        name = arg.removeprefix("--").partition("=")[0].replace("-", "_")
        if arg.startswith("--") and name in RETIRED:
            raise retired(f"'--{name.replace('_', '-')}'")
        if arg.startswith("--") and name == "steps":
            raise UserError("--steps was an alias of --student-steps; pass --student-steps")
        if arg.startswith("--") and name == "student_layers":
            raise UserError("--student-layers is now --student (it takes the same values, and more); pass --student")


def _apply_config_file(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("command", nargs="?")
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config and known.command in parser.commands:
        defaults_from_config_file(parser.commands[known.command], known.config, f"asdfd {known.command}")


def _student_line(report: dict) -> str:
    """'3 layers [1, 3, 5]' for copied layers; 'BertForSequenceClassification, 3 layers x 384' otherwise."""
    s = report.get("student", {})
    if s.get("kind") == "copied teacher layers":
        return f"{len(report['student_layers'])} layers {report['student_layers']}"
    return (
        f"{s.get('kind')}, {s.get('architecture')}, {s.get('layers')} layers x {s.get('hidden_size')}, {s.get('parameters', 0) / 1e6:.1f}M parameters"
    )


def _print_eval(res: dict) -> None:
    print(f"{res['model']} on {res['dataset']}/{res['split']} (n={res['n']})")
    print(f"  accuracy  {res['accuracy']:.4f}")
    print(f"  macro-F1  {res['macro_f1']:.4f}")
    if "agreement_with_teacher" in res:
        print(f"  teacher accuracy        {res['teacher_accuracy']:.4f}")
        print(f"  agreement with teacher  {res['agreement_with_teacher']:.4f}")
    print("  per-class accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in res["per_class_accuracy"].items()))
    if res.get("empty_texts") or res.get("truncated_texts"):
        print(f"  note: {res['empty_texts']} empty texts (classified as given); {res['truncated_texts']} texts cut to the token limit (--max-length)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        _refuse_retired_flags(argv)
        _apply_config_file(parser, argv)
    except UserError as e:
        if "--debug" in argv:
            raise
        print(f"asdfd: error: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    runtime.QUIET = getattr(args, "quiet", False)
    if runtime.QUIET:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return _dispatch(args, argv)
    except Interrupted as e:
        if parallel.rank() == 0:
            print(f"asdfd: {e}", file=sys.stderr)
        return 130
    except UserError as e:
        if getattr(args, "debug", False):
            raise
        if parallel.rank() == 0:  # in a data-parallel run every rank fails alike; one line is enough
            print(f"asdfd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asdfd: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.command == "methods":
        from .synthesizers import REGISTRY

        default = DistillConfig().method
        for name, cls in sorted(REGISTRY.items()):
            print(f"{name:14s} {(cls.__doc__ or '').strip().splitlines()[0]}" + ("  [default]" if name == default else ""))
        return 0
    if args.command == "train-teacher":
        from .data import load_dataset
        from .teacher import train_teacher

        cfg = _config_from_args(TeacherConfig, args)
        kw = {"text_column": args.text_column, "label_column": args.label_column, "max_length": cfg.max_length or None}
        splits = [load_dataset(args.data, s, **kw) for s in ("train", "validation", "test")]
        rep = train_teacher(*splits, args.output, cfg, overwrite=args.overwrite)
        print(f"teacher written to {args.output}: validation accuracy {rep['validation_accuracy']:.4f}, test accuracy {rep['test_accuracy']:.4f}")
        print("rows: " + ", ".join(f"{split} {s['rows']} ({s['selection']})" for split, s in rep["splits"].items()))
        return 0
    if args.command == "distill":
        from .distiller import distill, preflight

        cfg = _config_from_args(DistillConfig, args)
        if cfg.num_processes > 1 and not parallel.launched():
            from .models import load_classifier
            from .runtime import resolve_device

            load_classifier(args.teacher, allow_pickle=cfg.allow_pickle)  # one clear error here, not one per rank
            preflight(args.output, cfg, args.overwrite, args.resume, args.teacher)
            return parallel.launch(argv, cfg.num_processes, cuda=resolve_device(cfg.device).type == "cuda")
        res = distill(args.teacher, args.output, cfg, overwrite=args.overwrite, resume=args.resume)
        if parallel.rank() != 0:
            return 0
        r = res.report
        agree = r["heldout_pseudo_agreement"]["agreement"]
        agree_s = "n/a" if agree is None else f"{agree:.4f}"
        print(
            f"student ({_student_line(r)}) written to {args.output}; held-out pseudo agreement {agree_s}; time {sum(r['wall_time_s'].values()):.0f}s"
        )
        return 0
    if args.command == "evaluate":
        from .data import BUILTIN, data_path, load_dataset, own_splits
        from .distiller import REPORT_NAME
        from .evaluator import evaluate

        if args.record and not (Path(args.model) / REPORT_NAME).is_file():
            raise UserError(f"--record writes into a student folder made by asdfd distill, and '{args.model}' has no {REPORT_NAME}; drop --record")
        splits = own_splits(args.data)  # a folder or hub dataset with splits of its own: its test split unless --split says
        split = args.split or ("test" if args.data in BUILTIN or splits else "all")  # a file the user hands over is meant whole
        if split == "all" and data_path(args.data) is not None and not splits:
            data = args.data  # a whole file: streamed in chunks, however large
        else:
            data = load_dataset(args.data, split, args.text_column, args.label_column, args.max_length)
        kw = {"text_column": args.text_column, "label_column": args.label_column, "max_length": args.max_length or 128}
        res = evaluate(args.model, data, args.teacher, args.device, allow_pickle=args.allow_pickle, **kw)
        if args.record:
            from .card import record_evaluation

            record_evaluation(args.model, res, REPORT_NAME)
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            _print_eval(res)
        return 0
    if args.command == "inspect":
        from .data import load_dataset
        from .inspection import inspect_run

        data = load_dataset(args.data, args.split, args.text_column, args.label_column) if args.data else None
        output = Path(args.output) if args.output else Path(args.run) / "inspect"
        res = inspect_run(args.run, output, args.n, data, args.teacher, overwrite=args.overwrite)
        print("\n".join(["teacher_label\tconfidence\tnearest word pieces", *res["examples"]]))
        print(f"{res['samples']} pseudo samples decoded and plotted into {res['output']}")
        return 0
    if args.command == "export":
        from .onnx_export import INT8_NAME, ONNX_NAME, export_onnx

        rep = export_onnx(args.model, args.output, args.quantize, overwrite=args.overwrite)
        print(f"{ONNX_NAME} written to {rep['output']} (opset {rep['opset']}); max |logit difference| from PyTorch {rep['max_abs_diff']:.1e}")
        if "int8" in rep:
            q = rep["int8"]
            print(f"{INT8_NAME}: max |logit difference| {q['max_abs_diff']:.1e}, argmax agreement {q['argmax_agreement']:.3f} on the check texts")
        int8 = f"  (int8: --model {Path(rep['output']) / INT8_NAME})" if "int8" in rep else ""
        print(f"accuracy: asdfd evaluate --model {rep['output']} --data DATA{int8}")
        return 0
    if args.command == "demo":
        from .demo import run_demo
        from .synthesizers import REGISTRY

        method = args.method or DistillConfig.method
        # the demo's --data names the evaluation dataset; only real-data references distil on it
        keep = REGISTRY[method].needs_data if method in REGISTRY else False
        cfg = _config_from_args(DistillConfig, argparse.Namespace(**{**vars(args), "data": args.data if keep else None}))
        if cfg.num_processes > 1:
            raise UserError("asdfd demo runs in one process; --num-processes is for asdfd distill")
        run_demo(args.data, Path(args.output), cfg, cache_dir=args.cache_dir, overwrite=args.overwrite)
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
