"""The speed benchmark's measurements, run on a tiny random teacher (numbers are meaningless here;
what is checked is that each section measures what it says)."""

from __future__ import annotations

from bench.speed import distill_child, inference, speed_table, synthesis_at, training_at


def test_synthesis_and_training_sections(tiny_teacher_dir):
    syn = synthesis_at(tiny_teacher_dir, "fp32", reps=1)
    assert syn["teacher_passes"] == 5 + 1 and syn["tokens"] == 24 + 2  # package defaults: K=5, 1 adversarial step
    assert syn["start_candidates"] == 4  # and the start pass over 4 random starts per sample
    assert syn["floor_s"] > 0 and abs(syn["ratio"] - syn["craft_s"] / syn["floor_s"]) < 0.05 * syn["ratio"]
    train = training_at(tiny_teacher_dir, "bf16", reps=1)
    assert train["teacher_train_step_s"] > 0 and train["student_distill_step_s"] > 0


def test_inference_section_compares_teacher_and_student(tiny_teacher_dir):
    out = inference(tiny_teacher_dir, reps=1)
    assert out["student"]["parameters"] < out["teacher"]["parameters"]
    assert out["student"]["file_mb"] <= out["teacher"]["file_mb"]
    for key in ("b1_fp32", "b32_fp32", "b1_bf16", "b32_bf16"):
        assert out["teacher"][key]["throughput_per_s"] > 0
    assert out["student_speedup_b32_fp32"] > 0


def test_distill_child_reports_its_own_peak_memory(tiny_teacher_dir):
    import torch

    # AS-DFD, not the default lm-text: what is checked is the measurement, and a child running lm-text
    # peaks at 1.3-1.6 GB even here (the packaged LM writing ahead), which would blur the bound below
    settings = {"method": "as-dfd", "student": 2, "student_steps": 2, "batch_size": 4, "pseudo_samples": 8, "max_len": 8, "heldout_samples": 0}
    ballast = torch.ones(1536 * 2**20 // 4)  # 1.5 GB resident in the parent at fork time
    run = distill_child(tiny_teacher_dir, settings)
    del ballast
    # a Python process with torch loaded, and none of the parent's memory (rusage would count it)
    assert 50 < run["peak_rss_mb"] < 1200, run["peak_rss_mb"]
    assert set(run["phase_s"]) >= {"synthesis", "student"} and run["process_wall_s"] >= run["distill_wall_s"]
    data = {
        "machine": {"distill": {"cpu": "x", "cores_usable": 2, "torch_threads": 2, "torch": "t"}},
        "distill": {"scale1x": run},
        "synthesis": {"fp32": synthesis_at(tiny_teacher_dir, "fp32", reps=1)},
    }
    table = speed_table(data)
    assert "| scale1x |" in table and "| fp32 |" in table


def test_parallel_and_onnx_sections_render():
    data = {
        "parallel": {
            "settings": {"one": {"student_steps": 75}, "two": {"student_steps": 75, "num_processes": 2}},
            "process_wall_s": {"one": [60.0, 62.0], "two": [40.0, 41.0]},
            "median_s": {"one": 61.0, "two": 40.5},
            "speedup": 1.506,
        },
        "onnx": {
            "student": "s",
            "export": {"opset": 20, "max_abs_diff": 2e-6, "files": {"model.onnx": 2**21, "model.int8.onnx": 2**20}},
            **{k: {"test_accuracy": 0.9, "b1": {"latency_ms": 3.0}, "b32": {"throughput_per_s": 500.0}} for k in ("pytorch", "onnx", "onnx_int8")},
        },
    }
    table = speed_table(data)
    assert "Speed-up of two processes: 1.51x" in table
    assert "| onnx_int8 | 1.0 | 90.00 | 3.0 | 500.0 |" in table and "| onnx | 2.0 |" in table


def test_lm_section_times_lm_text_against_as_dfd(tiny_teacher_dir, tiny_lm):
    from bench.speed import lm_at

    out = lm_at(tiny_teacher_dir, "fp32", reps=1)
    assert out["batch"] == 32 and out["batches_per_write"] == 4 and out["as_dfd_craft_s"] > 0 and out["lm_text_craft_s"] > 0
    assert abs(out["ratio"] - out["lm_text_craft_s"] / out["as_dfd_craft_s"]) < 0.05 * out["ratio"] + 0.01
    assert out["lm_write_batch_at_a_time_s"] > 0 and "| fp32 | " in speed_table({"lm": {"fp32": out}})


def test_profile_section_splits_a_crafted_batch_and_a_student_step(tiny_teacher_dir):
    from bench.speed import profile_run

    out = profile_run(tiny_teacher_dir, reps=1)
    # the rest of each part is what no label covers: never negative (labels counted twice would make it so)
    assert 0 <= out["craft"]["labelling pass and the rest"]["share"] < 1
    assert 0 <= out["student_step"]["pool draw, mixtures and the rest"]["share"] < 1
    assert out["craft"]["guessing steps"]["s"] > 0 and out["craft"]["adversarial step"]["s"] > 0 and out["craft"]["starts"]["s"] > 0
    assert out["student_step"]["teacher pass"]["s"] > 0 and out["student_step"]["self-supervised loss"]["s"] > 0
    assert out["top_ops"] and all(o["op"].startswith("aten::") for o in out["top_ops"])
    assert "| guessing steps |" in speed_table({"profile": out})


def test_isa_probe_sees_the_caps_take(monkeypatch):
    """The caps the AVX2 run sets are checked from torch's and oneDNN's own reports: capped lower
    still (every x86 CPU has SSE4.1), both say so."""
    import platform

    import pytest

    from bench.speed import isa_probe

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 ISA caps")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    found = isa_probe.__wrapped__()
    assert found["aten"] == "DEFAULT" and "SSE4.1" in found["onednn"]
    assert found["caps"] == {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def test_bucket_section_times_each_pass_whole_and_grouped(tiny_teacher_dir):
    from bench.speed import bucket_runs

    out = bucket_runs(tiny_teacher_dir, reps=1)
    for name in ("guessing_step", "start_pass", "student_step"):
        assert set(out[name]) == {"1", "2", "3", "4"} and out[name]["1"]["vs_whole"] == 1.0
    assert "| start pass |" in speed_table({"buckets": out})
