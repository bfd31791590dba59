"""Can a data-free bias correction remove a distilled student's class lean on real text?

    asdfd distill --teacher <cached mr teacher> --output /tmp/mr-s0 --precision fp32
    python -m bench.bias_probe --teacher <cached mr teacher> --student /tmp/mr-s0

The students of the benchmark lean to one class on real text (mr: "fresh" by about 17 points).
This fits a per-class bias ``b`` to the student's logits so that ``softmax((S(x) + b) / T)``
matches the teacher's ``softmax(T(x) / T)`` on synthetic inputs only (the cross-entropy's minimum
is where the two mean distributions agree), on three sets: random text, AS-DFD's crafted samples
(the default crafting against the trained student) and token-level mixtures of those. It then
reports validation and test accuracy with each fitted bias (reading real labels only to report).
Writes ``bench/results/bias-probe/<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from asdfd.config import DistillConfig
from asdfd.data import load_dataset
from asdfd.evaluator import label_ids, logits_counted, metrics
from asdfd.models import TokenSpace, load_classifier, load_teacher, load_tokenizer
from asdfd.runtime import atomic_write_text
from asdfd.synthesizers import REGISTRY, PseudoBatch, ReplayPool

from .run import RESULTS


def fit_bias(t_logits: torch.Tensor, s_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The bias minimising the cross-entropy from the teacher's to the shifted student's distribution."""
    b = torch.zeros(s_logits.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([b], max_iter=200, line_search_fn="strong_wolfe")
    p = (t_logits / temperature).softmax(-1)

    def closure():
        opt.zero_grad()
        loss = -(p * ((s_logits + b) / temperature).log_softmax(-1)).sum(-1).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return (b - b.mean()).detach()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bias_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--dataset", default=None, help="trec | mr | bbc (default: from the teacher folder's name)")
    ap.add_argument("--samples", type=int, default=1024, help="synthetic samples per set")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    dataset = args.dataset or Path(args.teacher).name.split("-")[0]
    teacher, tokenizer, student = load_teacher(args.teacher), load_tokenizer(args.teacher), load_classifier(args.student)
    teacher.eval(), student.eval()
    id2label = {int(k): v for k, v in student.config.id2label.items()}
    real = {}
    for split in ("validation", "test"):
        data = load_dataset(dataset, split)
        real[split] = (logits_counted(student, tokenizer, data.texts, data.max_length, desc=None)[0], label_ids(student, data.labels))

    def scores(bias: torch.Tensor) -> dict:
        row = {"bias": [round(float(v), 4) for v in bias]}
        for split, (logits, gold) in real.items():
            m = metrics((logits + bias).argmax(-1).numpy(), gold, id2label)
            row[split] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "per_class_accuracy": m["per_class_accuracy"]}
        return row

    # synthetic sets: random text, AS-DFD's crafted samples, mixtures of those
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    cfg = DistillConfig(seed=args.seed, precision="fp32").validate()
    space = TokenSpace.from_teacher(teacher, tokenizer)
    cpu = torch.device("cpu")
    rounds = args.samples // cfg.batch_size
    t0 = time.perf_counter()
    random_text = REGISTRY["random-text"](teacher, space, cfg, cpu, generator)
    as_dfd = REGISTRY["as-dfd"](teacher, space, cfg, cpu, generator)
    sets = {
        "random-text": PseudoBatch.concat([random_text.fresh(cfg.batch_size) for _ in range(rounds)]),
        "as-dfd": PseudoBatch.concat([as_dfd.craft(cfg.batch_size, student) for _ in range(rounds)]),
    }
    as_dfd.pool = ReplayPool(len(sets["as-dfd"]), generator)
    as_dfd.pool.add(sets["as-dfd"])
    sets["as-dfd-mixtures"] = PseudoBatch.concat([as_dfd.splice(as_dfd.pool.sample(cfg.batch_size), cfg.batch_size) for _ in range(rounds)])
    report = {"dataset": dataset, "teacher": args.teacher, "student": args.student, "seed": args.seed, "as_is": scores(torch.zeros(len(id2label)))}
    report["synthesis_seconds"] = round(time.perf_counter() - t0, 1)
    for name, batch in sets.items():
        with torch.inference_mode():
            t = teacher(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits.float()
            s = student(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask).logits.float()
        entry = {
            "samples": len(batch),
            "agreement": float((t.argmax(-1) == s.argmax(-1)).float().mean()),
            "teacher_mean_probs": [round(float(v), 4) for v in t.softmax(-1).mean(0)],
            "student_mean_probs": [round(float(v), 4) for v in s.softmax(-1).mean(0)],
        }
        for temperature in (1.0, 2.0):
            entry[f"T{temperature:g}"] = scores(fit_bias(t, s, temperature))
        report[name] = entry
    print(f"{'as is':26s} validation {100 * report['as_is']['validation']['accuracy']:.2f}  test {100 * report['as_is']['test']['accuracy']:.2f}")
    for name in sets:
        for key in ("T1", "T2"):
            row = report[name][key]
            val, test = 100 * row["validation"]["accuracy"], 100 * row["test"]["accuracy"]
            print(f"{name + ' ' + key:26s} validation {val:.2f}  test {test:.2f}  bias {row['bias']}")
    out = RESULTS / "bias-probe" / f"{dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
