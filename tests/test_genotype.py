"""Genotype files: round trip, atomic save, one-line ValueError for every kind of breakage."""
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nnunet_scnas import CELL_TYPES, EDGES, Genotype


def _doc(g):
    return json.loads(json.dumps(g.to_dict()))


def _expect_one_line(path, match):
    with pytest.raises(ValueError, match=match) as info:
        Genotype.load(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_file_is_readable_json_with_edges_and_provenance(tmp_path, random_genotype):
    random_genotype.save(tmp_path / "g.json")
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["version"] == 1 and set(doc["cells"]) == set(CELL_TYPES)
    assert doc["cells"]["expansion"][0][:2] == [0, 2] and len(doc["cells"]["expansion"]) == 14
    assert Genotype.load(tmp_path / "g.json") == random_genotype


def test_edges_may_be_listed_in_any_order(tmp_path, random_genotype):
    doc = _doc(random_genotype)
    doc["cells"]["reduction"].reverse()
    (tmp_path / "g.json").write_text(json.dumps(doc))
    assert Genotype.load(tmp_path / "g.json").cells == random_genotype.cells


@pytest.mark.parametrize("breakage,match", [
    (lambda d: d["cells"]["enc_normal"][3].__setitem__(2, "conv_9x9x9"), r"cells\.enc_normal: edge 3: unknown op 'conv_9x9x9'"),
    (lambda d: d["cells"]["reduction"].pop(), r"cells\.reduction: expected 14 edges, got 13"),
    (lambda d: d["cells"]["expansion"][0].__setitem__(1, 6), r"edge 0: node index 'to'=6 out of range 2\.\.5"),
    (lambda d: d["cells"]["expansion"][5].__setitem__(0, 4), r"node index 'from'=4 out of range"),
    (lambda d: d["cells"].pop("dec_normal"), r"missing cell type 'dec_normal'"),
    (lambda d: d.__setitem__("version", 7), r"unknown version 7"),
    (lambda d: d.pop("version"), r"missing field 'version'"),
    (lambda d: d["cells"]["enc_normal"].__setitem__(1, list(d["cells"]["enc_normal"][0])), r"duplicate edge \(0, 2\)"),
    (lambda d: d["cells"].__setitem__("attention", []), r"unknown cell type 'attention'"),
])
def test_broken_files_give_a_one_line_value_error(tmp_path, random_genotype, breakage, match):
    doc = _doc(random_genotype)
    breakage(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    _expect_one_line(path, match)


@pytest.mark.parametrize("content,match", [
    (b"{not json", r"not JSON"), (b"\xff\xfe", r"not JSON"), (b"[1, 2]", r"expected a JSON object"),
    (b'{"version": NaN}', r"not JSON"), (b"", r"not JSON")])
def test_non_genotype_bytes(tmp_path, content, match):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    _expect_one_line(path, match)


def test_missing_file_names_the_path(tmp_path):
    _expect_one_line(tmp_path / "nope.json", "no such genotype file")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | st.builds(lambda d: json.dumps(d).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["version", "cells", "format", "provenance",
                                                                       *CELL_TYPES]), c, max_size=4))))
def test_fuzz_any_bytes_give_value_error_or_genotype(tmp_path, data):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    try:
        g = Genotype.load(path)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        assert all(len(g.cells[t]) == len(EDGES) for t in CELL_TYPES)


def test_save_is_atomic(tmp_path, random_genotype, monkeypatch):
    path = tmp_path / "g.json"
    random_genotype.save(path)
    before = path.read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        Genotype({t: ("identity",) * 14 for t in CELL_TYPES}).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]
