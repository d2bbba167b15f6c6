"""Futures data for the dynamic optimisation: pysystemtrade CSVs or a synthetic stand-in (the
per-contract inputs built from them are :func:`gpusim.dynopt.inputs.prepare`).

:func:`load_futures` reads Rob Carver's pysystemtrade layout (``../shared/data/pysystemtrade`` by
default, see that folder's README):

- ``adjusted_prices_csv/<INSTRUMENT>.csv`` (``DATETIME``, ``price``): back-adjusted prices with
  daily 23:00 rows and, later, intraday rows and empty prices. Daily resampling takes the
  **last valid price of each calendar date** (rows sorted by time first).
- ``fx_prices_csv/<CCY>USD.csv`` (``DATETIME``, ``PRICE``): US dollars per unit of ``CCY``, the
  same daily resampling; instruments quoted in USD get FX = 1.
- ``csvconfig/instrumentconfig*.csv``: ``Pointsize`` (the contract multiplier), ``Currency``,
  ``AssetClass`` and the commission columns ``PerBlock``, ``Percentage``, ``PerTrade``;
  ``csvconfig/spreadcosts*.csv``: ``SpreadCost`` (slippage in price units), else the config's
  ``Slippage`` column.

Alignment: the dates are the union of the instruments' dates, weekdays only by default (some
markets post Sunday-evening rows). Each instrument's price is forward-filled after its first
valid date (holidays, and a series that ends a day early); before it the price is NaN (not
listed yet: the dynamic optimisation holds no position). FX series are forward-filled onto the
same dates. The base currency is USD.

Cost of trading one contract, in the instrument's currency (pysystemtrade's formula for one
contract): ``Slippage x Pointsize + max(PerBlock, PerTrade, Percentage x |price| x Pointsize)``.
It varies with the price when ``Percentage`` > 0 (KOSPI), so costs are a (dates x instruments)
table. (pysystemtrade's ``PerTrade`` is per order, not per contract; it is 0 for every instrument
of the shipped subset.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gpusim.errors import DataError
from gpusim.validate import date_text, py_scalar, whole_number

__all__ = [
    "FuturesData",
    "contract_costs",
    "default_data_dir",
    "load_futures",
    "read_daily",
    "synthetic_futures",
]

BASE_CURRENCY = "USD"


def default_data_dir() -> Path | None:
    """``../shared/data/pysystemtrade`` next to the working directory or to this repository,
    when it exists (the first found), else None.
    """
    here = Path(__file__).resolve().parents[1]
    for root in (Path.cwd(), here):
        p = (root.parent / "shared" / "data" / "pysystemtrade").resolve()
        if (p / "adjusted_prices_csv").is_dir():
            return p
    return None


def read_daily(path, column: str | None = None, *, sort: bool = False, dedupe: bool = False,
               notes: list[str] | None = None) -> pd.Series:
    """One value per calendar date: the last valid value of the date, rows in time order.

    ``column`` defaults to the second column of the CSV; dates are the first. Empty cells are
    skipped (pysystemtrade leaves some prices empty); text that is not a number, and infinite
    values, are errors naming the file, the column and the first bad date. Timestamps must be
    ascending and unique: ``sort=True`` sorts them, ``dedupe=True`` drops rows that repeat a
    timestamp with the same value (different values stay an error); each says what it did in
    ``notes`` (a list that is appended to).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} not found; check the data folder (--data DIR)") from None
    except Exception as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}".splitlines()[0]) from None
    if df.shape[1] < 2:
        raise DataError(f"{path.name}: needs a date column and a value column")
    col = column if column is not None else df.columns[1]
    if col not in df.columns:
        raise DataError(f"{path.name}: no column {col!r}; columns are {list(df.columns)}")
    ts = pd.to_datetime(df.iloc[:, 0], errors="coerce", format="mixed")
    if ts.isna().any():
        bad = df.iloc[int(np.flatnonzero(ts.isna())[0]), 0]
        raise DataError(f"{path.name}: {bad!r} is not a date; fix or drop that row")
    raw = df[col]
    val = pd.to_numeric(raw, errors="coerce").astype(np.float64).to_numpy()
    text = raw.notna().to_numpy() & np.isnan(val) & (raw.astype(str).str.strip() != "")
    bad = np.flatnonzero(text | np.isinf(val))
    if bad.size:
        i = int(bad[0])
        what = "not a number" if text[i] else "not finite"
        raise DataError(f"{path.name}, column {col!r}: {py_scalar(raw.iloc[i])!r} on "
                        f"{date_text(ts.iloc[i])} "
                        f"(row {i}) is {what}; fix or empty that cell")
    s = pd.Series(val, index=pd.DatetimeIndex(ts))
    s = _in_order(s, path.name, sort, dedupe, [] if notes is None else notes)
    s = s[np.isfinite(s.to_numpy())]
    daily = s.groupby(s.index.normalize()).last()
    daily.index = pd.DatetimeIndex(daily.index, name="date")
    daily.name = path.stem
    return daily


def _in_order(s: pd.Series, name: str, sort: bool, dedupe: bool, notes: list[str]) -> pd.Series:
    """Timestamps ascending and unique, or an error naming the opt-in that fixes them."""
    idx = s.index
    if not idx.is_monotonic_increasing:
        if not sort:
            i = int(np.flatnonzero(np.diff(idx.asi8) < 0)[0]) + 1
            raise DataError(f"{name}: timestamps are not in order: {date_text(idx[i])} (row {i}) "
                            f"comes after {date_text(idx[i - 1])}; pass sort=True (--sort) to "
                            "sort them (nothing is sorted silently)")
        s = s.iloc[np.argsort(idx.asi8, kind="stable")]
        notes.append(f"sorted the {len(s):,} rows of {name} by time")
    if s.index.has_duplicates:
        dup = s.index.duplicated(keep=False)
        g = s[dup].groupby(level=0)
        differ = (g.nunique(dropna=False) > 1)
        first_dup = date_text(s.index[s.index.duplicated()][0])
        if not dedupe or differ.any():
            if differ.any():
                d = differ.index[differ.to_numpy()][0]
                vals = ", ".join(f"{v:g}" for v in s.loc[[d]])
                raise DataError(f"{name}: timestamp {date_text(d)} repeats with different values "
                                f"({vals}); keep one row per timestamp")
            raise DataError(f"{name}: timestamp {first_dup} repeats; pass dedupe=True (--dedupe) "
                            "to drop repeated rows with the same value")
        n = int(s.index.duplicated().sum())
        s = s[~s.index.duplicated()]
        notes.append(f"dropped {n:,} repeated rows of {name} (same timestamp and value)")
    return s


@dataclass
class FuturesData:
    """Daily futures inputs of :func:`gpusim.dynopt` (host pandas objects).

    Attributes
    ----------
    prices : (T, N) DataFrame of back-adjusted prices (DatetimeIndex, one column per
        instrument); NaN before an instrument's first price.
    multipliers : (N,) Series, currency value of a 1.0 price move (pysystemtrade ``Pointsize``).
    fx : (T, N) DataFrame, base currency (USD) per unit of each instrument's currency.
    costs : (T, N) DataFrame, cost of trading one contract in the instrument's currency.
    currencies, asset_classes : (N,) Series of str.
    source : where the data came from.
    notes : what the loader did on request (sorting, de-duplication), one line each.
    """

    prices: pd.DataFrame
    multipliers: pd.Series
    fx: pd.DataFrame
    costs: pd.DataFrame
    currencies: pd.Series
    asset_classes: pd.Series = field(default=None)
    source: str = ""
    notes: tuple = ()

    @property
    def instruments(self) -> list[str]:
        return list(self.prices.columns)

    def subset(self, instruments) -> FuturesData:
        """The same data restricted to ``instruments`` (a name or a list), in the order given;
        dates on which none of them has a price are dropped.
        """
        names = [instruments] if isinstance(instruments, str) else list(instruments)
        missing = [n for n in names if n not in self.prices.columns]
        if missing:
            raise DataError(f"instrument(s) {missing} not in the data; available: "
                            f"{', '.join(self.instruments)}")
        keep = self.prices[names].notna().any(axis=1).to_numpy()
        return FuturesData(self.prices.loc[keep, names], self.multipliers[names],
                           self.fx.loc[keep, names], self.costs.loc[keep, names],
                           self.currencies[names],
                           None if self.asset_classes is None else self.asset_classes[names],
                           self.source, self.notes)

    def window(self, start=None, end=None) -> FuturesData:
        """Dates with ``start <= date <= end`` (inclusive; either may be None)."""
        sl = slice(None if start is None else pd.Timestamp(start),
                   None if end is None else pd.Timestamp(end))
        p = self.prices.loc[sl]
        if len(p) < 2:
            first, last = (date_text(self.prices.index[i], time=False) for i in (0, -1))
            raise DataError(f"window {start}..{end} holds {len(p)} date(s) of data from "
                            f"{first} to {last}; widen it")
        return FuturesData(p, self.multipliers, self.fx.loc[sl], self.costs.loc[sl],
                           self.currencies, self.asset_classes, self.source, self.notes)

    def last_years(self, years: float) -> FuturesData:
        """The last ``years`` calendar years of dates."""
        end = self.prices.index[-1]
        return self.window(end - pd.DateOffset(days=round(365.25 * float(years))), end)

    def describe(self) -> str:
        idx = self.prices.index
        first, last = (date_text(idx[i], time=False) for i in (0, -1))
        return (f"{self.source or 'futures'}: {len(self.instruments)} instruments x {len(idx)} "
                f"days, {first} .. {last}")


def _find(folder: Path, stem: str) -> Path | None:
    """``stem.csv``, else the first ``stem*.csv`` (e.g. ``instrumentconfig_subset.csv``)."""
    exact = folder / f"{stem}.csv"
    if exact.is_file():
        return exact
    hits = sorted(folder.glob(f"{stem}*.csv"))
    return hits[0] if hits else None


def contract_costs(config: pd.DataFrame, prices: pd.DataFrame, slippage: pd.Series) -> pd.DataFrame:
    """(T, N) cost of one contract in instrument currency:
    ``slippage x Pointsize + max(PerBlock, PerTrade, Percentage x |price| x Pointsize)``.
    """
    cols = prices.columns
    ps = config.loc[cols, "Pointsize"].to_numpy(np.float64)

    def get(c):
        if c not in config.columns:
            return np.zeros(len(cols))
        return config.loc[cols, c].fillna(0.0).to_numpy(np.float64)

    per_block, per_trade, pct = get("PerBlock"), get("PerTrade"), get("Percentage")
    slip = slippage.reindex(cols).fillna(0.0).to_numpy(np.float64)
    p = np.abs(prices.to_numpy(np.float64))
    commission = np.maximum(np.maximum(per_block, per_trade), pct * p * ps)
    return pd.DataFrame(slip * ps + commission, index=prices.index, columns=cols)


def load_futures(data_dir=None, instruments=None, start=None, end=None, *,
                 slippage: str = "spreadcosts", weekdays_only: bool = True, sort: bool = False,
                 dedupe: bool = False) -> FuturesData:
    """Load pysystemtrade futures data as a :class:`FuturesData` (see the module docstring).

    Parameters
    ----------
    data_dir : folder holding ``adjusted_prices_csv/``, ``fx_prices_csv/`` and ``csvconfig/``
        (default: :func:`default_data_dir`).
    instruments : names to load (default: every instrument that has both a price file and a
        config row), in the order given.
    start, end : optional date window (inclusive), applied after forward-filling.
    slippage : ``"spreadcosts"`` (the ``SpreadCost`` file, default; falls back to the config's
        ``Slippage`` for instruments it lacks) or ``"config"`` (the ``Slippage`` column).
    weekdays_only : drop Saturday/Sunday dates (default True).
    sort, dedupe : opt-ins for files whose timestamps are out of order or repeated (errors
        otherwise), see :func:`read_daily`; what they did is in ``FuturesData.notes``.
    """
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if folder is None or not (folder / "adjusted_prices_csv").is_dir():
        where = "../shared/data/pysystemtrade" if folder is None else str(folder)
        raise DataError(f"no pysystemtrade data at {where} (needs adjusted_prices_csv/); pass "
                        "data_dir=, or use gpusim.data.futures.synthetic_futures()")
    if slippage not in ("spreadcosts", "config"):
        raise DataError(f"slippage={slippage!r} is unknown; use 'spreadcosts' or 'config'")
    cfg_path = _find(folder / "csvconfig", "instrumentconfig")
    if cfg_path is None:
        raise DataError(f"no csvconfig/instrumentconfig*.csv under {folder}; it gives the "
                        "multipliers (Pointsize) and currencies")
    cfg = pd.read_csv(cfg_path).set_index("Instrument")
    for col in ("Pointsize", "Currency"):
        if col not in cfg.columns:
            raise DataError(f"{cfg_path.name} has no {col!r} column")
    price_files = {p.stem: p for p in sorted((folder / "adjusted_prices_csv").glob("*.csv"))}
    if instruments is None:
        names = [n for n in price_files if n in cfg.index]
    else:
        names = [instruments] if isinstance(instruments, str) else list(instruments)
        for n in names:
            if n not in price_files:
                raise DataError(f"instrument {n!r} has no adjusted_prices_csv/{n}.csv; "
                                f"available: {', '.join(price_files)}")
            if n not in cfg.index:
                raise DataError(f"instrument {n!r} has no row in {cfg_path.name}")
    if not names:
        raise DataError(f"no instrument under {folder} has both a price file and a config row")

    notes: list[str] = []
    kw = {"sort": sort, "dedupe": dedupe, "notes": notes}
    series = {n: read_daily(price_files[n], **kw) for n in names}
    dates = series[names[0]].index
    for n in names[1:]:
        dates = dates.union(series[n].index)
    if weekdays_only:
        dates = dates[dates.day_of_week < 5]
    prices = pd.DataFrame({n: series[n].reindex(series[n].index.union(dates)).ffill()
                          .reindex(dates) for n in names}, index=dates)

    currencies = cfg.loc[names, "Currency"].astype(str).str.strip().str.upper()
    fx = pd.DataFrame(1.0, index=dates, columns=names)
    for ccy in sorted(set(currencies) - {BASE_CURRENCY}):
        f = _find(folder / "fx_prices_csv", f"{ccy}{BASE_CURRENCY}")
        if f is None:
            users = [n for n in names if currencies[n] == ccy]
            raise DataError(f"no fx_prices_csv/{ccy}{BASE_CURRENCY}.csv for {users}; add it or "
                            "leave those instruments out")
        s = read_daily(f, **kw)
        if (s <= 0).any():
            d = s.index[(s <= 0).to_numpy()][0]
            raise DataError(f"{f.name}: FX rate {s[d]:g} on {date_text(d, time=False)} is not > 0; "
                            "fix or empty that cell")
        rate = s.reindex(s.index.union(dates)).ffill().reindex(dates)
        for n in names:
            if currencies[n] == ccy:
                fx[n] = rate.to_numpy()

    mult = cfg.loc[names, "Pointsize"].astype(np.float64)
    bad = [n for n in names if not (math.isfinite(mult[n]) and mult[n] > 0)]
    if bad:
        raise DataError(f"Pointsize of {bad} in {cfg_path.name} must be a number > 0")
    slip = cfg["Slippage"] if "Slippage" in cfg.columns else pd.Series(0.0, index=cfg.index)
    if slippage == "spreadcosts":
        sp = _find(folder / "csvconfig", "spreadcosts")
        if sp is not None:
            sc = pd.read_csv(sp).set_index("Instrument")["SpreadCost"].astype(np.float64)
            slip = sc.combine_first(slip.astype(np.float64))
    costs = contract_costs(cfg, prices, slip.astype(np.float64))
    data = FuturesData(prices, mult.rename("multiplier"), fx, costs, currencies.rename("currency"),
                       cfg.loc[names, "AssetClass"].astype(str) if "AssetClass" in cfg.columns
                       else None, source=f"pysystemtrade ({folder})", notes=tuple(notes))
    if start is not None or end is not None:
        data = data.window(start, end)
    return data


def synthetic_futures(n_instruments: int = 8, n_days: int = 1260, seed: int = 0,
                      start: str = "2019-01-01") -> FuturesData:
    """A seeded stand-in for the futures data (for demos and tests without the data folder).

    Correlated random-walk prices (annual vols 8%..40%, one-factor correlation) on business days;
    multipliers, price levels and costs chosen so that one contract is worth 10k..300k USD;
    every fourth instrument is quoted in EUR (a random-walk EURUSD rate), and the second one
    lists only after 20% of the days (NaN before). Same arguments, same data.
    """
    N = whole_number(n_instruments, "n_instruments", 1, error=DataError)
    T = whole_number(n_days, "n_days", 30, error=DataError)
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=T, name="date")
    vol = np.linspace(0.08, 0.40, N)
    load = np.linspace(0.1, 0.6, N) * rng.choice([-1.0, 1.0], N)
    corr = np.outer(load, load)
    np.fill_diagonal(corr, 1.0)
    z = rng.standard_normal((T, N)) @ np.linalg.cholesky(corr).T
    level = rng.choice([20.0, 100.0, 1000.0, 4000.0], N)
    prices = level * np.exp(np.cumsum(vol / math.sqrt(252) * z, axis=0))
    value = rng.uniform(1e4, 3e5, N)                          # USD per contract at the start
    mult = np.array([float(f"{x:.1g}") for x in value / level])
    names = [f"F{i:02d}" for i in range(N)]
    p = pd.DataFrame(prices, index=dates, columns=names)
    if N > 1:
        p.iloc[: T // 5, 1] = np.nan
    ccy = pd.Series(["EUR" if i % 4 == 3 else "USD" for i in range(N)], index=names,
                    name="currency")
    eurusd = 1.1 * np.exp(np.cumsum(0.07 / math.sqrt(252) * rng.standard_normal(T)))
    fx = pd.DataFrame(np.where(ccy.to_numpy() == "EUR", eurusd[:, None], 1.0), index=dates,
                      columns=names)
    tick_cost = level * 2e-4 * mult                           # half-spread in currency
    costs = pd.DataFrame(np.broadcast_to(tick_cost + 2.0, (T, N)).copy(), index=dates,
                         columns=names)
    return FuturesData(p, pd.Series(mult, index=names, name="multiplier"), fx, costs, ccy,
                       pd.Series("synthetic", index=names),
                       source=f"synthetic futures (n={N}, days={T}, seed={seed})")
