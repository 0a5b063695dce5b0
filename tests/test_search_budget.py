"""Issue 12's pieces without training: alpha's learning-rate rule, the confidence a genotype records,
the close-to-random note, uniform random genotypes and their cost matching, search seeds."""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from nnunet_scnas import CELL_TYPES, EDGES, OPS, Genotype, derive
from nnunet_scnas.genotypes import CONFIDENT
from nnunet_scnas.recipe import SEARCH
from nnunet_scnas.tools.cost import derived_cost, matched_random_genotype

PLANS = json.loads((Path(__file__).parent / "toy_plans.json").read_text())
DATASET = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1}, "numTraining": 10,
           "file_ending": ".nii.gz"}
EXAMPLE = Path(__file__).parent.parent / "docs" / "example_genotype.json"


def test_arch_lr_rule_is_the_papers_at_its_budget_and_scales_with_the_square_root_below():
    assert SEARCH.alpha_steps == (200 - 20) * 250
    assert SEARCH.arch_lr_for(SEARCH.alpha_steps) == pytest.approx(3e-3)
    assert SEARCH.arch_lr_for(10 * SEARCH.alpha_steps) == pytest.approx(3e-3)  # never below the paper's
    assert SEARCH.arch_lr_for(SEARCH.alpha_steps // 100) == pytest.approx(3e-2)
    # the largest move of a logit, lr x steps, grows with the budget: a short search cannot outrun a long one
    moves = [SEARCH.arch_lr_for(n) * n for n in (10, 100, 1000, SEARCH.alpha_steps)]
    assert moves == sorted(moves)
    # ... and 24 steps (the demo's CPU search) can now leave uniform: at the paper's rate they could not
    assert SEARCH.arch_lr * 24 < 0.1 < 2 < SEARCH.arch_lr_for(24) * 24


def test_derive_records_confidence_and_entropy_per_cell_type():
    alphas = {t: torch.zeros(len(EDGES), len(OPS)) for t in CELL_TYPES}
    alphas["reduction"][:, 0] = 10.0  # certain: conv on every edge
    g = derive(alphas)
    conf = g.mean_confidence()
    assert conf["enc_normal"] == pytest.approx(1 / 8) and conf["reduction"] > 0.99
    assert g.provenance["mean_entropy"]["enc_normal"] == pytest.approx(math.log(8), abs=1e-3)
    assert g.provenance["mean_entropy"]["reduction"] < 0.01
    assert len(g.provenance["confidence"]["dec_normal"]) == len(EDGES)
    note = Genotype(g.cells, {**g.provenance, "alpha_steps": 24}).randomness_note()
    assert note.startswith("this genotype is close to a random draw: 24 alpha steps, mean confidence 0.125")
    for t in CELL_TYPES:
        alphas[t][:, 3] = 2.0  # e^2 / (e^2 + 7) = 0.51 on every edge
    assert derive(alphas).randomness_note() is None
    assert Genotype.load(EXAMPLE).randomness_note() is None  # hand-written: no confidence recorded


def test_confident_threshold_is_twice_uniform():
    assert CONFIDENT == pytest.approx(2 / len(OPS))


def test_random_genotypes_are_uniform_per_edge_with_derivations_dead_node_rule():
    draws = [Genotype.random(seed) for seed in range(300)]
    counts = Counter(op for g in draws for t in CELL_TYPES for op in g.cells[t])
    n = 300 * len(CELL_TYPES) * len(EDGES)
    # the dead-node rule turns a few all-zero nodes' edges into non-zero ops: zero is a bit rarer
    # than 1/8, every other op a bit more common; chi-square on the non-zero ops stays uniform
    nonzero = {op: c for op, c in counts.items() if op != "zero"}
    expected = sum(nonzero.values()) / len(nonzero)
    chi2 = sum((c - expected) ** 2 / expected for c in nonzero.values())
    assert chi2 < 22.5  # 6 degrees of freedom, p = 0.001
    # a node with k incoming edges is dead with probability 8^-k, and then one of its zeros is replaced
    expected_zero = n / 8 - 300 * len(CELL_TYPES) * sum(8.0 ** -k for k in (2, 3, 4, 5))
    assert abs(counts["zero"] - expected_zero) < 4 * math.sqrt(n / 8 * 7 / 8)
    for g in draws:  # no node is dead
        for t in CELL_TYPES:
            for j in range(2, 6):
                assert any(op != "zero" for (i, jj), op in zip(EDGES, g.cells[t]) if jj == j)
    assert Genotype.random(7).cells == Genotype.random(7).cells != Genotype.random(8).cells
    assert Genotype.random(7).provenance["random_seed"] == 7


def test_matched_random_genotype_is_within_tolerance_of_the_reference():
    reference = Genotype.load(EXAMPLE)
    shape = [1, 24, 32, 24]
    g, draws = matched_random_genotype(reference, 0, 8, shape, 3)
    params, flops = derived_cost(g, 8, shape, 3)
    ref_params, ref_flops = derived_cost(reference, 8, shape, 3)
    assert abs(params / ref_params - 1) <= 0.1 and abs(flops / ref_flops - 1) <= 0.1
    assert g.provenance["draws"] == draws and g.provenance["flops"] == flops
    assert g.cells == Genotype.random(draws - 1).cells  # seeds 0, 1, ... in order
    with pytest.raises(ValueError, match="none of 3 random genotypes"):
        matched_random_genotype(reference, 0, 8, shape, 3, tolerance=0.0, max_draws=3)


def test_random_genotype_command_writes_a_matched_genotype_and_agree_compares(tmp_path):
    out = tmp_path / "r.json"
    cli = [sys.executable, "-m", "nnunet_scnas.tools.cli"]
    r = subprocess.run(cli + ["random-genotype", "--seed", "3", "--match", str(EXAMPLE), "--stem", "8",
                              "--patch", "24,32,24", "--classes", "3", "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "within 10%" in r.stdout and Genotype.load(out).provenance["matched_to"]
    bad = subprocess.run(cli + ["random-genotype", "--seed", "3", "--match", str(EXAMPLE), "--patch", "24,30,24"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    agree = subprocess.run(cli + ["agree", str(out), str(out), str(EXAMPLE)], capture_output=True, text=True,
                           timeout=300)
    expected = sum(sum(Genotype.load(out).agreement(Genotype.load(EXAMPLE)).values()) for _ in range(2)) + 4
    assert agree.returncode == 0 and f"all         {expected / 3 / 4:.3f}" in agree.stdout


def _search_trainer(monkeypatch, tmp_path, seed=None):
    from nnunet_scnas.trainers import nnUNetTrainerSCNASSearch
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    if seed is None:
        monkeypatch.delenv("SCNAS_SEARCH_SEED", raising=False)
    else:
        monkeypatch.setenv("SCNAS_SEARCH_SEED", seed)
    plans = copy.deepcopy(PLANS)
    plans["continue_training"] = False
    return nnUNetTrainerSCNASSearch(plans, "3d_fullres", 0, DATASET, torch.device("cpu"))


def test_search_trainer_scales_alpha_lr_to_its_own_alpha_steps(monkeypatch, tmp_path):
    t = _search_trainer(monkeypatch, tmp_path)
    assert t.alpha_steps() == SEARCH.alpha_steps and t.arch_learning_rate() == pytest.approx(3e-3)
    t.num_epochs, t.num_iterations_per_epoch, t.arch_warmup_epochs = 3, 8, 0
    assert t.alpha_steps() == 24 and t.alpha_steps(1) == 8
    assert t.arch_learning_rate() == pytest.approx(SEARCH.arch_lr_for(24))
    t.arch_lr = 1e-3
    assert t.arch_learning_rate() == 1e-3
    assert t.search_seed == 12345


def test_search_seed_comes_from_the_environment_and_a_bad_one_is_one_line(monkeypatch, tmp_path):
    assert _search_trainer(monkeypatch, tmp_path, "7").search_seed == 7
    with pytest.raises(SystemExit, match=r"SCNAS error: \$SCNAS_SEARCH_SEED must be an integer, got 'x'"):
        _search_trainer(monkeypatch, tmp_path, "x")
