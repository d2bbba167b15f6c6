"""Throughput of the rebalancing backtest fast paths, in combination-bars per second.

Workloads (DESIGN §6, §10), 5 assets, 756 daily bars (3 years of business days):

* ``threshold``: 15 drift thresholds (0.01 .. 0.15, absolute band) x 1000 target vectors, no
  calendar rebalancing (pure threshold strategy), fee 0.001.
* ``monthly``: 2000 random target vectors rebalanced on the first bar of each month, fee 0.001.

Engines: the CPU fast path ``backtest_cpu_nb`` (lockstep blocks, all numba threads), the same
fast path on one thread, the per-combination scalar path ``backtest_scalar_nb`` (the GPU
thread's code run on the CPU), the GPU kernel when a real device is usable, and vectorbt when
it is importable (``Portfolio.from_orders`` for monthly, ``Portfolio.from_order_func`` with a
drift test in ``pre_segment_func_nb`` for threshold), run on a subset of the combinations
(``--vbt-combos``) because it needs a price column per combination and asset. For vectorbt the
time includes the total return, Sharpe and max drawdown computed from the portfolio, and the
script checks that its final values agree with ours.

A last table times whole ``gpusim.backtest()`` calls (DESIGN §10, issue 11): 3,000 combinations
(200 target vectors x 15 thresholds) x 756 bars, a 3-row target schedule with the same
thresholds, and (``--big``) the peak RSS of a 10^7-combination grid on 10 bars; it reports the
call's wall time, the time inside the kernel and the share outside it (Python, pandas, grid
building).

Each figure is the median of ``--repeats`` timed calls after one warm-up call (compilation).
Results are outputs of this machine, not truth. Usage::

    python benchmarks/bench_backtest.py            # full size
    python benchmarks/bench_backtest.py --quick    # small, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba

from gpusim.backtest.cpu import backtest_cpu_nb, backtest_scalar_nb
from gpusim.backtest.steps import scalar_inputs

FEE = 0.001
INIT_CASH = 100.0  # vectorbt's default, so final values compare directly
ANN = 252.0


def make_market(T, A, seed=0):
    """GBM-like daily closes (T, A) on a business-day index."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.0, 0.0008, A)
    sig = rng.uniform(0.008, 0.03, A)
    logp = np.cumsum(mu + sig * rng.standard_normal((T, A)), axis=0) + np.log(100.0)
    index = pd.bdate_range("2021-01-01", periods=T)
    return np.ascontiguousarray(np.exp(logp)), index


def workloads(quick, seed=0):
    T, A = (252, 5) if quick else (756, 5)
    n_thr_w, n_month_w = (100, 200) if quick else (1000, 2000)
    close, index = make_market(T, A, seed)
    rng = np.random.default_rng(seed + 1)
    ths = np.linspace(0.01, 0.15, 15)

    W = rng.dirichlet(np.ones(A), size=n_thr_w)
    C = n_thr_w * ths.size
    thr = dict(name="threshold", desc=f"{ths.size} thresholds x {n_thr_w} targets",
               close=close, index=index, W=W, wid=np.repeat(np.arange(n_thr_w), ths.size),
               masks=np.zeros((1, T), dtype=bool), mid=np.zeros(C, np.int64),
               thresholds=np.tile(ths, n_thr_w), relative=False, fees=np.full(C, FEE))

    W2 = rng.dirichlet(np.ones(A), size=n_month_w)
    month_start = np.r_[True, index.month[1:] != index.month[:-1]].reshape(1, T)
    mon = dict(name="monthly", desc=f"{n_month_w} targets, monthly",
               close=close, index=index, W=W2, wid=np.arange(n_month_w), masks=month_start,
               mid=np.zeros(n_month_w, np.int64), thresholds=np.zeros(n_month_w),
               relative=False, fees=np.full(n_month_w, FEE))
    return [thr, mon]


def kernel_args(w, sel=None):
    wid, mid, ths, fees = w["wid"], w["mid"], w["thresholds"], w["fees"]
    if sel is not None:
        wid, mid, ths, fees = wid[sel], mid[sel], ths[sel], fees[sel]
    return scalar_inputs(w["close"], w["W"], wid, w["masks"], mid, ths, w["relative"], fees,
                         INIT_CASH, ANN, 0.0)


def timed(fn, *args, repeats=3):
    """(median seconds of ``repeats`` calls after one warm-up call, last result)."""
    out = fn(*args)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


# ------------------------------------------------------------------------------------------
# vectorbt
# ------------------------------------------------------------------------------------------

def _vbt_monthly(close, index, W, mask_row, fee):
    import pandas as pd
    import vectorbt as vbt

    n, A = W.shape
    T = close.shape[0]
    prices = pd.DataFrame(np.tile(close, (1, n)), index=index)
    size = np.full((T, n * A), np.nan)
    size[mask_row] = W.reshape(1, -1)
    pf = vbt.Portfolio.from_orders(
        prices, size=size, size_type="targetpercent", direction="longonly",
        group_by=np.repeat(np.arange(n), A), cash_sharing=True, call_seq="auto", fees=fee,
        init_cash=INIT_CASH, freq="1D")
    pf.total_return()
    pf.sharpe_ratio()
    pf.max_drawdown()
    return pf.final_value().to_numpy()


def _vbt_threshold_funcs():
    from numba import njit
    from vectorbt.portfolio import nb as pnb
    from vectorbt.portfolio.enums import Direction, SizeType

    @njit
    def pre_segment_nb(c, W, ths, relative):
        g = c.group
        n = c.group_len
        v = c.last_cash[g]
        for k in range(n):
            v += c.last_position[c.from_col + k] * c.close[c.i, c.from_col + k]
        rebalance = c.i == 0
        if not rebalance and ths[g] > 0.0 and v > 0.0:
            for k in range(n):
                col = c.from_col + k
                d = abs(c.last_position[col] * c.close[c.i, col] / v - W[g, k])
                lim = ths[g] * W[g, k] if relative else ths[g]
                if d >= lim:
                    rebalance = True
                    break
        if rebalance:
            for k in range(n):
                c.last_val_price[c.from_col + k] = c.close[c.i, c.from_col + k]
            pnb.sort_call_seq_nb(c, W[g], np.array(SizeType.TargetPercent),
                                 np.array(Direction.LongOnly), np.empty(n), ctx_select=False)
        return (rebalance,)

    @njit
    def order_nb(c, rebalance, W, fee):
        if not rebalance:
            return pnb.order_nothing_nb()
        return pnb.order_nb(size=W[c.group, c.col - c.from_col], price=c.close[c.i, c.col],
                            size_type=SizeType.TargetPercent, direction=Direction.LongOnly,
                            fees=fee)

    return pre_segment_nb, order_nb


def _vbt_threshold(close, index, W, wid, ths, relative, fee, funcs):
    import pandas as pd
    import vectorbt as vbt

    pre_segment_nb, order_nb = funcs
    n = wid.size
    A = W.shape[1]
    prices = pd.DataFrame(np.tile(close, (1, n)), index=index)
    pf = vbt.Portfolio.from_order_func(
        prices, order_nb, np.ascontiguousarray(W[wid]), fee,
        pre_segment_func_nb=pre_segment_nb,
        pre_segment_args=(np.ascontiguousarray(W[wid]), np.ascontiguousarray(ths), relative),
        group_by=np.repeat(np.arange(n), A), cash_sharing=True, init_cash=INIT_CASH,
        freq="1D")
    pf.total_return()
    pf.sharpe_ratio()
    pf.max_drawdown()
    return pf.final_value().to_numpy()


def bench_vectorbt(w, n_max, repeats, funcs):
    """(seconds, combinations run, max relative difference of final values vs ours)."""
    C = w["wid"].size
    sel = np.arange(C) if C <= n_max else np.linspace(0, C - 1, n_max).astype(np.int64)
    if w["name"] == "monthly":
        fn = _vbt_monthly
        args = (w["close"], w["index"], w["W"][w["wid"][sel]], w["masks"][0], FEE)
    else:
        fn = _vbt_threshold
        args = (w["close"], w["index"], w["W"], w["wid"][sel], w["thresholds"][sel],
                w["relative"], FEE, funcs)
    sec, final = timed(fn, *args, repeats=repeats)
    ours = backtest_cpu_nb(*kernel_args(w, sel))[:, -1]
    return sec, sel.size, float(np.max(np.abs(final / ours - 1.0)))


# ------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per figure (median)")
    ap.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    ap.add_argument("--no-vbt", action="store_true", help="skip vectorbt even if importable")
    ap.add_argument("--big", action="store_true",
                    help="also the peak memory of a 10^7-combination backtest() grid")
    ap.add_argument("--vbt-combos", type=int, default=None,
                    help="combinations given to vectorbt per workload (default 1500, quick 150)")
    args = ap.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    nthreads = numba.get_num_threads()
    vbt_n = args.vbt_combos or (150 if args.quick else 1500)

    have_vbt = False
    if not args.no_vbt:
        try:
            import vectorbt as vbt

            vbt.settings.returns["year_freq"] = f"{int(ANN)} days"
            have_vbt = True
        except Exception as exc:  # pragma: no cover - optional peer
            print(f"vectorbt not importable ({type(exc).__name__}); its rows are skipped")
    gpu = None
    try:
        from gpusim.backend import gpu_status

        if gpu_status()[0]:
            from gpusim.backtest.cuda import backtest_gpu as gpu
    except Exception:  # pragma: no cover - hardware only
        gpu = None

    print(f"gpusim backtest benchmark: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs, numba {numba.__version__} with {nthreads} threads"
          f"{', quick' if args.quick else ''}")
    header = (f"{'workload':<10} {'work':<28} {'engine':<26} {'combos':>7} {'bars':>5} "
              f"{'seconds':>9} {'Mcomb-bars/s':>13} {'vs vectorbt':>12}")
    print(header)
    print("-" * len(header))
    funcs = _vbt_threshold_funcs() if have_vbt else None
    for w in workloads(args.quick):
        C = w["wid"].size
        T = w["close"].shape[0]
        rows = []
        sec, out = timed(backtest_cpu_nb, *kernel_args(w), repeats=args.repeats)
        rows.append((f"cpu fast ({nthreads} thr)", C, sec))
        numba.set_num_threads(1)
        sec1, _ = timed(backtest_cpu_nb, *kernel_args(w), repeats=args.repeats)
        sec_s, out_s = timed(backtest_scalar_nb, *kernel_args(w), repeats=args.repeats)
        numba.set_num_threads(nthreads)
        rows.append(("cpu fast (1 thr)", C, sec1))
        rows.append(("cpu per-combination (1 thr)", C, sec_s))
        assert np.array_equal(out, out_s, equal_nan=True), "fast path != scalar path"
        if gpu is not None:
            sec_g, _out_g = timed(gpu, *kernel_args(w), repeats=args.repeats)
            rows.append(("gpu", C, sec_g))
        vbt_rate = None
        note = ""
        if have_vbt:
            sec_v, n_v, diff = bench_vectorbt(w, vbt_n, args.repeats, funcs)
            vbt_rate = n_v * T / sec_v
            rows.append(("vectorbt (1 thr)", n_v, sec_v))
            note = f"   vectorbt final values vs ours: max rel diff {diff:.1e}"
        for engine, n, s in rows:
            rate = n * T / s
            ratio = f"{rate / vbt_rate:11.1f}x" if vbt_rate else f"{'-':>12}"
            print(f"{w['name']:<10} {w['desc']:<28} {engine:<26} {n:>7} {T:>5} {s:>9.4f} "
                  f"{rate / 1e6:>13.1f} {ratio}")
        nreb = out[:, 9]
        print(f"{'':<10} rebalances per combination: mean {nreb.mean():.1f}, "
              f"min {nreb.min():.0f}, max {nreb.max():.0f}{note}")
    api_overhead(args.repeats, args.big)
    return 0


def api_overhead(repeats: int, big: bool = False) -> None:
    """Wall time of ``gpusim.backtest()`` calls vs the time spent in the CPU kernel."""
    import pandas as pd

    import gpusim
    from gpusim.backtest import cpu as bk

    m = gpusim.synthetic_market(n_assets=5, n_bars=756, seed=1)
    idx = m.prices.index
    W = np.random.default_rng(0).dirichlet(np.ones(5), 3)
    sched = pd.DataFrame(W, index=idx[[0, 250, 500]], columns=m.prices.columns)
    ths = gpusim.Param(np.arange(1, 16) / 100)
    calls = {"200 vectors x 15 thr": dict(weights=gpusim.RandomWeights(200, seed=1)),
             "schedule x 15 thr": dict(weights=sched)}
    real = bk.backtest_cpu_nb
    spent = [0.0]

    def kernel(*a):
        t = time.perf_counter()
        r = real(*a)
        spent[0] += time.perf_counter() - t
        return r

    print(f"\n{'backtest() call':<24} {'combos':>7} {'call ms':>9} {'kernel ms':>10} "
          f"{'outside':>8}")
    bk.backtest_cpu_nb = kernel
    try:
        for name, kw in calls.items():
            run = dict(threshold=ths, fees=0.001, backend="cpu", progress=False, **kw)
            res = gpusim.backtest(m, **run)
            walls, kerns = [], []
            for _ in range(max(repeats, 5)):
                spent[0] = 0.0
                t = time.perf_counter()
                gpusim.backtest(m, **run)
                walls.append(time.perf_counter() - t)
                kerns.append(spent[0])
            w, k = statistics.median(walls), statistics.median(kerns)
            print(f"{name:<24} {len(res.metrics):>7} {w * 1e3:>9.2f} {k * 1e3:>10.2f} "
                  f"{1 - k / w:>8.1%}")
    finally:
        bk.backtest_cpu_nb = real
    if big:
        import resource

        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        m10 = gpusim.synthetic_market(n_assets=5, n_bars=10, seed=1)
        t = time.perf_counter()
        res = gpusim.backtest(m10, weights=gpusim.RandomWeights(10 ** 6, seed=1),
                              fees=gpusim.Param(np.arange(10) / 1000), backend="cpu",
                              progress=False)
        r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"10^7 combinations x 10 bars: {time.perf_counter() - t:.1f} s, peak RSS "
              f"{r1:.0f} MiB (start {r0:.0f}), metrics frame "
              f"{res.metrics.memory_usage(deep=True).sum() / 2 ** 20:.0f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
