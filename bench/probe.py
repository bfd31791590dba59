"""What a variant's crafted pseudo samples look like, without training a student.

    python -m bench.probe --dataset trec --variants as-dfd,as-dfd-soft2,as-dfd-soft8 --batches 4

For each variant: crafts ``--batches`` batches against the untrained student (teacher layers
copied) on the dataset's cached teacher and reports the teacher's mean probability of the
target class, its mean top probability, how far the pseudo tokens ended from the nearest real
word piece (relative to the mean word-piece norm) and the crafting time per batch. Pseudo data
only: no real text is read, so settings chosen from this (such as the soft-token step size, whose
scale has no natural unit) see nothing of validation or test. Writes
``bench/results/probe/<dataset>.json`` (one entry per variant, later runs update it).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from asdfd.config import DistillConfig, TeacherConfig
from asdfd.demo import cached_teacher
from asdfd.models import TokenSpace, build_student, load_teacher, load_tokenizer, resolve_student_layers
from asdfd.runtime import atomic_write_text
from asdfd.synthesizers import ASDFD, REGISTRY

from .run import RESULTS, expand, load_variants


@torch.no_grad()
def describe(batches: list, space: TokenSpace, teacher, seconds: float) -> dict:
    """Means over every crafted sample (targets, feature similarity within a batch) and every
    pseudo token (distances)."""
    logits = torch.cat([b.teacher_logits for b in batches]).float()
    targets = torch.cat([b.targets for b in batches])
    probs = logits.softmax(-1)
    tokens = torch.cat([b.embeds[b.slot] for b in batches])
    nearest = space.embeddings[space.nearest(tokens)]
    scale = space.embeddings[space.ordinary].norm(dim=-1).mean()
    targeted = targets >= 0
    # among samples crafted toward the same class (random text has no targets: None)
    similarity = [
        ASDFD.similarity(
            teacher(inputs_embeds=b.embeds, attention_mask=b.attention_mask, output_hidden_states=True).hidden_states[-1][:, 0], b.targets
        )
        for b in batches
        if bool((b.targets >= 0).all())
    ]
    return {
        "samples": len(targets),
        "teacher_mean_target_prob": float(probs[targeted].gather(1, targets[targeted, None]).mean()) if targeted.any() else None,
        "teacher_mean_max_prob": float(probs.max(-1).values.mean()),
        "token_distance_to_nearest_word_piece": float((tokens - nearest).norm(dim=-1).mean() / scale),
        "share_of_tokens_on_a_word_piece": float(((tokens - nearest).norm(dim=-1) < 1e-4 * scale).float().mean()),
        "teacher_feature_similarity_same_target": float(torch.stack(similarity).mean()) if similarity else None,
        "craft_seconds_per_batch": seconds / len(batches),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="trec")
    ap.add_argument("--variants", default="as-dfd")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    variants, groups = load_variants()
    teacher_dir = cached_teacher(args.dataset, TeacherConfig())
    teacher, tokenizer = load_teacher(teacher_dir), load_tokenizer(teacher_dir)
    space = TokenSpace.from_teacher(teacher, tokenizer)
    out_path = RESULTS / "probe" / f"{args.dataset}.json"
    table = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for name in expand(args.variants, variants, groups):
        if variants[name] is None or REGISTRY[variants[name].get("method", DistillConfig.method)].needs_data:
            continue  # the untrained student crafts nothing; the references read real text
        cfg = DistillConfig(seed=args.seed, precision="fp32", **variants[name]).validate()
        torch.manual_seed(args.seed)
        generator = torch.Generator().manual_seed(args.seed)
        student = build_student(teacher, resolve_student_layers(teacher.config.num_hidden_layers, cfg.student_layers))
        synth = REGISTRY[cfg.method](teacher, space, cfg, torch.device("cpu"), generator)
        t0 = time.perf_counter()
        batches = [synth.craft(cfg.batch_size, student) for _ in range(args.batches)]
        table[name] = {"seed": args.seed, "config": variants[name], **describe(batches, space, teacher, time.perf_counter() - t0)}
        row = table[name]
        print(
            f"{name:24s} p(target) {row['teacher_mean_target_prob'] or float('nan'):.3f}  max p {row['teacher_mean_max_prob']:.3f}  "
            f"same-target cos {row['teacher_feature_similarity_same_target'] or float('nan'):.3f}  "
            f"distance {row['token_distance_to_nearest_word_piece']:.3f}  on a word piece {row['share_of_tokens_on_a_word_piece']:.2f}  "
            f"{row['craft_seconds_per_batch']:.1f} s/batch"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, json.dumps(table, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
