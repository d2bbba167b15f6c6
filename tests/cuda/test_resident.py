"""GPU runners keep inputs on the device across chunks, allocate scratch once and return
results through pinned buffers (DESIGN §3); results equal the one-shot launchers (simulator).
"""

import numpy as np
import pytest
from numba import cuda

from gpusim._cuda.resident import ChunkOutput


def test_chunk_output_view_and_fetch():
    out = ChunkOutput(4, 3)
    out.view(2).copy_to_device(np.arange(6.0).reshape(2, 3))
    got = out.fetch(2)
    assert got.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    out.view(1).copy_to_device(np.full((1, 3), 9.0))
    assert got[0, 0] == 0.0           # the fetched chunk is a copy, not the reused buffer
    with pytest.raises(ValueError, match="a chunk of 5 rows does not fit the 4-row buffer"):
        out.view(5)


class _CountTransfers:
    """Counts host-to-device copies of arrays with at least ``min_size`` elements."""

    def __init__(self, monkeypatch, min_size):
        self.big = 0
        self.sizes = []            # elements of every copy, in order
        real = cuda.to_device

        def to_device(a, *args, **kw):
            n = np.asarray(a).size
            self.sizes.append(n)
            if n >= min_size:
                self.big += 1
            return real(a, *args, **kw)

        monkeypatch.setattr(cuda, "to_device", to_device)


def test_dynopt_runner_resident_across_chunks(monkeypatch):
    from gpusim import Param, dynopt, synthetic_futures
    from gpusim.dynopt import cuda as dc

    data = synthetic_futures(n_instruments=3, n_days=50, seed=2)
    kw = dict(idm=2.0, capital=Param([2e5, 5e5, 1e6]), shadow_cost=Param([0.0, 10.0]),
              buffer=0.01, min_periods=10, progress=False)
    cpu = dynopt(data, backend="cpu", **kw)
    made = []
    real_init = dc.DynoptGpuRunner.__init__

    def init(self, *a, **k):
        made.append(a[-1])
        real_init(self, *a, **k)

    monkeypatch.setattr(dc.DynoptGpuRunner, "__init__", init)
    runs, big = [], []
    for cs in (None, 4, 2):       # 1, 2 and 3 chunks of the 6 combinations
        count = _CountTransfers(monkeypatch, min_size=50)   # (T, N) and (T,) inputs, not params
        runs.append(dynopt(data, backend="gpu", chunk_size=cs, **kw))
        big.append(count.big)
    assert [r.summary["n_chunks"] for r in runs] == [1, 2, 3]
    assert made == [6, 4, 2]              # one runner per call, sized for its largest chunk
    assert big[0] >= 8 and big == [big[0]] * 3   # inputs cross once, whatever the chunks
    for r in runs[1:]:
        np.testing.assert_array_equal(r.metrics.to_numpy(), runs[0].metrics.to_numpy())
    np.testing.assert_allclose(runs[0].metrics.to_numpy(), cpu.metrics.to_numpy(), rtol=1e-10,
                               atol=1e-14)


def test_dynopt_runner_checks_its_parameters():
    from gpusim import synthetic_futures
    from gpusim.dynopt.cuda import DynoptGpuRunner
    from gpusim.dynopt.inputs import prepare

    inp = prepare(synthetic_futures(n_instruments=2, n_days=30, seed=1), None, None, None, None,
                  None, min_periods=5)
    masks = np.ones((1, inp.dprice.shape[0]), dtype=bool)
    run = DynoptGpuRunner(*inp.kernel_args(), masks, inp.ann, 3)
    with pytest.raises(ValueError, match="mid must index rows of masks"):
        run([1], [1e6], [0.0], [0.0])
    with pytest.raises(ValueError, match="a chunk of 4 rows does not fit"):
        run([0] * 4, [1e6] * 4, [0.0] * 4, [0.0] * 4)


def test_backtest_runner_resident_across_chunks(monkeypatch):
    import gpusim
    from gpusim import Param
    from gpusim.backtest import cuda as bc

    m = gpusim.synthetic_market(n_assets=3, n_bars=80, seed=6)
    kw = dict(weights=gpusim.RandomWeights(5, seed=1), rebalance=Param(["never", "M"]),
              threshold=Param([None, 0.03]), fees=0.002, init_cash=100, progress=False)
    cpu = gpusim.backtest(m, backend="cpu", **kw)
    made = []
    real_init = bc.BacktestGpuRunner.__init__

    def init(self, *a, **k):
        made.append(a[-1])
        real_init(self, *a, **k)

    monkeypatch.setattr(bc.BacktestGpuRunner, "__init__", init)
    runs, big, sizes = [], [], []
    for cs in (None, 8, 3):          # 20 combinations: 1, 3 and 7 chunks
        count = _CountTransfers(monkeypatch, min_size=80)   # prices and masks, not the weights
        runs.append(gpusim.backtest(m, backend="gpu", chunk_size=cs, **kw))
        big.append(count.big)
        sizes.append(list(count.sizes))
    assert [r.summary["n_chunks"] for r in runs] == [1, 3, 7]
    assert made == [20, 8, 3]
    assert big == [2, 2, 2]           # close (T, A) and masks (M, T): once per call
    # per chunk one copy, the weight block (4 combinations per weight vector of 3 numbers:
    # chunks of 8 span 2, 2, 1 vectors; of 3: 1, 2, 2, 1, 1, 2, 1); wid, mid, bid and fees are
    # decoded on the device from tables that cross once per call
    assert len(sizes[1]) - len(sizes[0]) == 2 and len(sizes[2]) - len(sizes[0]) == 6
    assert sizes[0][-1:] == [15] and sizes[1][-3:] == [6, 6, 3]
    assert sizes[2][-7:] == [3, 6, 6, 3, 3, 6, 3]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.metrics.to_numpy(), runs[0].metrics.to_numpy())
    np.testing.assert_allclose(runs[0].metrics.to_numpy(), cpu.metrics.to_numpy(), rtol=1e-10,
                               atol=1e-12)


def _walkforward_kwargs(**kw):
    from gpusim import Param
    from gpusim.walkforward.constraints import WeightBounds

    return dict(every=Param(["W", 20]), lookback=Param([None, 30]), num_tests=Param([16, 40]),
                fees=Param([0.0, 0.002]), start=40, seed=3, progress=False,
                constraints=[WeightBounds(hi=0.8)], **kw)


def test_walkforward_search_resident_across_blocks_of_dates(monkeypatch):
    import gpusim
    from gpusim.walkforward import chunked
    from gpusim.walkforward import cuda as wc

    m = gpusim.synthetic_market(n_assets=3, n_bars=120, seed=5)
    cpu = gpusim.walkforward(m, backend="cpu", **_walkforward_kwargs())
    calls, made = [], []
    real_call, real_init = wc.SearchGpuRunner.__call__, wc.SearchGpuRunner.__init__

    def init(self, *a, **k):
        made.append(1)
        real_init(self, *a, **k)

    def call(self, task_key, *a, **k):
        calls.append(len(task_key))
        return real_call(self, task_key, *a, **k)

    monkeypatch.setattr(wc.SearchGpuRunner, "__init__", init)
    monkeypatch.setattr(wc.SearchGpuRunner, "__call__", call)
    monkeypatch.setattr(chunked, "MIN_BLOCK_WORK", 1.0)       # one block per date
    count = _CountTransfers(monkeypatch, min_size=1)
    gpu = gpusim.walkforward(m, backend="gpu", **_walkforward_kwargs())
    n_dates = gpu.summary["n_dates"]
    assert made == [1] and len(calls) == n_dates > 4
    # once per call: 8 window arrays (incl. the variance floors), 6 bounds arrays, the
    # checkpoints and 7 execution inputs; per block of dates: the stream keys and the 5 task
    # arrays only
    assert len(count.sizes) == 8 + 6 + 1 + 7 + 6 * n_dates
    for key in cpu.metrics.index:
        a, b = cpu.decisions(key), gpu.decisions(key)
        assert a["candidate"].equals(b["candidate"]) and a["n_accepted"].equals(b["n_accepted"])
    # the output buffers are reused from block to block: each thread resets its own slots
    np.testing.assert_allclose(gpu.metrics.to_numpy(), cpu.metrics.to_numpy(), rtol=1e-10,
                               atol=1e-13)
    np.testing.assert_allclose(gpu.report.to_numpy(float), cpu.report.to_numpy(float),
                               rtol=1e-12)


def test_walkforward_search_resends_bounds_only_when_they_change(monkeypatch):
    import gpusim
    from gpusim.walkforward import chunked
    from gpusim.walkforward.constraints import WeightBounds

    m = gpusim.synthetic_market(n_assets=3, n_bars=120, seed=5)
    kw = _walkforward_kwargs()
    kw["constraints"] = [WeightBounds(hi=lambda state, t: 0.5 + 0.1 * (state.bar % 3))]
    cpu = gpusim.walkforward(m, backend="cpu", **kw)
    monkeypatch.setattr(chunked, "MIN_BLOCK_WORK", 1.0)
    count = _CountTransfers(monkeypatch, min_size=1)
    gpu = gpusim.walkforward(m, backend="gpu", **kw)
    n = gpu.summary["n_dates"]
    per_block = len(count.sizes) - (7 + 1 + 7)
    # callable bounds are per block: the 6 bounds arrays travel with a block when they differ
    # from the previous block's (they do on most dates here), besides its 6 task arrays
    assert 6 * n < per_block <= 12 * n
    for key in cpu.metrics.index:
        assert cpu.decisions(key)["candidate"].equals(gpu.decisions(key)["candidate"])
    np.testing.assert_allclose(gpu.metrics.to_numpy(), cpu.metrics.to_numpy(), rtol=1e-10,
                               atol=1e-13)


def test_walkforward_execution_in_chunks_equals_cpu():
    import gpusim
    from gpusim.walkforward.cuda import execute_gpu
    from gpusim.walkforward.execute import execute_cpu_nb

    m = gpusim.synthetic_market(n_assets=3, n_bars=120, seed=5)
    s = gpusim.walkforward(m, backend="cpu", **_walkforward_kwargs())._s
    args = (np.ascontiguousarray(s.close[s.s0:]), s.Wall, s.woff, s.wsid, s.masks, s.mid,
            s.fee_c, s.init_cash, s.ctx.ann, s.ctx.rf)
    cpu = execute_cpu_nb(*args)
    assert len(cpu) == 16
    for cs in (16, 5, 1):     # 1, 4 and 16 chunks through one scratch and pinned buffer
        np.testing.assert_array_equal(execute_gpu(*args, chunk_size=cs), cpu)
    assert execute_gpu(*args[:3], s.wsid[:0], s.masks, s.mid[:0], s.fee_c[:0],
                       *args[7:]).shape == (0, 11)
