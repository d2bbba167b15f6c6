"""format_table: tables for people (issue 15)."""

import numpy as np
import pandas as pd

from gpusim.tables import format_table, round_for_people


def test_rounding_per_column_and_words_for_missing():
    idx = pd.MultiIndex.from_arrays([[None, 20.0, 60.0], ["M", "W", "D"]],
                                    names=["lookback", "rebalance"])
    df = pd.DataFrame({"sharpe": [1.01492, 0.5, -0.2],
                       "fees_paid": [3.05979e-05, 1e-6, 0.0],
                       "n_rebalances": [3, 40, 1000],
                       "cagr": [0.1234567, np.nan, 0.2],
                       "candidate": [270023, 5, 7]}, index=idx)
    t = round_for_people(df)
    assert list(t["sharpe"]) == ["1.015", "0.500", "-0.200"]        # 4 significant digits
    assert list(t["fees_paid"]) == ["0.000031", "0.000001", "0.000000"]  # no exponent
    assert list(t["n_rebalances"]) == ["3", "40", "1000"]
    assert list(t["cagr"]) == ["0.1235", "n/a", "0.2000"]            # a missing metric
    assert list(t["candidate"]) == ["270,023", "5", "7"]
    # separators for the whole column or for none of it (not 95514 beside 767,728)
    u = round_for_people(pd.DataFrame({"candidate": [767_728, 95_514], "n": [95_514, 12]}))
    assert list(u["candidate"]) == ["767,728", "95,514"] and list(u["n"]) == ["95514", "12"]
    assert list(t.index.get_level_values("lookback")) == ["all", "20", "60"]
    text = format_table(df)
    assert "NaN" not in text and "e-05" not in text and "all" in text
    # a threshold of None is "no band"
    thr = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index([np.nan, 0.05], name="threshold"))
    assert list(round_for_people(thr).index) == ["none", "0.05"]


def test_groups_share_decimals_and_full_precision_is_kept():
    df = pd.DataFrame({"sharpe": [1.7412345], "A": [0.3151], "B": [0.00003], "C": [0.0]})
    t = round_for_people(df, groups=[["A", "B", "C"]])
    assert list(t.loc[0, ["A", "B", "C"]]) == ["0.3151", "0.0000", "0.0000"]
    assert df.loc[0, "B"] == 0.00003            # the frame itself is untouched
    s = format_table(pd.Series([0.1, 0.25], index=["X", "Y"], name="w"))
    assert s.split() == ["w", "X", "0.1000", "Y", "0.2500"]
