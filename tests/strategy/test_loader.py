"""gpusim.strategy.loader: functions named by "file.py:name" or "package.module:name"."""

import inspect
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpusim.errors import GpusimError
from gpusim.strategy.compile import prepare
from gpusim.strategy.loader import (
    MODULE_PREFIX,
    file_digest,
    load_function,
    parse_spec,
    resolve_spec,
)

SOURCE = "import numpy as np\n\n\ndef {name}(c, params, targets):\n    return c.t == {t}\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_parse_spec_forms():
    assert parse_spec("strategies.py:band") == ("file", "strategies.py", "band")
    assert parse_spec(" dir/s:band ") == ("file", "dir/s", "band")       # a path, no suffix
    assert parse_spec("C:/x/s.py:f") == ("file", "C:/x/s.py", "f")      # the last ':' splits
    assert parse_spec("pkg.mod:fn") == ("module", "pkg.mod", "fn")
    for bad, why in (("s.py", "has no ':NAME' part"), (":f", "has no ':NAME' part"),
                     ("s.py:", "is not a function name"), ("s.py:1f", "is not a function name"),
                     ("a b:f", "neither a .py file nor a module name"),
                     ("pkg..mod:f", "neither a .py file nor a module name")):
        with pytest.raises(GpusimError, match=why):
            parse_spec(bad, "--alloc")
    with pytest.raises(GpusimError, match=r"alloc=3 must be text"):
        parse_spec(3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(spec=st.one_of(st.text(max_size=40),
                      st.text(alphabet="ab.:/_ \\x1", max_size=20),
                      st.builds(lambda a, b: f"{a}:{b}", st.text(max_size=15),
                                st.text(max_size=8))))
def test_spec_parsing_never_crashes_with_anything_but_gpusim_error(spec, tmp_path):
    try:
        kind, target, name = parse_spec(spec, "--alloc")
    except GpusimError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("--alloc")
        return
    assert kind in ("file", "module") and name.isidentifier() and target
    if kind == "file":                 # no such file in an empty folder: one error line
        with pytest.raises(GpusimError, match=r"^--alloc .*(not found|cannot import)") as e:
            load_function(spec, tmp_path / "empty", what="--alloc")
        assert "\n" not in str(e.value)


def test_load_file_relative_to_base_dir_with_unique_module_names(tmp_path):
    a = _write(tmp_path / "a" / "strategies.py", SOURCE.format(name="band", t=0))
    b = _write(tmp_path / "b" / "strategies.py", SOURCE.format(name="band", t=1))
    fa = load_function("strategies.py:band", tmp_path / "a")
    fb = load_function("b/strategies.py:band", tmp_path)
    assert fa.__module__ != fb.__module__ and fa.__module__.startswith(MODULE_PREFIX)
    assert sys.modules[fa.__module__].__file__ == str(a.resolve())
    assert "c.t == 0" in inspect.getsource(fa) and "c.t == 1" in inspect.getsource(fb)
    # the same file again: the same module name (the compile cache is keyed by it), re-executed
    b.write_text(SOURCE.format(name="band", t=2))
    fb2 = load_function(f"{b}:band")
    assert fb2.__module__ == fb.__module__ and "c.t == 2" in inspect.getsource(fb2)
    assert prepare(fb2).first_line == 4             # compile.prepare reads the source
    assert resolve_spec("strategies.py:band", tmp_path / "a") == f"{a.resolve()}:band"
    assert resolve_spec("pkg.mod:fn", tmp_path) == "pkg.mod:fn"
    assert file_digest("strategies.py:band", tmp_path / "a") != file_digest(f"{b}:band")


def test_file_may_import_its_neighbours(tmp_path):
    _write(tmp_path / "helpers_for_loader_test.py", "TAU = 0.25\n")
    _write(tmp_path / "s.py", "from helpers_for_loader_test import TAU\n\n\ndef f(state):\n"
                              "    return TAU\n")
    assert load_function("s.py:f", tmp_path)(None) == 0.25
    assert str(tmp_path) not in sys.path


def test_load_module_spec(tmp_path, monkeypatch):
    _write(tmp_path / "loader_test_pkg" / "__init__.py", "")
    _write(tmp_path / "loader_test_pkg" / "strats.py", SOURCE.format(name="band", t=3))
    monkeypatch.syspath_prepend(str(tmp_path))
    f = load_function("loader_test_pkg.strats:band")
    assert f.__module__ == "loader_test_pkg.strats" and "c.t == 3" in inspect.getsource(f)
    assert file_digest("loader_test_pkg.strats:band") == file_digest(
        f"{tmp_path / 'loader_test_pkg' / 'strats.py'}:band")
    assert load_function("os.path:join")("a", "b") == "a/b"


def test_errors_name_the_argument(tmp_path):
    _write(tmp_path / "ok.py", SOURCE.format(name="band", t=0) + "\nX = 1\n\ndef _hidden():\n"
                                                                  "    pass\n")
    _write(tmp_path / "syntax.py", "def f(:\n    pass\n")
    _write(tmp_path / "raises.py", "x = 1\nraise RuntimeError('no data here')\n")
    _write(tmp_path / "empty.py", "X = 1\n")
    cases = [
        ("nope.py:f", f"alloc 'nope.py:f': file '{tmp_path / 'nope.py'}' not found (relative to "
                      f"{tmp_path})"),
        ("ok.py:other", f"alloc 'ok.py:other': {tmp_path / 'ok.py'} has no 'other'; its "
                        "functions: band"),
        ("ok.py:X", f"alloc 'ok.py:X': 'X' in {tmp_path / 'ok.py'} is a int, not a function"),
        ("empty.py:f", "has no 'f'; it defines no function"),
        ("syntax.py:f", f"importing {tmp_path / 'syntax.py'} failed: SyntaxError: "),
        ("raises.py:f", f"importing {tmp_path / 'raises.py'} failed: RuntimeError: no data "
                        "here (line 2)"),
        ("no_such_pkg_x.mod:f", "no module 'no_such_pkg_x.mod' (a file needs a .py suffix"),
    ]
    for spec, msg in cases:
        with pytest.raises(GpusimError) as e:
            load_function(spec, tmp_path)
        assert msg in str(e.value) and "\n" not in str(e.value), (spec, str(e.value))
    assert not [m for m in sys.modules if m.endswith("_raises")]   # a failed import is dropped
