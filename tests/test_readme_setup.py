"""The README's two set-up commands: one install for any ``python3`` 3.11-3.13, and CI runs the
test command exactly as the README writes it (``.ci/run`` reads it from the README)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN_TITLE = "Install and run the main job (MambaRec on the ml-100k dataset that ships inside recbole; about 1"
TEST_TITLE = "Install and run the tests:"
INSTALL = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && "
           "pip install --no-deps recbole==1.2.1 && pip install -e ")


def readme_block_after(title):
    """The lines of the first ```bash block after the README's line ``title``."""
    text = (ROOT / "README.md").read_text()
    after = text.split(f"\n{title}\n", 1)
    assert len(after) == 2, f"no line {title!r} in the README"
    block = re.search(r"```bash\n(.*?)```", after[1], flags=re.S)
    return block.group(1).splitlines()


def ci_readme_command(title):
    """What ``.ci/run``'s own ``readme_command`` reads from the README under ``title``."""
    script = (ROOT / ".ci" / "run").read_text()
    function = re.search(r"^readme_command\(\) \{\n.*?^\}\n", script, flags=re.S | re.M).group(0)
    return subprocess.run(["bash", "-c", f'{function}readme_command "$1"', "bash", title], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=30).stdout


def test_the_readme_installs_with_python3_and_one_torch_for_every_python():
    main, test = readme_block_after(MAIN_TITLE), readme_block_after(TEST_TITLE)
    assert main == [INSTALL + ". && python run_recbole_mamba.py"]
    assert test == [INSTALL + '".[dev]" && python -m pytest tests']
    assert "python3.1" not in (ROOT / "README.md").read_text().split("## What the main job prints")[0]


def test_ci_runs_the_readme_test_command_as_written():
    (test,) = readme_block_after(TEST_TITLE)
    assert ci_readme_command(TEST_TITLE) == test + "\n"
    script = (ROOT / ".ci" / "run").read_text()
    assert "command=\"$(readme_command 'Install and run the tests:')\"" in script
    assert 'bash -euo pipefail -c "$command ${*:2}"' in script
    # no install of CI's own: every pip and venv command of CI is the README's
    code = [line for line in script.split("readme_command() {")[1].splitlines() if not line.lstrip().startswith("#")]
    assert [line for line in code if re.search(r"pip install|-m venv", line)] == []


def test_ci_finds_nothing_under_a_title_the_readme_lacks():
    assert ci_readme_command("Install and run the benchmarks:") == ""
