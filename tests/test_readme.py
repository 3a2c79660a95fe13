"""Every Python example in README.md runs exactly as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_example_runs(index, in_tmp_dir, monkeypatch):
    monkeypatch.setattr("sys.argv", ["python"])  # plain RecBole's Config reads the command line
    exec(compile(PYTHON_BLOCKS[index], f"README.md python block {index + 1}", "exec"), {})
