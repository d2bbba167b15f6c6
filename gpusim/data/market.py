"""Price data: validation, periods per year, returns and ex-ante statistics.

A :class:`Market` is a validated wide price table (dates x symbols, float64, all prices > 0 and
finite) plus ``ann``, the number of bars per year, and where that number came from. Build one with
:func:`gpusim.data.load.load_prices` (CSV, CSV.gz, Parquet or a DataFrame) or
:func:`synthetic_market` (seeded correlated geometric Brownian motion). Everything here lives on
the host (NumPy / pandas).

Semantics (DESIGN.md section 5): simple returns ``r_t = p_t / p_{t-1} - 1``; ``mu = mean(r)``
and ``cov = cov(r, ddof=1)`` per bar; ``ann`` given or inferred from the index. Bad input raises
:class:`~gpusim.errors.DataError` with a one-line message naming the column, the first bad date
and the fix. Nothing is sorted, de-duplicated or filled silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gpusim.errors import DataError
from gpusim.validate import check_ann, date_text, listing, whole_number

__all__ = ["Market", "infer_ann", "synthetic_market"]

# label -> (periods per year, description); shared by infer_ann and synthetic_market
_ANN = {
    "B": (252.0, "business-daily (252)"),
    "D": (365.0, "calendar-daily incl. weekends (365)"),
    "h": (8760.0, "hourly 24/7 (8760)"),
    "hB": (6048.0, "hourly, weekdays only (6048 = 252*24)"),
    "W": (52.0, "weekly (52)"),
    "ME": (12.0, "monthly (12)"),
    "QE": (4.0, "quarterly (4)"),
    "YE": (1.0, "yearly (1)"),
}
_SYNTH_FREQS = {"B": "B", "D": "D", "h": "h", "H": "h", "W": "W", "ME": "ME", "M": "ME"}


def _check_index(index) -> pd.DatetimeIndex:
    """Dates must be a DatetimeIndex, free of NaT, strictly ascending (no sort, no dedup)."""
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"prices need a DatetimeIndex, got {type(index).__name__}; "
            "pass a DataFrame indexed by dates, or name the date column with date_col="
        )
    if index.hasnans:
        i = int(np.flatnonzero(index.isna())[0])
        raise DataError(f"date missing (NaT) in row {i}; drop or fix that row")
    if len(index) > 1:
        step = index[1:] - index[:-1]
        back = np.flatnonzero(step < pd.Timedelta(0))
        if back.size:
            i = int(back[0]) + 1
            raise DataError(
                f"dates are not ascending: {date_text(index[i])} (row {i}) comes after "
                f"{date_text(index[i - 1])}; sort first, e.g. df.sort_index() (nothing is "
                "sorted silently)"
            )
        dup = np.flatnonzero(step == pd.Timedelta(0))
        if dup.size:
            i = int(dup[0]) + 1
            raise DataError(
                f"duplicate date {date_text(index[i])} (row {i}, first of {dup.size} duplicated "
                "rows); keep one row per date first, e.g. df[~df.index.duplicated(keep='last')]"
            )
    return index


def _to_float(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as float64; a column with non-numeric values is an error."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            raise DataError(f"column {col!r} is boolean, not prices; drop it with symbols=[...] "
                            "(--symbols) or name the price column with column= (--column)")
        kind = getattr(s.dtype, "kind", "O")
        if kind in "mM" or isinstance(s.dtype, (pd.DatetimeTZDtype, pd.PeriodDtype)):
            raise DataError(f"column {col!r} holds dates/times ({s.dtype}), not prices; name the "
                            "price columns with symbols=[...] (--symbols) or column= (--column), "
                            "or the date column with date_col= (--date-col)")
        if not pd.api.types.is_numeric_dtype(s.dtype):
            num = pd.to_numeric(s, errors="coerce")
            bad = np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy())
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"column {col!r} is not numeric: value {s.iloc[i]!r} on "
                    f"{_date_or_row(s.index, i)}; name the price columns with symbols=[...] "
                    "(--symbols) or column= (--column), or clean the data"
                )
            s = num
        out[col] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)


def as_timestamp(value, what: str, index: pd.DatetimeIndex):
    """``value`` (None or date-like) as a Timestamp comparable with ``index`` (time zone
    matched); text that is not a date raises ``DataError`` naming ``what`` and ``--what``.
    """
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise DataError(f"{what}={value!r} (--{what}) is not a date; use e.g. 2020-01-31")
    if index.tz is not None and ts.tz is None:
        ts = ts.tz_localize(index.tz)
    elif index.tz is None and ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _date_or_row(index, i: int) -> str:
    try:
        return date_text(index[i])
    except (TypeError, ValueError):
        return f"row {i}"


def _check_values(prices: pd.DataFrame, where: str, nan_fix: str) -> None:
    """Every value finite and > 0; errors name the column and the first bad date."""
    values = prices.to_numpy()
    for j, col in enumerate(prices.columns):
        v = values[:, j]
        bad = np.flatnonzero(~(v > 0) | ~np.isfinite(v))  # NaN, inf, <= 0
        if not bad.size:
            continue
        i = int(bad[0])
        date = date_text(prices.index[i])
        if np.isnan(v[i]):
            raise DataError(f"column {col!r}: missing price (NaN) on {date}{where}; {nan_fix}")
        if np.isinf(v[i]):
            raise DataError(
                f"column {col!r}: non-finite price {v[i]} on {date}{where}; "
                "fix the value or drop the column with symbols=[...]"
            )
        raise DataError(
            f"column {col!r}: price {v[i]:g} <= 0 on {date}{where}; prices must be positive "
            "(back-adjusted futures: shift or use returns) - fix it or drop it with symbols=[...]"
        )


@dataclass
class Market:
    """Validated prices and their periods per year.

    Parameters
    ----------
    prices : pandas.DataFrame
        Shape (n_bars, n_assets): DatetimeIndex ascending and unique, one float64 column per
        symbol, every value finite and > 0, at least 2 rows. Integer columns are converted to
        float64 and labels to ``str``; anything else invalid raises ``DataError``.
    ann : float
        Bars per year (252 business-daily, 365 calendar-daily, 8760 hourly 24/7, 52, 12, ...).
    ann_source : str
        Where ``ann`` came from: ``"given"`` or ``"inferred: <description>"``.
    name : str
        Label used by :meth:`describe` and reports.
    load_notes : tuple of str
        What the loader did, one line each (sorted, de-duplicated, filled, dates read by a
        rule), the window last; empty for a Market built directly.
    window_info : dict or None
        The window :func:`~gpusim.data.load.load_prices` kept: ``align``, ``start``, ``end``,
        ``rows``, ``of_rows`` (rows before alignment), ``start_set_by`` (the latest listings
        that set the start) and ``end_set_by``. None when not loaded from a table.
    """

    prices: pd.DataFrame
    ann: float
    ann_source: str = "given"
    name: str = ""
    load_notes: tuple = field(default=(), repr=False)
    window_info: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        if not isinstance(self.prices, pd.DataFrame):
            raise DataError(f"prices must be a pandas DataFrame, got {type(self.prices).__name__}")
        p = self.prices
        _check_index(p.index)
        cols = [str(c) for c in p.columns]
        if len(set(cols)) != len(cols):
            dup = next(c for c in cols if cols.count(c) > 1)
            raise DataError(f"column {dup!r} appears more than once; keep one column per symbol")
        if not cols:
            raise DataError("prices have no columns; pass at least one symbol")
        p = _to_float(p)
        p.columns = pd.Index(cols)
        _check_values(p, "", "fill or drop it first, e.g. load_prices(..., fill='ffill')")
        if len(p) < 2:
            raise DataError(f"prices have {len(p)} row(s); need at least 2 dates for a return")
        self.prices = p
        self.ann = check_ann(self.ann)
        self.load_notes = tuple(str(n) for n in self.load_notes)

    def data_info(self) -> dict:
        """What summaries record about the data: name, symbols, bars, dates, ``ann`` and its
        source, the loader's notes and the window (JSON-ready).
        """
        idx = self.prices.index
        return {"name": self.name, "symbols": self.symbols, "n_bars": self.n_bars,
                "start": date_text(idx[0]), "end": date_text(idx[-1]), "ann": self.ann,
                "ann_source": self.ann_source, "load_notes": list(self.load_notes),
                "window": None if self.window_info is None else dict(self.window_info)}

    @property
    def symbols(self) -> list[str]:
        """Column labels, in order."""
        return list(self.prices.columns)

    @property
    def n_assets(self) -> int:
        return self.prices.shape[1]

    @property
    def n_bars(self) -> int:
        """Number of price rows (one more than the number of returns)."""
        return self.prices.shape[0]

    @property
    def returns(self) -> pd.DataFrame:
        """Simple returns ``p_t / p_{t-1} - 1``, shape (n_bars - 1, n_assets)."""
        p = self.prices
        r = p.to_numpy()[1:] / p.to_numpy()[:-1] - 1.0
        return pd.DataFrame(r, index=p.index[1:], columns=p.columns)

    def stats(self) -> tuple[pd.Series, pd.DataFrame]:
        """Per-bar mean and covariance of the simple returns, labelled by symbol (host float64;
        ``.to_numpy()`` gives the arrays).

        Returns
        -------
        mu : pandas.Series, shape (n_assets,), index = symbols
            ``mean(r)`` per asset, per bar (annualise with ``ann * mu``).
        cov : pandas.DataFrame, shape (n_assets, n_assets), index = columns = symbols
            ``cov(r, ddof=1)`` per bar (annualise with ``ann * cov``).
        """
        r = self.returns.to_numpy()
        if r.shape[0] < 2:
            raise DataError(f"{self.n_bars} bars give 1 return; a covariance needs at least 3 bars")
        mu = r.mean(axis=0)
        dev = r - mu
        cov = dev.T @ dev / (r.shape[0] - 1)
        sym = pd.Index([str(x) for x in self.symbols], name="symbol")
        return (pd.Series(mu, index=sym, name="mu"),
                pd.DataFrame(cov, index=sym, columns=sym.copy()))

    def subset(self, symbols) -> Market:
        """The same market restricted to ``symbols`` (a name or a list), in the order given."""
        chosen = _pick(self.symbols, symbols)
        return Market(self.prices[chosen], self.ann, self.ann_source, self.name,
                      load_notes=self.load_notes)

    def window(self, start=None, end=None) -> Market:
        """The bars with ``start <= date <= end`` (both inclusive, either may be None)."""
        idx = self.prices.index
        p = self.prices.loc[as_timestamp(start, "start", idx): as_timestamp(end, "end", idx)]
        if len(p) < 2:
            raise DataError(
                f"window {start}..{end} holds {len(p)} bar(s) of {self.describe()}; "
                "need at least 2 - widen the window"
            )
        return Market(p, self.ann, self.ann_source, self.name, load_notes=self.load_notes)

    def describe(self) -> str:
        """One line: name, assets, bars, date range, ann and its source."""
        idx = self.prices.index
        return (
            f"{self.name or 'market'}: {self.n_assets} assets x {self.n_bars} bars, "
            f"{date_text(idx[0])} .. {date_text(idx[-1])}, ann={self.ann:g} ({self.ann_source})"
        )


def _pick(available: list[str], symbols) -> list[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    chosen = [str(s) for s in symbols]
    if not chosen:
        raise DataError(f"symbols is empty; choose from: {listing(available)}")
    missing = [s for s in chosen if s not in available]
    if missing:
        raise DataError(f"unknown symbol(s) {listing(missing)}; available: {listing(available)}")
    if len(set(chosen)) != len(chosen):
        dup = next(s for s in chosen if chosen.count(s) > 1)
        raise DataError(f"symbol {dup!r} is listed twice in symbols=; list each once")
    return chosen


def infer_ann(index) -> tuple[float, str]:
    """Bars per year from the median spacing of ``index`` and the share of weekend rows.

    Spacing is measured on the sorted distinct dates. Median spacing ~1 hour -> 8760 (hourly
    24/7) if more than 10 % of the dates fall on a weekend, else 6048 (= 252*24, hourly on weekdays
    only); ~1 day -> 365 (calendar-daily, trades on weekends) if more than 10 % of the dates fall
    on a weekend, else 252 (business-daily); 5-9 days -> 52; 26-35 days -> 12; 80-100 days -> 4;
    350-380 days -> 1. Anything else raises ``DataError``. Mixed daily + intraday rows (e.g.
    pysystemtrade) come out hourly: resample them to one row per day first.

    Parameters
    ----------
    index : pandas.DatetimeIndex or array-like of datetimes, length >= 2

    Returns
    -------
    ann : float
        Periods per year.
    description : str
        E.g. ``"business-daily (252)"``; :class:`Market` stores ``"inferred: " + description``.
    """
    try:
        index = pd.DatetimeIndex(index)
    except (TypeError, ValueError) as e:
        raise DataError(f"cannot read the index as dates ({e}); pass ann= explicitly") from None
    if len(index) < 2:
        raise DataError(f"cannot infer ann from {len(index)} date(s); pass ann= explicitly")
    index = index.dropna().unique().sort_values()  # spacing only; the data is not reordered
    if len(index) < 2:
        raise DataError("cannot infer ann from fewer than 2 distinct dates; pass ann= explicitly")
    med = pd.Series(index[1:] - index[:-1]).median()
    hours = med / pd.Timedelta(hours=1)
    days = hours / 24.0
    weekend = float(np.mean(index.day_of_week >= 5)) > 0.10
    if 0.75 <= hours <= 1.25:
        key = "h" if weekend else "hB"
    elif 0.75 <= days <= 1.5:
        key = "D" if weekend else "B"
    elif 5 <= days <= 9:
        key = "W"
    elif 26 <= days <= 35:
        key = "ME"
    elif 80 <= days <= 100:
        key = "QE"
    elif 350 <= days <= 380:
        key = "YE"
    else:
        raise DataError(
            f"cannot infer periods per year from a median spacing of {med}; "
            "pass ann= explicitly (e.g. ann=252 daily, ann=8760 hourly 24/7)"
        )
    return _ANN[key]


def synthetic_market(
    n_assets=5, n_bars=756, freq="B", seed=0, start="2020-01-01",
    ann=None, mu=None, vol=None, corr=None, name=None,
) -> Market:
    """Seeded correlated geometric Brownian motion, starting at 100 for every asset.

    Log-price increments per bar are ``(mu - vol**2 / 2) / ann + vol / sqrt(ann) * z`` with
    ``z ~ N(0, corr)`` drawn by ``numpy.random.default_rng(seed)``; the same arguments always
    give the same prices.

    Parameters
    ----------
    n_assets : int >= 1
    n_bars : int >= 2
        Number of price rows; dates are ``pd.date_range(start, periods=n_bars, freq=freq)``.
    freq : {"B", "D", "h", "W", "ME"}
        Bar spacing ("M" means "ME", "H" means "h"); sets ``ann`` to 252, 365, 8760, 52 or 12.
    seed : int
    start : str or Timestamp
    ann : float, optional
        Override the periods per year implied by ``freq`` (stored as ``"given"``).
    mu, vol : float or array of shape (n_assets,), optional
        Annual drift and volatility. Defaults: ``linspace(0.02, 0.15)`` and
        ``linspace(0.10, 0.40)`` across the assets.
    corr : array of shape (n_assets, n_assets), optional
        Correlation matrix (symmetric, unit diagonal, positive definite). Default: one-factor
        ``corr[i, j] = l_i * l_j`` off the diagonal with loadings ``l = linspace(0.2, 0.7)``.
    name : str, optional
        Default ``"synthetic(seed=<seed>)"``.

    Returns
    -------
    Market
        Symbols ``"A00", "A01", ...``; host float64 prices of shape (n_bars, n_assets).
    """
    n_assets = whole_number(n_assets, "n_assets", 1, error=DataError)
    n_bars = whole_number(n_bars, "n_bars", 2, fix=" (one return needs two prices)",
                          error=DataError)
    if freq not in _SYNTH_FREQS:
        valid = ", ".join(map(repr, _SYNTH_FREQS))
        raise DataError(f"freq={freq!r} is not supported; use one of {valid}")
    key = _SYNTH_FREQS[freq]
    if ann is None:
        ann, desc = _ANN[key]
        ann_source = f"inferred: {desc} from freq={freq!r}"
    else:
        ann, ann_source = check_ann(ann), "given"

    def vec(x, default, what):
        v = np.asarray(default if x is None else x, dtype=np.float64)
        if v.shape not in ((), (n_assets,)) or not np.all(np.isfinite(v)):
            raise DataError(f"{what} must be finite, a scalar or shape ({n_assets},); got {x!r}")
        return np.broadcast_to(v, (n_assets,)).copy()

    mu_v = vec(mu, np.linspace(0.02, 0.15, n_assets), "mu")
    vol_v = vec(vol, np.linspace(0.10, 0.40, n_assets), "vol")
    if np.any(vol_v < 0):
        raise DataError(f"vol must be >= 0, got {vol_v.tolist()}; pass annual volatilities")
    if corr is None:
        load = np.linspace(0.2, 0.7, n_assets)
        c = np.outer(load, load)
        np.fill_diagonal(c, 1.0)
    else:
        c = np.asarray(corr, dtype=np.float64)
        if c.shape != (n_assets, n_assets):
            raise DataError(f"corr has shape {c.shape}; need ({n_assets}, {n_assets})")
        if not (np.allclose(c, c.T) and np.allclose(np.diag(c), 1.0)):
            raise DataError("corr must be symmetric with a unit diagonal")
    try:
        chol = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise DataError("corr is not positive definite; pass a valid correlation matrix") from None

    try:
        index = pd.date_range(start, periods=n_bars, freq=key)
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime) as e:
        msg = f"cannot build {n_bars} dates from {start!r} at freq={freq!r} ({e}); use fewer bars"
        raise DataError(msg) from None
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_bars - 1, n_assets)) @ chol.T
    dt = 1.0 / ann
    steps = (mu_v - 0.5 * vol_v**2) * dt + vol_v * np.sqrt(dt) * z
    logp = np.vstack([np.zeros((1, n_assets)), np.cumsum(steps, axis=0)])
    cols = [f"A{i:02d}" for i in range(n_assets)]
    prices = pd.DataFrame(100.0 * np.exp(logp), index=index, columns=cols)
    return Market(prices, ann, ann_source, f"synthetic(seed={seed})" if name is None else name)
