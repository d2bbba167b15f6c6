"""Guided search (DESIGN §11): generations of candidates refit to their elite, and the batched
random sampler, for ex-ante Sharpe or ex-post backtest objectives under sampler constraints.

Entry point: :func:`search_batched`, reached through ``gpusim.search(market, method="guided",
...)`` (or ``method="random"`` with an objective or constraint the fused random kernel does
not take: ex-post objectives, ``max_assets``, ``min_weight``, ``holdout``).

Method: the cross-entropy method (CEM) on a logistic-normal. Generation ``g`` draws ``P``
logit vectors ``x = m + s * z`` (diagonal Gaussian, ``z`` from the counter-based stream keyed by
``(seed, g, i)``, :mod:`gpusim.search.sampling`), maps each to weights by softmax and the
constraint map, scores the population in chunks, and refits ``m, s`` to the best
``elite_frac * P`` candidates: ``m <- a mean(elite) + (1 - a) m`` with ``a = smoothing`` (0.7)
and ``s <- b std(elite) + (1 - b) s`` with ``b = scale_smoothing`` (0.3). The spread shrinks
more slowly than the mean moves: with ``b = a`` the spread collapses before the mean arrives
and the run stalls at a gap of 0.9999x; with ``b = 0.3`` it converges to the optimum within
1e-7 at 20 and 100 assets (measured). It stops
when the budget of evaluations is spent, or when the best score has not improved by more than
``1e-9`` relative for ``patience`` generations (converged).

Why this method (measured on this project's 2-core CPU; the final configuration with
``benchmarks/bench_guided.py``, the alternatives with NumPy prototypes of the same loop):
evaluations until the gap to cvxpy's exact long-only max Sharpe first reaches a threshold, on the 20
PyPortfolioOpt stocks (common window, 896 bars) and on seeded 100-asset synthetic markets,

=============================================  ======================  ======================
method (population P)                          A = 20: gap 0.9999      A = 100: gap 0.999
=============================================  ======================  ======================
CEM, diagonal logistic-normal, spread           9 k (0.01 s); stops    32 k (0.11 s); stops
smoothed 0.3 (this module, P = max(200, 5 A))   at 0.999998            at 0.9999996
same, spread smoothed 0.7 like the mean (P=1k)  46 k; stalls 0.99995    58 k; stalls 0.99992
CEM, full covariance (EMNA, P = 1000-2000)      47 k; stalls 0.99997    not reached (0.987)
CMA-ES on the logits (P = 256; P = 4096)        12 k                    not reached in 40 s
                                                                        (0.94; 0.996)
CEM on a Dirichlet (moment fit, P = 3000)       1.3 M                   219 k; stalls 0.9998
random Dirichlet (the fused kernel)             not reached at 10^8     not reached at 10^8
                                                (0.938, 2.2 s)          (0.413, 23 s)
=============================================  ======================  ======================

CMA-ES is the most sample-efficient at 20 assets, but its full covariance needs O(A^2)
generations to learn at 100 assets and an O(A^3) eigendecomposition per generation, and its step
size diverges along the directions where the objective is flat (the logits of assets the optimum
does not hold, which run off to -inf); a full-covariance CEM fits a covariance of A^2 entries
from ``0.1 P`` elite points and stalls. The diagonal CEM costs O(P A) per generation on top of the
scoring, reaches both targets in well under a second (10^8 random candidates take 2.2 s and 23 s
and stay far away), and only needs the elite's mean and spread, so it works unchanged for
ex-post objectives and cardinality constraints (where the support is the top-K logits). The
Dirichlet CEM stalls because one concentration sets the spread of every asset. It also held on
two more real sets (20 skfolio S&P stocks; 44 stocks and factor ETFs combined: gap >= 0.99999)
and at 200 synthetic assets (0.99998, 0.999 after 0.1 M evaluations).

Reproducibility: populations are generated on the host from ``(seed, g, i)``; each candidate is
scored by a fixed-order body (ex-ante) or the backtest kernel (ex-post), independent of the
chunk size; elite ties break by index. So the same seed gives the same run for any
``chunk_size`` and on the CPU or the CUDA backend (its kernels round as the CPU does).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd

from gpusim.errors import GpusimError
from gpusim.interrupt import Interrupt
from gpusim.search import sampling as smp
from gpusim.search.guided_result import GuidedResult, build_result
from gpusim.search.objectives import OBJECTIVES, ExAnte, ExPost, split_holdout
from gpusim.validate import dirichlet_alpha

METHODS = ("guided", "random")
DEFAULTS = {"elite_frac": 0.1, "smoothing": 0.7, "scale_smoothing": 0.3, "sigma0": 2.0,
            "patience": 30}
IMPROVE_RTOL = 1e-9    # a best score must rise by more than this (relative) to count
CHUNK_CAP = 1 << 16    # candidates per scoring call when chunk_size is not given
MIN_ELITE = 2
PARALLEL_MIN_OPS = 1 << 25  # batches smaller than this run on one thread (see _work)
WORK_PER_ASSET = 20         # rough cost per asset of drawing, mapping or one bar's backtest step


def _work(problem, batch: int) -> float:
    """Rough operation count of scoring one batch (decides whether to run in parallel)."""
    A = problem.A
    if problem.objective.kind == "ex-ante":
        return batch * A * (A + WORK_PER_ASSET)
    return batch * problem.objective.close.shape[0] * A * WORK_PER_ASSET


def default_population(A: int) -> int:
    """Candidates per generation when ``population`` is not given: ``max(200, 5 A)``."""
    return max(200, 5 * A)


# ----------------------------------------------------------------------------- top-k
@dataclass
class TopK:
    """The k best candidates seen so far (host arrays), ordered by score desc, then id asc."""

    k: int
    score: np.ndarray = field(default_factory=lambda: np.empty(0))
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    gen: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    W: np.ndarray | None = None
    table: np.ndarray | None = None

    def add(self, score, ids, gen, W, table) -> None:
        """Merge a batch: score (n,), ids (n,) int64, gen (n,) int64, W (n, A), table (n, c)."""
        keep = np.isfinite(score)
        if not keep.any():
            return
        score, ids, gen, W, table = score[keep], ids[keep], gen[keep], W[keep], table[keep]
        if self.W is not None:
            score = np.concatenate([self.score, score])
            ids = np.concatenate([self.ids, ids])
            gen = np.concatenate([self.gen, gen])
            W = np.concatenate([self.W, W])
            table = np.concatenate([self.table, table])
        order = np.lexsort((ids, -score))[:self.k]
        self.score, self.ids, self.gen = score[order], ids[order], gen[order]
        self.W, self.table = W[order], table[order]

    @property
    def best(self) -> float:
        return float(self.score[0]) if self.score.size else -math.inf


# ----------------------------------------------------------------------------- the problem
@dataclass
class Problem:
    """A validated search problem: objective(s), constraints and labels (host objects)."""

    objective: object            # ExAnte | ExPost on the (training) bars
    oos: object | None           # the same objective on the held-out bars, or None
    symbols: list
    lo: np.ndarray
    hi: np.ndarray
    max_assets: int              # A when unconstrained
    min_weight: float
    info: dict                   # summary entries (market, ann, holdout, constraints, ...)

    @property
    def A(self) -> int:
        return len(self.symbols)

    def weights(self, X: np.ndarray, logits: bool):
        """Constrained weights (n, A) and feasibility (n,) of logits or simplex points X."""
        f = smp.logits_to_weights_nb if logits else smp.constrain_nb
        return f(np.ascontiguousarray(X), self.max_assets, self.min_weight, self.lo, self.hi)


def _check_constraints(max_assets, min_weight, lo, hi, A):
    if max_assets is None:
        K = A
    else:
        if isinstance(max_assets, bool) or int(max_assets) != max_assets or max_assets < 1:
            raise GpusimError(f"max_assets={max_assets!r} must be a whole number >= 1")
        K = min(int(max_assets), A)
    try:
        m = float(min_weight or 0.0)
    except (TypeError, ValueError):
        raise GpusimError(f"min_weight={min_weight!r} must be a number in [0, 1)") from None
    if not 0.0 <= m < 1.0:
        raise GpusimError(f"min_weight={min_weight!r} must lie in [0, 1)")
    forced = int((lo > 0).sum())
    if forced > K:
        raise GpusimError(f"{forced} assets have a lower bound > 0 but max_assets={K}")
    if lo.sum() > 1.0 + 1e-12 or np.maximum(lo, m)[lo > 0].sum() > 1.0 + 1e-12:
        raise GpusimError("the lower bounds (and min_weight) of the forced assets sum above 1")
    if m * (forced or 1) > 1.0:
        raise GpusimError(f"min_weight={m} cannot be met by {forced} held assets")
    if np.sort(hi)[::-1][:K].sum() < 1.0 - 1e-12:
        raise GpusimError(f"the upper bounds of any {K} assets sum below 1: no portfolio of at "
                          "most max_assets assets is fully invested; raise hi or max_assets")
    return K, m


def make_problem(market, *, objective, rebalance, threshold, relative, fees, init_cash, rf, ann,
                 symbols, bounds, max_assets, min_weight, holdout, backend) -> Problem:
    """Validate the arguments and build the (training and held-out) objectives."""
    from gpusim.data.load import load_prices
    from gpusim.data.market import Market
    from gpusim.search.inputs import resolve_bounds, stats_from

    if objective not in OBJECTIVES:
        raise GpusimError(f"objective={objective!r} is unknown; use one of {OBJECTIVES}")
    ex_post = (objective != "sharpe" or rebalance is not None or threshold is not None
               or fees is not None)
    if isinstance(market, (str, bytes)) or hasattr(market, "__fspath__"):
        market = load_prices(market, ann=ann)
    elif hasattr(market, "columns") and hasattr(market, "index"):
        market = load_prices(market, ann=ann)
    if isinstance(market, Market) and symbols is not None:
        market = market.subset(list(symbols))
    if (ex_post or holdout is not None) and not isinstance(market, Market):
        raise GpusimError("ex-post objectives and holdout= need prices: pass a gpusim.Market "
                          "or a price DataFrame, not (mu, cov)")
    info = {}
    train, test = market, None
    if holdout is not None:
        train, test = split_holdout(market, holdout)
        info["holdout"] = {"spec": holdout if isinstance(holdout, (int, float)) else str(holdout),
                           "start": str(test.prices.index[0]), "n_train_bars": train.n_bars,
                           "n_test_bars": test.n_bars}
    if ex_post:
        def build(m):
            return ExPost(m, objective, "never" if rebalance is None else rebalance, threshold,
                          relative, 0.0 if fees is None else fees, init_cash, rf, backend)
    else:
        def build(m):
            mu, cov, a, _, _, _ = stats_from(m, ann, None)
            return ExAnte(mu, cov, a, rf, backend)
    obj = build(train)
    mu, cov, ann_v, ann_src, syms, name = stats_from(train, ann, symbols if not isinstance(
        train, Market) else None)
    lo, hi = resolve_bounds(bounds, len(syms), syms)
    K, m = _check_constraints(max_assets, min_weight, lo, hi, len(syms))
    info.update({"market": name, "ann": ann_v, "ann_source": ann_src, "rf": float(rf),
                 "mu": mu.tolist(), "cov": cov.tolist(), "bounds": None if bounds is None else
                 {"lo": lo.tolist(), "hi": hi.tolist()}, "max_assets": None if max_assets is None
                 else K, "min_weight": m})
    return Problem(obj, None if test is None else build(test), syms, lo, hi, K, m, info)


# ----------------------------------------------------------------------------- methods
class CrossEntropy:
    """Diagonal logistic-normal refit to the elite (host float64 arrays of shape (A,))."""

    def __init__(self, A: int, P: int, elite_frac: float, smoothing: float,
                 scale_smoothing: float, sigma0: float):
        self.P = P
        self.n_elite = max(MIN_ELITE, round(elite_frac * P))
        self.smoothing = smoothing
        self.scale_smoothing = scale_smoothing
        self.mean = np.zeros(A)
        self.scale = np.full(A, float(sigma0))

    def propose(self, seed: int, g: int, start: int, n: int) -> np.ndarray:
        """Logits (n, A) of candidates ``start .. start+n-1`` of generation ``g``."""
        return smp.draw_logits_nb(smp.generation_key(seed, g), start, n, self.mean, self.scale)

    def refit(self, X: np.ndarray, score: np.ndarray) -> None:
        """Move (mean, scale) toward the elite of the population X (P, A) scored ``score``."""
        order = np.lexsort((np.arange(score.size), -score))[:self.n_elite]
        E = X[order]
        a, b = self.smoothing, self.scale_smoothing
        self.mean = a * E.mean(axis=0) + (1.0 - a) * self.mean
        self.scale = b * E.std(axis=0) + (1.0 - b) * self.scale


def _evaluate(problem: Problem, X, logits: bool):
    W, ok = problem.weights(X, logits)
    score, table = problem.objective.score(W, ok)
    return W, score, table


def _run_guided(problem, seed, budget, P, chunk, opts, top, bar, state):
    """Generations until the budget or convergence; counts in ``state`` (evaluated,
    generations, the sampling parameters of each generation); returns why it stopped.
    """
    cem = CrossEntropy(problem.A, P, opts["elite_frac"], opts["smoothing"],
                       opts["scale_smoothing"], opts["sigma0"])
    best, stall = -math.inf, 0
    for g in range(max(1, budget // P)):
        if state["interrupt"]:
            return "interrupted"
        state["history"][g] = (cem.mean.copy(), cem.scale.copy())
        X = np.empty((P, problem.A))
        score = np.empty(P)
        for c0 in range(0, P, chunk):
            n = min(chunk, P - c0)
            X[c0:c0 + n] = cem.propose(seed, g, c0, n)
            W, score[c0:c0 + n], table = _evaluate(problem, X[c0:c0 + n], True)
            ids = np.arange(g * P + c0, g * P + c0 + n, dtype=np.int64)
            top.add(score[c0:c0 + n], ids, np.full(n, g, dtype=np.int64), W, table)
            state["done"] += n
        state["generations"] = g + 1
        state["trace"].append((state["done"], time.perf_counter(), top.best))
        cem.refit(X, score)
        bar.update(1)
        bar.set_postfix(best=f"{top.best:.6g}", refresh=False)
        improved = (top.best > best + IMPROVE_RTOL * abs(best) if math.isfinite(best)
                    else math.isfinite(top.best))
        best, stall = (top.best, 0) if improved else (best, stall + 1)
        if stall >= opts["patience"]:
            return "converged"
    return "budget"


def _run_random(problem, seed, start, n, chunk, sampler_code, alpha, top, bar, state):
    """Candidates start..start+n-1 of the plain Dirichlet stream, constrained and scored."""
    from cpu_ref.rng import population_nb

    A = problem.A
    zeros, ones = np.zeros(A), np.ones(A)
    while state["done"] < n:
        if state["interrupt"]:
            return "interrupted"
        i0 = start + state["done"]
        m = min(chunk, n - state["done"])
        S, _ = population_nb(seed, i0, m, A, sampler_code, alpha, zeros, ones)
        W, score, table = _evaluate(problem, S, False)
        top.add(score, np.arange(i0, i0 + m, dtype=np.int64), np.full(m, -1, dtype=np.int64),
                W, table)
        state["done"] += m
        state["trace"].append((state["done"], time.perf_counter(), top.best))
        bar.update(m)
        bar.set_postfix(best=f"{top.best:.6g}", refresh=False)
    return "budget"


def _execute(problem, method, a, P, chunk, opts, label, show, top, state):
    """Run the method with a progress bar (generations or candidates); a Ctrl-C keeps what
    was scored. Small batches run on one Numba thread. Returns (stop, partial, elapsed_s).
    """
    from tqdm.auto import tqdm

    n = a["n"]
    total = max(1, n // P) if method == "guided" else n
    bar = tqdm(total=total, unit="gen" if method == "guided" else "cand", disable=not show,
               desc=f"search {method} [{label}]", leave=False)
    partial = False
    threads = numba.get_num_threads()
    if _work(problem, P if method == "guided" else chunk) < PARALLEL_MIN_OPS:
        numba.set_num_threads(1)  # small batches: a parallel launch costs more than it saves
    t0 = time.perf_counter()
    state["interrupt"] = Interrupt().install()   # Ctrl-C: stop at the next batch
    try:
        if method == "guided":
            stop = _run_guided(problem, a["seed"], n, P, chunk, opts, top, bar, state)
        else:
            stop = _run_random(problem, a["seed"], a["start"], n, chunk, a["code"], a["alpha"],
                               top, bar, state)
    except KeyboardInterrupt:
        partial, stop = True, "interrupted"
    finally:
        state.pop("interrupt").restore()
        bar.close()
        numba.set_num_threads(threads)
    partial = partial or stop == "interrupted"
    state["trace"] = [(d, t - t0, b) for d, t, b in state["trace"]]
    return stop, partial, time.perf_counter() - t0


# ----------------------------------------------------------------------------- entry point
def search_batched(market, *, method: str = "guided", objective: str = "sharpe", budget=None,
                   seed: int = 0, top_k: int = 10, bounds=None, max_assets=None,
                   min_weight: float = 0.0, rebalance=None, threshold=None,
                   relative: bool = False, fees=None, init_cash: float = 1.0, holdout=None,
                   rf: float = 0.0, ann=None, symbols=None, backend="auto", chunk_size=None,
                   progress=None, baselines: bool = True, solver=None, population=None,
                   sampler: str = "dirichlet", alpha: float = 1.0, start: int = 0,
                   dtype: str = "float64", **options) -> GuidedResult:
    """Guided (CEM) or batched random search of ``budget`` evaluations; see
    :func:`gpusim.search.api.search` for the arguments shared with the fused random search.

    Extra parameters
    ----------------
    method : ``"guided"`` or ``"random"``.
    objective : ``"sharpe"`` (ex-ante unless ``rebalance``/``threshold``/``fees`` is given),
        ``"sortino"``, ``"calmar"``, ``"max_drawdown"``, ``"cagr"`` (ex-post; rebalance
        default ``"never"``).
    budget : evaluations (guided: ``budget // population`` generations at most).
    max_assets, min_weight : at most K assets held; every held weight >= min_weight.
    rebalance, threshold, relative, fees, init_cash : the §6 backtest of each candidate.
    holdout : fraction or date; search the bars before it, report both.
    population : candidates per generation (default :func:`default_population`).
    options : ``elite_frac`` (0.1), ``smoothing`` (0.7, of the mean), ``scale_smoothing`` (0.3,
        of the spread), ``sigma0`` (2.0, initial spread of the logits), ``patience`` (30).

    Returns
    -------
    GuidedResult (host memory); Ctrl-C keeps the best so far (``partial``).
    """
    from gpusim.backend import resolve_backend
    from gpusim.search.inputs import _as_int, check_args

    if method not in METHODS:
        raise GpusimError(f"method={method!r} is unknown; use one of {METHODS}")
    if dtype != "float64":
        raise GpusimError(f"dtype={dtype!r}: the guided and batched searches score in float64")
    bad = sorted(set(options) - set(DEFAULTS))
    if bad:
        raise GpusimError(f"unknown option(s) {bad}; guided options are {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    be = resolve_backend(backend)
    a = check_args(n=budget if budget is not None else 10**6, top_k=top_k, seed=seed,
                   sampler=sampler, alpha=alpha, rf=rf, dtype="float64", backend_name=be.name,
                   start=start)
    problem = make_problem(market, objective=objective, rebalance=rebalance, threshold=threshold,
                           relative=relative, fees=fees, init_cash=init_cash, rf=a["rf"],
                           ann=ann, symbols=symbols, bounds=bounds, max_assets=max_assets,
                           min_weight=min_weight, holdout=holdout, backend=be)
    A, n = problem.A, a["n"]
    if sampler == "dirichlet":
        dirichlet_alpha(alpha, A)
    P = _as_int(population, "population", MIN_ELITE, 1 << 24) if population is not None else (
        min(n, default_population(A)))
    chunk = _as_int(chunk_size, "chunk_size", 1, 1 << 30) if chunk_size is not None else (
        min(CHUNK_CAP, P if method == "guided" else n))
    top = TopK(a["top_k"])
    state = {"done": 0, "generations": 0, "history": {}, "trace": []}
    show = progress if progress is not None else sys.stderr.isatty()
    stop, partial, elapsed = _execute(problem, method, a, P, chunk, opts, be.label, show, top,
                                      state)
    run = {"method": method, "objective": objective, "seed": a["seed"], "budget": n,
           "population": P if method == "guided" else None,
           "options": opts if method == "guided" else None, "sampler": sampler,
           "alpha": a["alpha"], "start": a["start"], "n_evaluated": state["done"],
           "generations": state["generations"], "stopped": stop, "partial": partial,
           "backend": be.label, "elapsed_s": elapsed, "chunk_size": chunk}
    res = build_result(problem, top, run, state["history"], baselines, solver)
    res.trace = pd.DataFrame(state["trace"], columns=["n_evaluated", "elapsed_s", "best"])
    return res
