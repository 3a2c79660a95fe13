"""RecBole 1.2.1 on numpy 2: the aliases it reads are set before its first module runs, all or
none, and a stack the plugin cannot use is refused in one line that says what to install."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from recbole_mamba import recbole_stack
from recbole_mamba.errors import InputError
from recbole_mamba.recbole_stack import NUMPY_ALIASES, check_ray, check_recbole, numpy_aliases, version_tuple


def fake_numpy(version, **names):
    module = types.ModuleType("numpy")
    module.__version__ = version
    for target in set(NUMPY_ALIASES.values()):
        setattr(module, target, getattr(np, target))
    for name, value in names.items():
        setattr(module, name, value)
    return module


def test_version_tuple_reads_release_numbers_only():
    assert version_tuple("2.4.6") == (2, 4, 6)
    assert version_tuple("2.60.0rc1") == (2, 60, 0)
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("1.26") < (2, 0) <= version_tuple("2.0.0")


def test_numpy_2_gets_each_missing_alias_as_recboles_compatibility_settings_sets_it():
    aliases = numpy_aliases(fake_numpy("2.4.6"))
    assert aliases == {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_,
                       "float": np.float64, "int": np.int_, "complex": np.complex128,
                       "object": np.object_, "str": np.str_, "unicode": np.str_}
    kept = object()
    assert "float" not in numpy_aliases(fake_numpy("2.4.6", float=kept))  # a name numpy has is left alone


def test_a_numpy_1_or_another_recbole_is_refused_in_one_line():
    with pytest.raises(InputError, match=r"^numpy 1\.26\.4 is installed; recbole-mamba needs numpy >= 2\.0: "
                                         r"pip install -U 'numpy>=2'$"):
        numpy_aliases(fake_numpy("1.26.4"))
    with pytest.raises(InputError, match=r"^recbole is not installed: pip install --no-deps recbole==1\.2\.1 "):
        check_recbole(None)
    with pytest.raises(InputError, match=r"^recbole 1\.2\.0 is installed; recbole-mamba is built on recbole 1\.2\.1: "
                                         r"pip install --no-deps recbole==1\.2\.1$"):
        check_recbole("1.2.0")
    check_recbole("1.2.1")


def test_rays_older_than_the_tune_code_needs_are_refused_in_one_line():
    with pytest.raises(InputError, match=r"^ray 2\.6\.3 is installed; searches and grids need ray >= 2\.43: "
                                         r"pip install -U 'ray\[tune\]>=2\.43'$"):
        check_ray("2.6.3")
    with pytest.raises(InputError, match=r"^ray is not installed; "):
        check_ray(None)
    check_ray("2.43.0")
    check_ray("2.60.0")


def test_nothing_is_set_when_a_check_fails(monkeypatch):
    numpy = fake_numpy("2.4.6")
    monkeypatch.setitem(sys.modules, "numpy", numpy)
    monkeypatch.setattr(recbole_stack, "installed_version", lambda name: "1.2.0")
    with pytest.raises(InputError):
        recbole_stack.apply()
    assert not any(hasattr(numpy, name) for name in NUMPY_ALIASES)
    monkeypatch.setattr(recbole_stack, "installed_version", lambda name: "1.2.1")
    recbole_stack.apply()
    assert all(hasattr(numpy, name) for name in NUMPY_ALIASES)


@pytest.mark.parametrize("first", ["recbole_mamba", "recbole"])
def test_recboles_config_builds_whichever_is_imported_first(first, tmp_path):
    """In a fresh interpreter: RecBole's own Config (its compatibility_settings reads np.float_)
    and its metrics (np.float) run on numpy 2, with recbole imported before or after the plugin."""
    code = (f"import {first}\nimport recbole_mamba\n"
            "import numpy as np\nfrom recbole.config import Config\n"
            "Config('BPR', 'ml-100k', config_dict={'data_path': '.', 'show_progress': False})\n"
            "from recbole.evaluator.metrics import NDCG\n"
            "print(np.__version__, NDCG.metric_info(NDCG, np.array([[True, False]]), np.array([2])).tolist())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    version, result = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    assert version_tuple(version) >= (2,)
    assert json.loads(result)[0] == pytest.approx([1.0, 1 / (1 + 1 / np.log2(3))])  # NDCG@1, @2: one hit at rank 1


def test_the_command_line_says_a_missing_recbole_in_one_line(tmp_path):
    code = ("import sys\nimport recbole_mamba.recbole_stack as stack\n"
            "stack.installed_version = lambda name: None  # as if recbole were not installed\n"
            "from recbole_mamba.entry import main\nsys.exit(main(['--epochs=1']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "run_recbole_mamba.py: error: recbole is not installed: pip install --no-deps recbole==1.2.1 (its declared "
        "ray<=2.6.3 would downgrade Ray; docs/recbole-stack.md)"]
