"""``as-dfd``: Plug & Play Embedding Guessing plus adversarial self-supervision.

Stage 1 (guessing): pseudo tokens ``z`` start at the embeddings of random word pieces (by default
the most uncertain for the teacher of 4 random starts) and take
``guess_steps`` Adam steps through the frozen teacher toward a target class (balanced, or drawn
from ``class_prior``):
``min_z CE(T(x), y) + lambda_norm * R(z)`` (with ``token_flips``, discrete steps instead: word
pieces swapped for the ones that lower that loss most).
Stage 2 (adversarial): ``adv_steps`` more steps that also raise the student's self-supervised loss:
``min_z CE(T(x), y) + lambda_norm * R(z) - lambda_adv * L_ss(S, x)`` (optionally also
``- lambda_disagree * KL(T(x) || S(x))``). The student and the pretext head lower ``L_ss`` (and the
KD terms) in their own step (``student_loss``), so the two play against each other.
With ``start_text`` "general" the starts are lines of general English instead of random word pieces
(real text, though not the task's: the run is then not data-free). With ``restart`` a share of
each batch starts instead from pooled samples, guessed toward a class the teacher does not give them.
With ``lexicon`` a share of each random start's word pieces comes from its target class's lexicon
(the word pieces the teacher, reading each alone, gives that class most). With ``hold`` a share of
them are held: real word pieces (from the run's prior, if any) that no step moves.
Options of the steps: a diversity term (``lambda_diverse``), soft tokens (``soft_tokens``: each
pseudo token a mixture of real word-piece vectors, moved by mirror steps on its logits) and robust
guessing (``guess_drop``: the steps' teacher passes miss random pseudo tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from ..config import parse_class_prior
from ..errors import UserError
from ..label_balance import prior_from_bias
from ..losses import kd_per_sample
from ..selfsup import build_task
from .base import PseudoBatch, Synthesizer


@dataclass
class Crafting:
    """A batch of pseudo tokens being optimised: ``z`` (B, max_len, d) and its frame."""

    z: torch.Tensor
    opt: torch.optim.Optimizer
    base: torch.Tensor
    slot: torch.Tensor
    attn: torch.Tensor
    targets: torch.Tensor
    goal: torch.Tensor  # what the guessing cross-entropy aims at: ``targets``, or (B, C) soft targets
    logits: torch.Tensor | None = None  # soft tokens: (B, max_len, V_ordinary), z = softmax(logits) @ E
    held: torch.Tensor | None = None  # hold > 0: (B, max_len) True where a word piece stays as drawn


LEXICON_SIZE = 256  # word pieces in each class's lexicon (lexicon > 0)


class ASDFD(Synthesizer):
    """Plug & Play Embedding Guessing + adversarial self-supervision (the paper's method)."""

    name = "as-dfd"
    default_mix = 0.5  # chosen on the validation splits (docs/RESULTS.md)

    @classmethod
    def default_replay_size(cls, cfg) -> int:
        """Only the newest crafted batch (chosen on the validation splits, docs/RESULTS.md), with its
        guessing trajectory when ``trajectory`` pools that too."""
        return cfg.batch_size * (cfg.guess_steps + cfg.adv_steps + 1 if cfg.trajectory else 1)

    def __init__(self, teacher, space, cfg, device, generator):
        super().__init__(teacher, space, cfg, device, generator)
        # prior_scope pretext: the replaced-token task's real word pieces follow the prior, so the
        # adversarial step makes pseudo tokens harder to tell from the task's common word pieces
        replacements = self.token_prior if cfg.prior_shapes("pretext") else None
        self.task = build_task(cfg.ss_task, teacher.config.hidden_size, space, cfg.ss_ratio, replacements)
        if self.task is not None:
            self.task.to(device)
        # the adversarial steps raise the pretext loss only when there is one and it has weight
        self.ss_adversary = self.task is not None and cfg.lambda_adv > 0
        self.norm_lo, self.norm_hi = space.norm_range()
        self.emb_std = float(space.embeddings[space.ordinary].std())
        # the word pieces discrete guessing (token_flips) swaps in and soft tokens mix: every ordinary one
        self.vocab_table = space.embeddings[space.ordinary].to(device) if cfg.token_flips > 0 or cfg.soft_tokens > 0 else None
        if cfg.soft_tokens > 0:  # each word piece's row in vocab_table, for the start logits
            self.vocab_row = torch.zeros(space.vocab_size, dtype=torch.long)
            self.vocab_row[space.ordinary] = torch.arange(len(space.ordinary))
        # start_text "general": starts are lines of general English, so the run reads real text
        self.bank = self.general_bank if cfg.start_text == "general" else None
        self.reads_general_text = self.reads_general_text or self.bank is not None
        self.lexicons = self.class_lexicons() if cfg.lexicon > 0 else None  # (C, LEXICON_SIZE) word-piece ids
        self.class_prior = self.target_prior()  # None: balanced targets

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.task.parameters()) if self.task is not None else []

    def modules(self) -> dict:
        return {"task": self.task} if self.task is not None else {}

    def norm_penalty(self, z: torch.Tensor, slot_z: torch.Tensor) -> torch.Tensor:
        """Squared distance of each token vector's norm outside the real embeddings' norm range."""
        norms = z.norm(dim=-1)
        out = F.relu(norms - self.norm_hi) ** 2 + F.relu(self.norm_lo - norms) ** 2
        return (out * slot_z).sum() / slot_z.sum().clamp_min(1) / self.norm_hi**2

    def student_loss(self, student: PreTrainedModel, batch: PseudoBatch) -> torch.Tensor | None:
        """The pretext loss on a quarter of the batch (samples are in random order): the head and the
        student need far fewer examples for it than the KD terms, and it costs a full student pass."""
        if self.task is None or self.cfg.lambda_ss == 0:
            return None
        sub = batch.index(torch.arange(min(len(batch), max(4, len(batch) // 4))))
        return self.cfg.lambda_ss * self.task.loss(student, sub.embeds, sub.slot, sub.attention_mask, self.generator)

    def start(self, n: int) -> Crafting:
        """Stage 0: random word-piece embeddings (of ``init_candidates`` random starts per sample, the
        one ``init_pick`` chooses; plus optional noise) toward targets from ``draw_targets``."""
        cfg = self.cfg
        k = n * cfg.init_candidates
        candidates = self.random_frame(k, shaped=cfg.prior_shapes("starts")) if self.bank is None else self.text_frame(k)
        targets = self.draw_targets(n)
        if self.lexicons is not None:  # candidates i*k .. i*k+k-1 are sample i's
            candidates = self.lexicon_words(candidates, targets.repeat_interleave(cfg.init_candidates))
        if cfg.hold > 0:
            candidates = self.held_word_pieces(candidates)
        ids, base, slot, attn, *held = self.best_starts(candidates, targets)
        held = held[0] if held else None
        z = self.token_embeddings(ids)
        if cfg.init_noise > 0:
            noise = cfg.init_noise * self.emb_std * torch.randn(z.shape, generator=self.generator).to(z)
            z = z + (noise if held is None else noise * (~held)[..., None])
        n_re = round(cfg.restart * n) if self.pool.size else 0
        if n_re > 0:  # the first n_re samples start from pooled ones instead (targets are in random order)
            old = self.restarts(targets[:n_re])
            z, base, slot, attn = (torch.cat([o, t[n_re:]]) for o, t in zip(old, (z, base, slot, attn), strict=True))
            if held is not None:  # a restarted sample's tokens all move
                held = torch.cat([torch.zeros_like(held[:n_re]), held[n_re:]])
        z = z.detach().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=cfg.guess_lr)
        # class ids unless targets are soft: the same numbers as with one-hot targets, for less work
        goal = self.target_distribution(targets) if cfg.soft_targets > 0 else targets
        c = Crafting(z, opt, base, slot, attn, targets, goal, held=held)
        if cfg.soft_tokens > 0:
            c.logits = self.start_logits(ids)
            self.mix_tokens(c)
        return c

    def target_prior(self) -> torch.Tensor | None:
        """The class frequencies ``class_prior`` names, or None for balanced targets."""
        if self.cfg.class_prior == "uniform":
            return None
        if self.cfg.class_prior == "bias":
            return prior_from_bias(self.teacher)
        prior = parse_class_prior(self.cfg.class_prior)
        if len(prior) != self.num_labels:
            raise UserError(f"class_prior has {len(prior)} frequencies and the teacher {self.num_labels} classes; pass one per class")
        return torch.tensor(prior)

    def draw_targets(self, n: int) -> torch.Tensor:
        """``n`` target classes: balanced (every class ``n / C`` times, in random order), or drawn
        from ``class_prior``'s frequencies."""
        if self.class_prior is None:
            return (torch.randperm(n, generator=self.generator) % self.num_labels).to(self.device)
        return torch.multinomial(self.class_prior, n, replacement=True, generator=self.generator).to(self.device)

    @torch.no_grad()
    def class_lexicons(self) -> torch.Tensor:
        """(C, LEXICON_SIZE) ordinary word-piece ids: for each class, the word pieces ``w`` whose
        one-piece input ``[CLS] w [SEP]`` the teacher gives that class the highest log-probability.
        One teacher pass over the vocabulary, no text: a cheap, data-free reading of which words
        carry each class ("who" for a person, "awful" for a bad review)."""
        ordinary = self.space.ordinary
        scores = []
        for chunk in ordinary.split(1024):
            base, slot, attn = self.space.frame(torch.ones(len(chunk), dtype=torch.long), 1)
            x = self.space.compose(self.token_embeddings(chunk[:, None]), base.to(self.device), slot.to(self.device))
            scores.append(self.teacher_logits(x, attn.to(self.device)).log_softmax(-1).cpu())
        top = torch.cat(scores).topk(min(LEXICON_SIZE, len(ordinary)), dim=0).indices  # (M, C)
        return ordinary[top.T]

    def lexicon_words(self, candidates: tuple[torch.Tensor, ...], targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Random frames (ids, base, slot, attn) with each word piece, with probability ``lexicon``,
        replaced by a uniform draw from its row's target class lexicon. The rest stays random, so a
        start holds a few words the teacher ties to the class among unrelated ones, as real text
        does, and the guessing steps begin from real words of the class rather than only
        from off-vocabulary moves."""
        ids, base, slot, attn = candidates
        return self.swap_in(ids, self.lexicons[targets.cpu()], self.cfg.lexicon), base, slot, attn

    def held_word_pieces(self, candidates: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Random frames (ids, base, slot, attn) plus a (n, max_len) mask of held positions: each
        pseudo token, with probability ``hold``, becomes a fresh random word piece (from the run's
        prior when ``prior_scope`` is all or held) that the steps will not move. Real text is mostly
        common words around a few that decide its class; held word pieces are that context, and the
        guessing writes the class's evidence around them."""
        ids, base, slot, attn = candidates
        n, width = ids.shape
        held = (torch.rand(n, width, generator=self.generator) < self.cfg.hold).to(self.device) & slot[:, 1 : width + 1]
        drawn = self.random_ids(n, shaped=self.cfg.prior_shapes("held")).to(self.device)
        return torch.where(held, drawn, ids), base, slot, attn, held

    def stats(self) -> dict:
        stats = super().stats()
        if self.lexicons is None:
            return stats
        tok, id2label = self.space.tokenizer, self.teacher.config.id2label
        head = {id2label[c]: tok.convert_ids_to_tokens(row[:12].tolist()) for c, row in enumerate(self.lexicons)}
        return {**stats, "lexicon_head": head}  # each class's 12 strongest word pieces, for the report

    @torch.no_grad()
    def restarts(self, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Counterfactual starts (``restart``): for each target, a pool sample that the teacher puts
        in another class (``other_class_draws``), as (z, base, slot, attn). A few guessing steps
        then carry a sample that holds one class's evidence just across the boundary to another
        class: the samples where real text's cues disagree (a review with kind words that is still
        "rotten"), which fresh starts seldom reach."""
        old = self.other_class_draws(targets)
        z = old.embeds[:, 1 : self.cfg.max_len + 1].clone()
        return z, old.embeds, old.slot, old.attention_mask

    def text_frame(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like ``random_frame``, from ``n`` random lines of general text: the pseudo tokens start as
        the line's word pieces (cut to ``max_len``), in the frame ``[CLS] line [SEP] pad..``."""
        full, attn, slot = self.bank.draw(n, self.generator, self.cfg.max_len + 2)
        ids = full[:, 1 : self.cfg.max_len + 1]  # where z sits; its [SEP] and padding rows stay outside the slot
        return ids.to(self.device), self.token_embeddings(full), slot.to(self.device), attn.to(self.device)

    def start_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Soft-token logits that put 0.99 of each position's mass on its start word piece and
        spread the rest evenly over the others (init_noise does not apply to soft tokens)."""
        V = len(self.space.ordinary)
        gap = torch.log(torch.tensor(99.0 * (V - 1)))
        return F.one_hot(self.vocab_row[ids.cpu()], V).float().mul_(gap).to(self.device)

    @torch.no_grad()
    def mix_tokens(self, c: Crafting) -> None:
        """Set ``z`` to the soft tokens' mixtures ``softmax(logits) @ E`` (a fresh leaf for the next step)."""
        c.z = (c.logits.softmax(-1) @ self.vocab_table).requires_grad_(True)

    def target_distribution(self, targets: torch.Tensor) -> torch.Tensor:
        """One-hot targets, or (``soft_targets`` > 0) each smoothed toward uniform by its own random
        share: a soft target stops the guessing short of the teacher's confident region, so the
        samples spread between the decision boundary and the class."""
        dist = F.one_hot(targets, self.num_labels).float()
        if self.cfg.soft_targets > 0:
            s = self.cfg.soft_targets * torch.rand(len(targets), 1, generator=self.generator).to(dist)
            dist = (1 - s) * dist + s / self.num_labels
        return dist

    @torch.no_grad()  # not inference_mode: the picked frames go on into the guessing steps' graph
    def best_starts(self, candidates: tuple[torch.Tensor, ...], targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One random frame (ids, base, slot, attn) per target, from ``k`` candidates per sample
        (rows ``i*k .. i*k+k-1``). ``init_pick`` "target": the one the teacher already gives the
        highest probability of the target; a start that leans toward its class needs shorter moves,
        so the guessed sample stays nearer the random text it began as. "boundary": the one with the
        highest teacher entropy; every class then starts from where the teacher hesitates, so no
        class is reached by a much longer move than the others (random text leans to some classes)."""
        n = len(targets)
        k = candidates[0].shape[0] // n
        if k == 1:
            return candidates
        ids, base, slot, attn = candidates[:4]  # a fifth, the held mask (hold > 0), is picked alike
        probs = self.teacher_logits(self.space.compose(self.token_embeddings(ids), base, slot), attn).softmax(-1).view(n, k, -1)
        if self.cfg.init_pick == "boundary":
            score = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        else:
            score = probs.gather(2, targets.view(n, 1, 1).expand(n, k, 1)).squeeze(2)
        pick = torch.arange(n, device=self.device) * k + score.argmax(1)
        return tuple(t[pick].clone() for t in candidates)

    def step(self, c: Crafting, student: PreTrainedModel, adversarial: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on ``z``: guessing, plus the adversarial term when asked.

        Returns the sample the step started from and the teacher's logits on it (detached)."""
        cfg = self.cfg
        x = self.space.compose(c.z, c.base, c.slot)
        seen = self.dropped_view(c) if cfg.guess_drop > 0 else c.attn  # what the teacher reads in this step
        if cfg.lambda_diverse > 0:
            with self.autocast():
                out = self.teacher(inputs_embeds=x, attention_mask=seen, output_hidden_states=True)
            logits, features = out.logits.float(), out.hidden_states[-1][:, 0].float()
        else:
            logits = self.teacher_logits(x, seen)
        ce = F.cross_entropy(logits, c.goal, reduction="none")
        with torch.no_grad():
            p_target = logits.softmax(-1).gather(1, c.targets[:, None]).squeeze(1)
            active = (p_target < cfg.confidence_stop).float()
        slot_z = c.slot[:, 1 : cfg.max_len + 1].float()
        loss = (ce * active).mean() + cfg.lambda_norm * self.norm_penalty(c.z, slot_z)
        if cfg.lambda_diverse > 0:
            loss = loss + cfg.lambda_diverse * self.similarity(features, c.targets)
        if adversarial and self.ss_adversary:
            with self.autocast():
                loss = loss - cfg.lambda_adv * self.task.loss(student, x, c.slot, c.attn, self.generator)
        if adversarial and cfg.lambda_disagree > 0:
            with self.autocast():
                s_logits = student(inputs_embeds=x, attention_mask=c.attn).logits
            loss = loss - cfg.lambda_disagree * (kd_per_sample(s_logits, logits, cfg.temperature) * active).mean()
        (grad,) = torch.autograd.grad(loss, [c.z])
        if c.held is not None:  # held word pieces stay where they are: Adam moves no entry whose gradients are all zero
            grad = grad * (~c.held)[..., None]
        if cfg.token_flips > 0:
            self.flip(c, grad, active.bool())
        elif cfg.soft_tokens > 0:
            self.mirror_step(c, grad * active[:, None, None])
        else:
            c.z.grad = grad * active[:, None, None]
            c.opt.step()
        return x.detach(), logits.detach()

    def dropped_view(self, c: Crafting) -> torch.Tensor:
        """The attention mask with each pseudo token hidden with probability ``guess_drop`` ([CLS],
        [SEP] and padding as they are). Like the random shifts of image inversion, the noise keeps
        a sample from reaching its class through one fragile token: only evidence spread over the
        sample survives it."""
        keep = torch.rand(c.attn.shape, generator=self.generator).to(self.device) >= self.cfg.guess_drop
        return c.attn * (keep | ~c.slot).to(c.attn.dtype)

    @staticmethod
    def similarity(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cosine similarity over pairs of distinct samples with the same target (0 if none)."""
        f = F.normalize(features, dim=-1)
        same = (targets[:, None] == targets[None, :]) & ~torch.eye(len(targets), dtype=torch.bool, device=targets.device)
        return ((f @ f.T) * same).sum() / same.sum().clamp_min(1)

    @torch.no_grad()
    def mirror_step(self, c: Crafting, grad: torch.Tensor) -> None:
        """Soft tokens: an exponentiated-gradient step on each position's mixture weights,
        ``logits_v -= soft_tokens * E_v . g / ||g||``. Mass moves to the word pieces whose vectors
        point down the loss, so every pseudo token stays a convex mixture of real word pieces."""
        direction = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        c.logits -= self.cfg.soft_tokens * (direction @ self.vocab_table.T.to(direction))
        self.mix_tokens(c)

    @torch.no_grad()
    def flip(self, c: Crafting, grad: torch.Tensor, active: torch.Tensor) -> None:
        """Discrete step: at ``token_flips`` random pseudo-token positions of each active sample, put
        the word piece whose swap lowers the loss most to first order, ``(e_v - z_p) . grad_p``
        (HotFlip). Unlike Adam steps on ``z``, the sample stays a sequence of real word pieces, and
        one swap can bring in a word that carries the target class."""
        slot_z = c.slot[:, 1 : self.cfg.max_len + 1].float().cpu()
        m = min(self.cfg.token_flips, int(slot_z.sum(1).min()))
        pos = torch.multinomial(slot_z, m, generator=self.generator).to(self.device)  # (B, m), distinct
        rows = torch.arange(len(pos), device=self.device)[:, None]
        g, z_p = grad[rows, pos], c.z[rows, pos]  # (B, m, d)
        E = self.vocab_table.to(grad)
        gain = g @ E.T - (g * z_p).sum(-1, keepdim=True)  # (B, m, V) first-order change of the loss
        new = E[gain.argmin(-1)]
        c.z[rows, pos] = torch.where(active[:, None, None], new, z_p)

    def craft(self, n: int, student: PreTrainedModel) -> PseudoBatch:
        cfg = self.cfg
        c = self.start(n)
        n_adv = cfg.adv_steps if (self.ss_adversary or cfg.lambda_disagree > 0) else 0
        was_training = student.training
        student.eval()
        path = [self.step(c, student, adversarial=k >= cfg.guess_steps) for k in range(cfg.guess_steps + n_adv)]
        student.train(was_training)
        with torch.inference_mode():
            z = c.z.detach()
            if cfg.project:  # back on the vocabulary: the student reads real word pieces, as at test time
                z = self.token_embeddings(self.space.nearest(z))
            x = self.space.compose(z, c.base, c.slot)
            logits = self.teacher_logits(x, c.attn)
        final = PseudoBatch(x.clone(), c.attn, c.slot, c.targets, logits.clone())
        if not cfg.trajectory or not path:
            return final
        # the guessing path runs from random text to teacher-confident samples, crossing decision
        # boundaries on the way; its intermediate points cost no extra teacher passes
        steps = [PseudoBatch(px, c.attn, c.slot, c.targets, pl) for px, pl in path]
        return PseudoBatch.concat([*steps, final])
