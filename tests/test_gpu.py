"""The CUDA code path: every method and every sample-crafting option distils on a GPU with tensors
on the right devices (token ids are looked up in the embedding table, which stays on the CPU). Skipped
on machines without CUDA; run `make test` on a GPU machine to include it."""

from __future__ import annotations

import pytest
import torch

from .conftest import tiny_distill_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    dict(method="as-dfd"),
    dict(method="as-dfd", precision="bf16"),
    dict(method="as-dfd", init_candidates=1, token_flips=1, trajectory=True),
    dict(method="as-dfd", lambda_attn=0.5, lambda_jac=0.1, fresh_random=0.25, zipf=1.0, soft_targets=0.3),
    dict(method="as-dfd", project=True, ss_task="shuffle", replay_hardness=2, ema=0.9, lambda_disagree=1.0),
    dict(method="as-dfd", soft_tokens=2.0, lambda_diverse=1.0, guess_drop=0.2),
    dict(method="as-dfd", start_text="general", bridge=0.25, mix_kind="span", fresh_random=0.25, fresh_text="general"),
    dict(method="as-dfd", mix_kind="interpolate", mix_partner="other-class", kd_objective="mse", crop=0.25),
    dict(method="random-text"),
    dict(method="general-text"),
    dict(method="modified-zskt"),
    dict(method="modified-dafl"),
    dict(method="real-kd"),
    dict(method="finetune"),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_distils_on_cuda(tiny_teacher_dir, tiny_csv, kw):
    from asdfd.distiller import distill

    data = str(tiny_csv) if kw["method"] in ("real-kd", "finetune") else ""
    cfg = tiny_distill_config(**{"device": "cuda", "data": data, **kw})
    result = distill(tiny_teacher_dir, None, cfg)
    assert next(result.student.parameters()).device.type == "cuda"
    assert result.report["device"].startswith("cuda") and result.report["skipped_steps"] == 0


def test_a_benchmark_cell_names_its_gpu():
    from bench.run import machine_info

    assert machine_info("cuda")["gpu"] == torch.cuda.get_device_name()
