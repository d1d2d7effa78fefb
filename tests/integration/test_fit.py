"""vlora fit: candidates composed from reused per-layer costs equal the same steps simulated one by one; the
frontier fits and is not dominated; the command's exit codes, its JSON and the specs it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vlora_core import load_spec, tree_from_module
from vlora_core.cli import main
from vlora_core.cli.fit import budget_bytes
from vlora_core.memory import simulate_step
from vlora_core.memory.fit import _quality, fit
from vlora_core.spec import apply_sets, spec_from_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from families import tiny

BASE = {"finetune_vision_layers": True, "r": 16, "lora_alpha": 32}


def _make(sets):
    return spec_from_data(apply_sets(dict(BASE), sets))


@pytest.mark.parametrize(("family", "images"), [("llava", 0), ("qwen2_vl", 1), ("gemma3", 1)])
def test_composed_candidates_are_the_steps_simulated_one_by_one(family, images):
    model = tiny(family)
    tree = tree_from_module(model)
    result = fit(_make([]), tree, 1 << 40, axes=("rank", "layers", "batch", "components", "checkpointing"),
                 make_spec=_make, batch=4, seq=256, images=images, image_size=(32, 32), base_dtype="fp32")
    # the batch in between (2) and the ranks in between (x1/2) are composed, never simulated
    assert result.probes < len(result.candidates) / 3
    between = [c for c in result.candidates if c.setting.batch == 2 and c.setting.rank_scale == 0.5]
    assert {c.setting.layers for c in between} == {1.0, 0.5, 0.25}
    assert {c.setting.components for c in between} == ({"as given", "language", "vision"} if images
                                                       else {"as given", "language"})
    for cand in between:
        s = cand.setting
        direct = simulate_step(_make(cand.sets), tree, batch=s.batch, seq=s.seq, images=images, image_size=(32, 32),
                               base_dtype="fp32",
                               gradient_checkpointing=s.checkpointing)
        assert abs(cand.step / direct.step_peak - 1) < 0.01, (cand.changes, cand.step, direct.step_peak)
        assert cand.adapters == direct.adapters
        assert cand.weights == direct.base_weights


def test_the_frontier_fits_and_nothing_that_fits_beats_a_row_on_every_axis():
    model = tiny("qwen2_vl")
    tree = tree_from_module(model)
    everything = fit(_make([]), tree, 1 << 40, axes=("rank", "batch", "checkpointing"), make_spec=_make, batch=4,
                     seq=512, base_dtype="fp32")
    peaks = sorted(c.peak for c in everything.candidates)
    budget = peaks[len(peaks) // 2]  # half of them fit
    result = fit(_make([]), tree, budget, axes=("rank", "batch", "checkpointing"), make_spec=_make, batch=4,
                 seq=512, base_dtype="fp32")
    assert result.fits and all(c.peak <= budget for c in result.frontier)
    fitting = [c for c in result.candidates if c.peak <= budget]
    for row in result.frontier:
        mine = _quality(row.setting)
        assert not any(_quality(o.setting) != mine and all(a >= b for a, b in zip(_quality(o.setting), mine,
                                                                                     strict=True))
                       for o in fitting)
    # what is left out of the frontier is beaten by a row of it
    for cand in fitting:
        if cand not in result.frontier:
            assert any(all(a >= b for a, b in zip(_quality(r.setting), _quality(cand.setting), strict=True))
                       for r in result.frontier)
    assert result.frontier[0].changes == [] or result.given.peak > budget


def test_budget_sizes():
    assert budget_bytes("24GiB") == 24 << 30
    assert budget_bytes("80 GB") == 80 * 10**9
    assert budget_bytes("1.5gib") == int(1.5 * (1 << 30))
    for bad in ("24", "24 GiBs", "-1GiB", ""):
        with pytest.raises(Exception, match="unit"):
            budget_bytes(bad)


def test_the_command_json_rows_and_written_specs(tmp_path, capsys):
    model = tiny("qwen2_vl")
    model.config.save_pretrained(tmp_path / "model")
    args = ["fit", "--model", str(tmp_path / "model"), "--seq", "512", "--batch", "4", "--base-dtype", "fp32",
            "--vary", "checkpointing,batch,rank,layers"]
    assert main([*args, "--budget", "1TiB", "--json"]) == 0
    roomy = json.loads(capsys.readouterr().out)
    assert roomy["frontier"][0]["changes"] == []  # everything fits: the spec as given leads
    budget = (roomy["given"]["peak_bytes"] + roomy["smallest"]["peak_bytes"]) // 2
    assert main([*args, "--budget", f"{budget}B", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] and data["given"]["peak_bytes"] > budget  # as given it does not fit; something does
    assert all(row["peak_bytes"] <= budget for row in data["frontier"])
    # each row's peak is what `vlora plan --memory` says of the same spec and step
    for row in data["frontier"][:3]:
        step = row["step"]
        plan_args = ["plan", "--model", str(tmp_path / "model"), "--memory", "--json", "--seq", str(step["seq"]),
                     "--batch", str(step["batch"]), "--optimizer", step["optimizer"], "--base-dtype", "fp32",
                     *(f"--set={item}" for item in row["set"])]
        plan_args += ["--gradient-checkpointing"] if step["gradient_checkpointing"] else []
        assert main(plan_args) == 0
        planned = json.loads(capsys.readouterr().out)["memory"]["peak_bytes"]
        assert abs(row["peak_bytes"] / planned - 1) < 0.01, (row["changes"], row["peak_bytes"], planned)

    assert main([*args, "--budget", f"{budget}B", "--write", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "as given: predicted peak" in out and "does not fit" in out and "fits (the frontier" in out
    written = sorted((tmp_path / "out").glob("fit-*.yaml"))
    assert len(written) == len(data["frontier"])
    for path, row in zip(written, data["frontier"], strict=True):
        text = path.read_text()
        assert text.startswith("# vlora fit: predicted peak")
        spec = load_spec(path)  # a valid spec, with the row's changes
        assert spec.r == row["r"]

    assert main([*args, "--budget", "1KiB"]) == 10
    assert "nothing tried fits: the smallest predicted peak is" in capsys.readouterr().out


def test_fit_on_a_full_size_reference(capsys):
    assert main(["fit", "--model", "Qwen2-VL-2B-Instruct", "--seq", "512", "--batch", "2", "--budget", "6GiB",
                 "--vary", "checkpointing,batch", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["given"]["peak_bytes"] > 6 << 30 and data["fits"]
    assert data["simulated_steps"] <= 4
    # 2.2 B parameters in bf16, from the config
    assert 4 << 30 < data["given"]["base_weights_bytes"] < 5 << 30


def test_bad_options_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model", "Qwen2-VL-2B-Instruct", "--budget", "24"])
    assert exc.value.code == 2
    assert "24GiB" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model", "Qwen2-VL-2B-Instruct", "--budget", "24GiB", "--vary", "ranks"])
    assert exc.value.code == 2
    assert "unknown axis 'ranks'" in capsys.readouterr().err
    assert main(["fit", "--budget", "24GiB"]) == 2
    assert "no SPEC given" in capsys.readouterr().err
