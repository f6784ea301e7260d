"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Any JSON value: what a job's arguments, results and templates may hold.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
