"""The benchmark's bookkeeping (not the benchmark itself): variant groups and the summary."""

from __future__ import annotations

import json

import pytest
import torch

from asdfd.errors import UserError
from asdfd.runtime import set_threads
from bench.report import summarize
from bench.run import _worker_threads, expand, load_variants, parse_set


def test_groups_expand_and_unknown_names_are_refused():
    variants, groups = load_variants()
    assert {"none", "random-text", "modified-zskt", "modified-dafl", "as-dfd", "lm-text", "real-kd", "finetune"} == set(groups["methods"])
    assert expand("methods,as-dfd", variants, groups) == groups["methods"]
    assert expand("as-dfd-k0-nb", variants, groups) == ["as-dfd-k0-nb"]
    with pytest.raises(SystemExit, match="unknown variant"):
        expand("as-dfd-k7", variants, groups)


def _cell(dataset, variant, seed, test, teacher=0.9):
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "validation": {"accuracy": test},
        "test": {"accuracy": test},
        "teacher_test_accuracy": teacher,
        "curve": [{"step": 50, "test_accuracy": test - 0.1}, {"step": 100, "test_accuracy": test}],
        "phase_time_s": {"load": 1.0, "synthesis": 10.0 + seed, "student": 20.0, "heldout": 1.0},
    }


def test_summary_table_percentages_and_plots(tmp_path):
    cells = [_cell(d, v, s, acc + 0.01 * s) for d in ("trec", "mr") for v, acc in (("as-dfd", 0.80), ("real-kd", 0.85)) for s in (0, 1, 2)]
    for c in cells:
        path = tmp_path / "runs" / c["dataset"] / c["variant"] / f"seed{c['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(c))
    rows = summarize(tmp_path)
    row = next(r for r in rows if r["dataset"] == "trec" and r["variant"] == "as-dfd")
    assert row["seeds"] == [0, 1, 2] and row["test_mean"] == pytest.approx(81.0) and row["test_std"] == pytest.approx(1.0)
    assert row["pct_real_kd"] == pytest.approx(100 * 81 / 86) and row["pct_teacher"] == pytest.approx(90.0)
    assert row["synthesis_s"] == 11.0
    md = (tmp_path / "summary.md").read_text()
    assert "| trec | as-dfd | 3 | 81.00 ± 1.00 |" in md and "| average | as-dfd | 3 | 81.00 |" in md
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "curves.png").stat().st_size > 0


def test_bench_options_come_from_a_config_file(tmp_path, monkeypatch):
    import bench.run as br

    seen = {}
    monkeypatch.setattr(br, "summarize", lambda results: seen.setdefault("results", results))
    monkeypatch.setattr(br, "run_cell", lambda *a, **k: pytest.fail("no cell should run"))
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"summary: true\nresults: {tmp_path}\n")
    br.main(["--config", str(cfg)])
    assert str(seen["results"]) == str(tmp_path)
    cfg.write_text("seedz: '0'\n")
    with pytest.raises(SystemExit, match="unknown key 'seedz'"):
        br.main(["--config", str(cfg)])


def test_teacher_base_reaches_the_teachers_config(tmp_path, monkeypatch):
    """``--teacher-base`` fine-tunes the teachers from another encoder (a separate cache entry)."""
    import bench.run as br

    seen = []

    def fake_teacher(dataset, cfg):
        seen.append(cfg)
        raise UserError("stop here")

    monkeypatch.setattr(br, "cached_teacher", fake_teacher)
    cases = [([], ""), (["--teacher-base", "minilm"], ""), (["--teacher-base", "mpnet"], "mpnet"), (["--teacher-base", "mpnet", "--quick"], "mpnet")]
    for argv, base in cases:  # minilm is the demo's teacher, under the demo's cache key
        with pytest.raises(SystemExit, match="stop here"):
            br.main(["--variants", "none", "--datasets", "trec", "--seeds", "0", "--results", str(tmp_path), *argv])
        assert seen[-1].base == base and seen[-1].precision == "fp32"  # a table's teachers must not depend on the machine
    assert seen[-1].epochs == 1  # the quick profile's one-epoch teacher keeps its base
    with pytest.raises(SystemExit, match="stop here"):
        br.main(["--variants", "none", "--datasets", "trec", "--seeds", "0", "--results", str(tmp_path), "--teacher-precision", "bf16"])
    assert seen[-1].precision == "bf16"


def test_set_overrides_are_typed_like_the_options():
    assert parse_set(["lr=1e-4", "mix=0.25", "student-layers=[0,2,5]", "ss_task=none"]) == {  # the option's older name
        "lr": 1e-4,
        "mix": 0.25,
        "student": [0, 2, 5],
        "ss_task": "none",
    }
    assert isinstance(parse_set(["lr=1e-4"])["lr"], float)
    for bad, msg in ((["lr=fast"], "'lr' must be a number"), (["steps=3"], "DistillConfig option"), (["lr"], "key=value")):
        with pytest.raises(UserError, match=msg):
            parse_set(bad)


def test_summary_of_a_sweep_without_the_papers_methods_still_plots(tmp_path):
    for variant, acc in (("knob-a", 0.80), ("as-dfd+lr", 0.82)):
        path = tmp_path / "runs" / "trec" / variant / "seed0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_cell("trec", variant, 0, acc)))
    rows = summarize(tmp_path)
    assert {r["variant"] for r in rows} == {"knob-a", "as-dfd+lr"}
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "curves.png").stat().st_size > 0


# options only AS-DFD reads: other methods' cells may hold any value of them
AS_DFD_ONLY = ("init_candidates",)


def test_committed_cells_match_their_variants_under_the_current_defaults():
    """Every committed cell's resolved config is what its variant resolves to now, so a changed
    package default cannot leave cells under a name that no longer describes them (pin the old
    value in bench/variants.yaml, or move the cells to a name that does)."""
    from pathlib import Path

    from bench.run import QUICK, cell_config, folder_setting

    variants, _ = load_variants()
    cells = sorted((Path(__file__).parents[1] / "bench" / "results").rglob("seed*.json"))
    assert len(cells) > 100
    stale = []
    for path in cells:
        cell = json.loads(path.read_text())
        if cell["config"] is None:  # the untrained student
            continue
        extra = {**(QUICK["overrides"] if "quick" in path.parts else {}), **folder_setting(path.parents[3])}
        now = cell_config(cell["dataset"], variants[cell["variant"]], cell["seed"], extra).to_dict()
        inert = set(AS_DFD_ONLY) if now["method"] != "as-dfd" else set()
        diff = {k: (v, now[k]) for k, v in cell["config"].items() if k in now and k not in inert and v != now[k]}
        if diff:
            stale.append(f"{path}: {diff}")
    assert not stale, "\n".join(stale)


def test_a_results_folder_keeps_one_setting(tmp_path):
    from bench.run import check_same_setting, folder_setting

    check_same_setting(tmp_path, {})  # the default setting leaves no file
    assert folder_setting(tmp_path) == {} and not (tmp_path / "setting.json").exists()
    (tmp_path / "runs" / "trec" / "as-dfd").mkdir(parents=True)
    (tmp_path / "runs" / "trec" / "as-dfd" / "seed0.json").write_text("{}")
    with pytest.raises(UserError, match="student"):
        check_same_setting(tmp_path, {"student": 1})  # default-setting cells are there already
    fresh = tmp_path / "l1"
    check_same_setting(fresh, {"student": 1})
    check_same_setting(fresh, {"student": 1})
    assert folder_setting(fresh) == {"student": 1}
    (fresh / "setting.json").write_text('{"set": {"student_layers": 1}}')  # a folder made under the option's older name
    check_same_setting(fresh, {"student": 1})
    with pytest.raises(UserError, match="--tag"):
        check_same_setting(fresh, {})


def test_worker_thread_share_survives_the_librarys_thread_setting(monkeypatch):
    """A --jobs worker gets its share of the cores, and the Distiller's set_threads() keeps it
    (it used to raise every worker back to all the cores: oversubscribed, several times slower)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # records the variable's state, so the test's write is undone
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    before = torch.get_num_threads()
    try:
        _worker_threads(jobs=64)
        set_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_cell_records_the_device_it_ran_on():
    from bench.run import machine_info

    cpu = machine_info("cpu")
    assert cpu["device"] == "cpu" and cpu["gpu"] is None and cpu["cpu_threads"] == torch.get_num_threads()
    assert machine_info(None)["gpu"] is None  # the untrained student distils nothing


def test_cells_of_another_teacher_are_refused(tmp_path):
    """Teacher training repeats per machine, not to the bit across machines: a rebuild that gets the
    same test and validation answers right joins a folder, a teacher of other accuracies does not."""
    from bench.run import check_same_teacher, teacher_identity

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.safetensors").write_bytes(b"weights")
    (teacher / "teacher_report.json").write_text(json.dumps({"test_accuracy": 0.9, "validation_accuracy": 0.8}))
    ident = teacher_identity(teacher)
    cell = tmp_path / "results" / "runs" / "trec" / "as-dfd" / "seed0.json"
    cell.parent.mkdir(parents=True)
    check_same_teacher(tmp_path / "results", "trec", ident)  # nothing there yet

    same = (
        {"teacher_test_accuracy": 0.9},  # an older cell: no hash, no validation record; the test accuracy decides
        {"teacher_test_accuracy": 0.9, "teacher_sha256": ident["sha256"], "validation": {"teacher_accuracy": 0.7}},  # the same weights
        {"teacher_test_accuracy": 0.9, "teacher_sha256": "rebuilt", "validation": {"teacher_accuracy": 0.8}},  # a rebuild elsewhere
    )
    for known in same:
        cell.write_text(json.dumps(known))
        check_same_teacher(tmp_path / "results", "trec", ident)
    check_same_teacher(tmp_path / "results", "mr", {**ident, "sha256": "other", "test_accuracy": 0.5})  # other datasets are not this one's

    for other in (
        {"teacher_test_accuracy": 0.85},
        {"teacher_test_accuracy": 0.85, "teacher_sha256": "another", "validation": {"teacher_accuracy": 0.8}},
        {"teacher_test_accuracy": 0.9, "teacher_sha256": "another", "validation": {"teacher_accuracy": 0.81}},
    ):
        cell.write_text(json.dumps(other))
        with pytest.raises(UserError, match="another trec teacher.*--results.*rebuild"):
            check_same_teacher(tmp_path / "results", "trec", ident)


def test_paired_changes_are_set_against_the_default_on_the_same_seeds(tmp_path):
    from bench.paired import main as paired_main

    base_cfg = {"method": "as-dfd", "replay_size": 32, "batch_size": 32, "student_steps": 600, "mix": 0.5, "seed": 0}

    def write(variant, seed, val, test, **cfg):
        c = {
            "dataset": "trec",
            "variant": variant,
            "seed": seed,
            "validation": {"accuracy": val},
            "test": {"accuracy": test},
            "config": {**base_cfg, "seed": seed, **cfg},
        }
        path = tmp_path / "runs" / "trec" / variant / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(c))

    for seed, val in ((0, 0.80), (1, 0.82), (2, 0.90)):
        write("as-dfd", seed, val, val - 0.05)
    write("as-dfd-k20", 0, 0.81, 0.70, guess_steps=20)  # seeds 0 and 1 only: paired with the default's 0 and 1
    write("as-dfd-k20", 1, 0.85, 0.80, guess_steps=20)
    write("as-dfd-pool4096", 0, 0.99, 0.99, replay_size=4096)  # another default's pool: not a change of this one
    write("as-dfd-steps", 0, 0.99, 0.99, student_steps=1200)  # another budget
    write("random-text", 0, 0.99, 0.99, method="random-text")
    out = tmp_path / "paired.md"
    paired_main(["--results", str(tmp_path), "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["variant"] for r in rows] == ["as-dfd-k20"]
    (cell,) = rows[0]["cells"].values()
    assert rows[0]["changes"] == {"guess_steps": 20} and cell["seeds"] == [0, 1]
    assert cell["delta_validation"] == pytest.approx(2.0) and cell["delta_test"] == pytest.approx(-1.0)
    assert "| as-dfd-k20 | `guess_steps` 20 | +2.00 / -1.00 (2) | +2.00 |" in out.read_text()
    with pytest.raises(SystemExit, match="no benchmark cells"):
        paired_main(["--results", str(tmp_path / "nowhere"), "--out", str(out)])


def test_experiments_table_pairs_each_change_with_the_default_of_its_time(tmp_path):
    from bench.experiments import markdown, rows

    (tmp_path / "variants.yaml").write_text(
        "methods:\n  as-dfd: {method: as-dfd}\n  random-text: {method: random-text}\n"
        "defaults:\n  as-dfd-pool4096: {method: as-dfd, replay_size: 4096}\n"
        "tried:\n  knob-t4: {method: as-dfd, replay_size: 4096, temperature: 4.0}  # KD temperature 4\n"
    )
    for variant, seed, val in (("as-dfd-pool4096", 0, 0.80), ("as-dfd-pool4096", 1, 0.90), ("knob-t4", 0, 0.83)):
        path = tmp_path / "results" / "runs" / "trec" / variant / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"dataset": "trec", "variant": variant, "seed": seed, "validation": {"accuracy": val}, "test": {"accuracy": val}}))
    found = {r["variant"]: r for r in rows(tmp_path)}
    assert found["knob-t4"]["baseline"] == "as-dfd-pool4096" and found["knob-t4"]["changes"] == {"temperature": 4.0}
    assert found["knob-t4"]["results"] == {"trec": "+3.00 / +3.00 (1)"}  # paired on seed 0 only
    assert found["as-dfd-pool4096"]["baseline"] == "as-dfd" and found["as-dfd-pool4096"]["results"] == {}
    assert "random-text" not in found  # a method, not a change
    assert "| knob-t4 | KD temperature 4 (`temperature` 4.0) | as-dfd-pool4096 | trec +3.00 / +3.00 (1) | not adopted |" in markdown(
        list(found.values())
    )


def test_the_size_table_reads_each_students_folder_and_says_what_is_missing(tmp_path, monkeypatch):
    import bench.sizes as sizes

    rows = sizes.SIZES["minilm"]
    fake = {"teacher": {"parameters": 22_700_000, "batch32_s": 1.0, "throughput_per_s": 32.0, "speedup": 1.0}}
    fake |= {label: {"parameters": 10_000_000, "batch32_s": 0.5, "throughput_per_s": 64.0, "speedup": 2.0} for label, _, _ in rows}
    monkeypatch.setattr(sizes, "speeds", lambda base, reps: fake)
    for method, acc in [("as-dfd", 0.8), ("real-kd", 0.9)]:
        for seed in (0, 1):
            cell = tmp_path / "packaged-l3" / "runs" / "trec" / method / f"seed{seed}.json"
            cell.parent.mkdir(parents=True, exist_ok=True)
            cell.write_text(json.dumps({"seed": seed, "test": {"accuracy": acc + 0.01 * seed}}))
    out = sizes.write(tmp_path, "minilm", reps=1)
    row = next(r for r in out["rows"] if r["folder"] == "packaged-l3")
    assert row["accuracy"]["trec"]["as-dfd"] == {"test": 80.5, "seeds": [0, 1]} and row["accuracy"]["mr"]["as-dfd"] is None
    assert row["as_dfd_share_of_real_kd"] == round(100 * 80.5 / 90.5, 1)
    table = (tmp_path / "sizes" / "minilm.md").read_text()
    assert "| MiniLM-L3 (packaged) | 10.0M | 2.00x | 80.50 (2) / - / 90.50 (2) | - / - / - | - / - / - | 89.0 (trec only) |" in table
    assert (tmp_path / "sizes" / "minilm.png").is_file() and sizes.setting("3") == {} and sizes.setting("1") == {"student": "1"}
    # a later table keeps the speeds measured before unless asked to measure again
    measured = []
    monkeypatch.setattr(sizes, "speeds", lambda base, reps: measured.append(base) or fake)
    sizes.write(tmp_path, "minilm", reps=1)
    assert measured == []
    sizes.write(tmp_path, "minilm", reps=1, fresh=True)
    assert measured == ["minilm"]


def test_the_untrained_student_of_a_folder_is_that_folders_student(tmp_path, monkeypatch):
    import bench.run as br
    from asdfd.config import TeacherConfig

    monkeypatch.setattr(br, "cached_teacher", lambda dataset, cfg: tmp_path)
    monkeypatch.setattr(br, "teacher_identity", lambda path: {})
    monkeypatch.setattr(br, "check_same_teacher", lambda *a: None)
    cells = br.plan_cells(tmp_path / "l3", "trec", "none,as-dfd", "0", ["student=minilm-l3", "lr=1e-4"], "", {}, TeacherConfig())
    assert {c.label: c.extra for c in cells} == {"none": {"student": "minilm-l3"}, "as-dfd": {"student": "minilm-l3", "lr": 1e-4}}


def test_the_gpu_check_carries_its_teacher_in_bf16_and_restores_fp32(tiny_teacher_dir, tmp_path):
    from asdfd.models import load_teacher
    from bench.gpu import recast, unpack

    stage = tmp_path / "stage"
    recast(tiny_teacher_dir, stage / "teachers" / "trec-x", torch.bfloat16)
    unpack(stage, tmp_path / "cache")
    full = tmp_path / "cache" / "teachers" / "trec-x"
    a, b = load_teacher(tiny_teacher_dir), load_teacher(full)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert q.dtype == p.dtype, name
        torch.testing.assert_close(q, p.to(torch.bfloat16).to(p.dtype), atol=0, rtol=0)
