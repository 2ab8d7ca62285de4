"""describe_feature_difference: which columns are missing, extra, renamed or reordered."""

from __future__ import annotations

from fedad.common.feature_diff import describe_feature_difference

FED = ["temperature", "vibration_freq", "vibration_rms", "motor_current", "voltage"]


def test_renamed_column_is_named_with_both_names():
    have = ["temperature", "vibration_freq", "vib_rms", "motor_current", "voltage"]
    assert describe_feature_difference(have, FED) == "renamed: vibration_rms -> vib_rms"


def test_missing_and_extra_columns():
    assert describe_feature_difference(FED[:2] + FED[3:], FED) == "missing: vibration_rms"
    assert describe_feature_difference(FED + ["humidity"], FED) == "extra: humidity"


def test_same_columns_in_another_order():
    have = [FED[1], FED[0], *FED[2:]]
    assert "another order" in describe_feature_difference(have, FED)
    assert describe_feature_difference(FED, FED) == "identical"


def test_long_lists_are_cut_with_a_count():
    have = [f"x{i}" for i in range(20)]
    text = describe_feature_difference(have, [])
    assert text.startswith("extra: x0, x1") and "(+12 more)" in text
