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

    settings = {"student": 2, "student_steps": 2, "batch_size": 4, "pseudo_samples": 8, "max_len": 8, "heldout_samples": 0}
    ballast = torch.ones(1536 * 2**20 // 4)  # 1.5 GB resident in the parent at fork time
    run = distill_child(tiny_teacher_dir, settings)
    del ballast
    # a Python process with torch loaded, and none of the parent's memory (rusage would count it)
    assert 50 < run["peak_rss_mb"] < 1500, run["peak_rss_mb"]
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
    assert out["batch"] == 32 and out["as_dfd_craft_s"] > 0 and out["lm_text_craft_s"] > 0
    assert abs(out["ratio"] - out["lm_text_craft_s"] / out["as_dfd_craft_s"]) < 0.05 * out["ratio"] + 0.01
    assert "| fp32 | " in speed_table({"lm": {"fp32": out}})
