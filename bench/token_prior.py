"""How close is each data-free random word-piece prior to a task's real word-piece distribution?

    python -m bench.token_prior [--datasets trec,mr,bbc]

For each benchmark teacher (the demo's cached teachers, fine-tuned from MiniLM) this reads the
teacher's training vocabulary against its base (``vocab_base`` minilm), builds the priors the
synthesizers draw random word pieces from (uniform; Zipf over the frequency ranks with the
alphabet last or placed by embedding norm) and reports the cross-entropy of the train split's
word pieces under each (nats per word piece; the train split's own unigram distribution is the
floor), each prior's twelve most likely word pieces, and the rank correlation between the
embedding norm of the vocabulary's single characters and their counts. The train split is read
only to score the priors, which never see it. Writes ``bench/results/token-prior.json``.
"""

from __future__ import annotations

import argparse
import json

import torch

from asdfd.data import load_dataset
from asdfd.demo import cached_teacher
from asdfd.models import TokenSpace, alphabet_size, load_teacher, load_tokenizer
from asdfd.runtime import atomic_write_text
from asdfd.vocabulary import base_word_embeddings, training_vocabulary

from .run import RESULTS

PRIORS = [(0.0, "last"), (0.5, "last"), (1.0, "last"), (0.5, "norm"), (1.0, "norm"), (1.5, "norm")]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    def rank(x: torch.Tensor) -> torch.Tensor:
        r = torch.empty(len(x), dtype=torch.double)
        r[x.argsort()] = torch.arange(len(x), dtype=torch.double)
        return r

    return float(torch.corrcoef(torch.stack([rank(a), rank(b)]))[0, 1])


def score(dataset: str) -> dict:
    folder = cached_teacher(dataset)
    tokenizer = load_tokenizer(folder)
    space = TokenSpace.from_teacher(load_teacher(folder), tokenizer)
    vocabulary = training_vocabulary(space.embeddings, base_word_embeddings("minilm"))[space.ordinary]
    train = load_dataset(dataset, "train")
    ids = tokenizer(train.texts, truncation=True, max_length=train.max_length, add_special_tokens=False)["input_ids"]
    counts = torch.bincount(torch.tensor([i for text in ids for i in text]), minlength=space.vocab_size)[space.ordinary].double()
    counts = counts * vocabulary  # the few train word pieces outside the read vocabulary: no prior draws them
    seen = counts > 0

    def cross_entropy(p: torch.Tensor) -> float:
        p = p / p.sum()
        return float(-(counts[seen] * p[seen].log()).sum() / counts.sum())

    def top(p: torch.Tensor) -> list[str]:
        return tokenizer.convert_ids_to_tokens(space.ordinary[p.argsort(descending=True)[:12]].tolist())

    out = {"word_pieces": int(counts.sum()), "unigram_floor": cross_entropy(counts), "priors": []}
    for zipf, alphabet in PRIORS:
        p = space.draw_weights(zipf, alphabet, vocabulary).double()
        out["priors"].append({"zipf": zipf, "zipf_alphabet": alphabet, "cross_entropy": cross_entropy(p), "top": top(p)})
    pieces = tokenizer.convert_ids_to_tokens(space.ordinary.tolist())
    alphabet = (torch.arange(len(pieces)) < alphabet_size(pieces)) & seen
    norms = space.embeddings[space.ordinary].float().norm(dim=-1)
    out["characters_in_vocabulary"] = int(alphabet.sum())
    out["character_norm_count_spearman"] = spearman(-norms[alphabet].double(), counts[alphabet])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="trec,mr,bbc")
    args = parser.parse_args()
    report = {}
    for dataset in args.datasets.split(","):
        report[dataset] = r = score(dataset)
        print(f"{dataset}: {r['word_pieces']} train word pieces, unigram floor {r['unigram_floor']:.2f} nats")
        for p in r["priors"]:
            print(f"  zipf {p['zipf']:<3} {p['zipf_alphabet']:4}  {p['cross_entropy']:.2f}  {' '.join(p['top'])}")
        print(f"  {r['characters_in_vocabulary']} characters: rank correlation of -norm and count {r['character_norm_count_spearman']:.2f}")
    path = RESULTS / "token-prior.json"
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
