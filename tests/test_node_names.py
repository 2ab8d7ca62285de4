"""Node names: one pattern wherever a name arrives (CLI, certificate, client message)."""

from __future__ import annotations

import pytest

from fedad.common.errors import FedadError
from fedad.common.node_names import check_node_name, is_valid_node_name, safe_repr


@pytest.mark.parametrize("name", ["node_01", "press-7", "a", "plant.line-3_x", "X" * 64, "client-10", "aggregator"])
def test_valid_names(name):
    assert is_valid_node_name(name)
    assert check_node_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "X" * 65,
        "node 01",
        "node_09\n10:00 INFO forged",
        "../../../../tmp/x",
        "a/b",
        "..",
        ".",
        "node\r",
        "nöde",
        "node\x00",
        "tab\there",
        None,
        7,
        b"node_01",
    ],
)
def test_invalid_names(name):
    assert not is_valid_node_name(name)
    with pytest.raises(FedadError) as err:
        check_node_name(name, "--name")
    assert "\n" not in str(err.value) and "--name" in str(err.value)


def test_safe_repr_is_one_capped_line():
    text = safe_repr("x\n" * 500)
    assert "\n" not in text and len(text) < 100
