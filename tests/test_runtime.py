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


def test_bf16_is_native_only_where_the_kernels_may_use_it(monkeypatch):
    """An AVX512-BF16 CPU run as an AVX2-only one (the speed bench's AVX2 run) does not pick bf16."""
    import asdfd.runtime as rt

    cpu = torch.device("cpu")
    monkeypatch.setattr(rt.Path, "read_text", lambda self, *a, **k: "flags\t: fpu avx2 avx512f avx512_bf16\n")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert rt.native_bf16(cpu)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not rt.native_bf16(cpu)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert rt.native_bf16(cpu)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert not rt.native_bf16(cpu)
    monkeypatch.setattr(rt.Path, "read_text", lambda self, *a, **k: "flags\t: fpu avx2\n")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert not rt.native_bf16(cpu)


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
