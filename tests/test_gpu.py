"""The CUDA code path: every method distils on a GPU with tensors
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
    dict(method="as-dfd", init_candidates=1, ss_task="none", mix=0.0),
    dict(method="random-text"),
    dict(method="general-text"),
    dict(method="lm-text"),
    dict(method="modified-zskt"),
    dict(method="modified-dafl"),
    dict(method="real-kd"),
    dict(method="finetune"),
    dict(method="as-dfd", student="layers=2,hidden=16,heads=2,intermediate=32"),  # through the input bridge
    dict(method="as-dfd", student="layers=2,hidden=16,heads=2,intermediate=32", precision="bf16"),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_distils_on_cuda(tiny_teacher_dir, tiny_csv, tiny_lm, kw):
    from asdfd.distiller import distill

    data = str(tiny_csv) if kw["method"] in ("real-kd", "finetune") else ""
    cfg = tiny_distill_config(**{"device": "cuda", "data": data, **kw})
    result = distill(tiny_teacher_dir, None, cfg)
    assert next(result.student.parameters()).device.type == "cuda"
    assert result.report["device"].startswith("cuda") and result.report["skipped_steps"] == 0


def test_a_benchmark_cell_names_its_gpu():
    from bench.run import machine_info

    assert machine_info("cuda")["gpu"] == torch.cuda.get_device_name()
