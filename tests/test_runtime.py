"""Devices, precision and threads."""

from __future__ import annotations

import torch


def test_auto_precision_resolves_to_what_the_hardware_has(monkeypatch):
    import asdfd.runtime as rt
    from asdfd.config import DistillConfig

    monkeypatch.setattr(rt, "native_bf16", lambda device: True)
    assert DistillConfig(device="cpu").validate().precision == "bf16"
    monkeypatch.setattr(rt, "native_bf16", lambda device: False)
    cfg = DistillConfig(device="cpu").validate()
    assert cfg.precision == "fp32" and cfg.to_dict()["precision"] == "fp32"  # saved configs hold what ran
    assert DistillConfig(device="cpu", precision="bf16").validate().precision == "bf16"


def test_threads_rise_to_every_core_unless_the_caller_chose_a_count(monkeypatch):
    import asdfd.runtime as rt

    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # records the variable's state, so the test leaves it as it was
    monkeypatch.delenv("OMP_NUM_THREADS")
    default = rt._TORCH_DEFAULT_THREADS
    monkeypatch.setattr(rt.os, "sched_getaffinity", lambda pid: set(range(default + 1)))  # one core more than torch counts
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(default)  # nobody chose: torch's own count
        rt.set_threads()
        assert torch.get_num_threads() == default + 1
        chosen = default + 2
        torch.set_num_threads(chosen)  # a library user's own torch.set_num_threads()
        rt.set_threads()
        assert torch.get_num_threads() == chosen
        torch.set_num_threads(default)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        rt.set_threads()
        assert torch.get_num_threads() == default
    finally:
        torch.set_num_threads(before)
