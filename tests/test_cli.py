"""The ``nnunet_scnas`` command: ``show`` and ``cost`` from the command line, and bad input.

Runs ``python -m nnunet_scnas.tools.cli`` (the module the ``nnunet_scnas`` console script calls),
so the test does not depend on a console script being installed and up to date; a separate test
checks that pyproject's console scripts point at importable functions.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from nnunet_scnas import CELL_TYPES, Genotype, SCNASNetwork, count_flops, count_parameters
from nnunet_scnas.recipe import RETRAIN
from nnunet_scnas.tools.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "docs", "example_genotype.json")
SOURCE_NAMES = {"c_{k-2}": 0, "c_{k-1}": 1}


def run_cli(*args, cwd=REPO):
    env = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "nnunet_scnas.tools.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def edges_in_file(path):
    """Non-zero (from, to, op) per cell type, read from the JSON without the package."""
    with open(path) as f:
        doc = json.load(f)
    return {t: sorted((i, j, op) for i, j, op in doc["cells"][t] if op != "zero") for t in CELL_TYPES}


def edges_printed(text):
    """Parse ``show``'s text: a 'cell_type:' line, then '  SOURCE -> node J: OP' lines."""
    out, current = {}, None
    for line in text.splitlines():
        if line.rstrip(":") in CELL_TYPES and line.endswith(":"):
            current = line[:-1]
            out[current] = []
            continue
        m = re.fullmatch(r"  (c_\{k-[12]\}|node [2-5]) -> node ([2-5]): (\w+)", line)
        if m:
            assert current is not None, line
            src = SOURCE_NAMES[m[1]] if m[1] in SOURCE_NAMES else int(m[1].split()[1])
            out[current].append((src, int(m[2]), m[3]))
    return {t: sorted(v) for t, v in out.items()}


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_show_prints_the_files_edges_and_draws_the_four_cells(tmp_path):
    out_dir = tmp_path / "pictures"
    r = run_cli("show", EXAMPLE, "-o", str(out_dir))
    assert r.returncode == 0, r.stderr
    expected = edges_in_file(EXAMPLE)
    assert edges_printed(r.stdout) == expected
    assert sum(len(v) for v in expected.values()) == 31  # the example has 56 edges, 25 of them zero
    assert "provenance: note=hand-written example" in r.stdout
    names = sorted(os.listdir(out_dir))
    assert names == sorted(f"cell_{t}.png" for t in CELL_TYPES)
    for name in names:
        path = out_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
        assert f"wrote {path}" in r.stdout


def test_show_draws_beside_the_genotype_by_default_and_not_at_all_with_no_images(tmp_path, capsys):
    beside = tmp_path / "run"
    beside.mkdir()
    g = shutil.copy(EXAMPLE, beside / "genotype.json")
    main(["show", str(g), "--no-images"])
    assert os.listdir(beside) == ["genotype.json"]
    assert "wrote" not in capsys.readouterr().out
    main(["show", str(g)])
    assert sorted(os.listdir(beside)) == sorted(["genotype.json"] + [f"cell_{t}.png" for t in CELL_TYPES])


COST_LINE = re.compile(r"stem (\d+), input (\S+), (\d+) outputs: ([0-9.]+) M parameters, ([0-9.]+) GFLOPs "
                       r"\(([0-9.]+) G multiply-adds\)")


def test_cost_prints_the_derived_networks_parameters_and_flops_at_the_papers_defaults():
    r = run_cli("cost", EXAMPLE)
    assert r.returncode == 0, r.stderr
    m = COST_LINE.fullmatch(r.stdout.strip())
    assert m, r.stdout
    # defaults: the paper's retrain stem, one 4-channel 128^3 patch, 4 outputs, no deep supervision
    assert (int(m[1]), m[2], int(m[3])) == (RETRAIN.stem_channels, "4x128x128x128", 4)
    net = SCNASNetwork(4, 4, Genotype.load(EXAMPLE), stem_channels=68, deep_supervision=False)
    flops = count_flops(net, (1, 4, 128, 128, 128))  # exact by hand: tests/test_networks.py
    assert m[4] == f"{count_parameters(net) / 1e6:.2f}"
    assert m[5] == f"{flops / 1e9:.2f}"
    assert m[6] == f"{flops / 2e9:.2f}"


def test_cost_options_reach_the_network(capsys):
    main(["cost", EXAMPLE, "--stem", "32", "--input", "2,64,48,40", "--classes", "3"])
    m = COST_LINE.fullmatch(capsys.readouterr().out.strip())
    assert m and (m[1], m[2], m[3]) == ("32", "2x64x48x40", "3")
    net = SCNASNetwork(2, 3, Genotype.load(EXAMPLE), stem_channels=32, deep_supervision=False)
    assert m[4] == f"{count_parameters(net) / 1e6:.2f}"
    assert m[5] == f"{count_flops(net, (1, 2, 64, 48, 40)) / 1e9:.2f}"


def _assert_one_line_error(r, command):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nnunet_scnas {command}: error: "), r.stderr
    return lines[0]


def test_bad_input_from_the_command_line_is_one_line_without_traceback(tmp_path):
    line = _assert_one_line_error(run_cli("show", str(tmp_path / "missing.json")), "show")
    assert "missing.json: no such genotype file" in line
    line = _assert_one_line_error(run_cli("cost", EXAMPLE, "--input", "4,30,32,32"), "cost")
    assert "spatial axis 0 has size 30" in line
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    line = _assert_one_line_error(run_cli("show", EXAMPLE, "-o", str(a_file)), "show")
    assert "cannot create the output folder" in line


@pytest.mark.parametrize("argv,message", [
    (["cost", "{g}", "--input", "4,128,128"], "--input must be C,X,Y,Z (4 integers)"),
    (["cost", "{g}", "--input", "4,x,128,128"], "--input must be C,X,Y,Z integers"),
    (["cost", "{bad_json}"], "not JSON"),
    (["show", "{bad_op}"], "unknown op 'conv_5x5x5'"),
])
def test_bad_input_messages(tmp_path, argv, message):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    doc = json.load(open(EXAMPLE))
    doc["cells"]["reduction"][0][2] = "conv_5x5x5"
    bad_op = tmp_path / "bad_op.json"
    bad_op.write_text(json.dumps(doc))
    argv = [a.format(g=EXAMPLE, bad_json=bad_json, bad_op=bad_op) for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    msg = info.value.code
    assert isinstance(msg, str) and "\n" not in msg
    assert msg.startswith(f"nnunet_scnas {argv[0]}: error: ") and message in msg
    assert not list(tmp_path.glob("*.png"))


def test_console_scripts_in_pyproject_point_at_functions():
    import importlib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert set(scripts) == {"nnunet_scnas", "nnUNetv2_plan_scnas"}
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
