"""The README and docs/ stay true: every relative link and image exists (anchors included), every
Python block runs exactly as written, and every command in the README's shell examples uses only
options the command line has."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, block) for page in PAGES
          for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_the_readme_is_short_and_every_page_is_linked():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    index = (ROOT / "docs" / "README.md").read_text()
    for page in PAGES[1:]:
        if page.name != "README.md":
            assert f"({page.name})" in index, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]
    for link in links:
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link}"
        if anchor:
            assert anchor in anchors(path), f"{page.name}: {link} (no such heading)"


def test_the_checks_see_links_and_anchors():
    assert LINK.findall("a [b](c.md#d) and ![e](f/g.png)") == ["c.md#d", "f/g.png"]
    assert slug("Position embeddings and cut datasets") == "position-embeddings-and-cut-datasets"
    assert slug("On a GPU: the `triton` backend") == "on-a-gpu-the-triton-backend"


def test_there_are_python_examples():
    assert {page.name for page, _ in BLOCKS} >= {"README.md", "usage.md", "serving.md"}


@pytest.mark.parametrize("page, block", BLOCKS,
                         ids=[f"{page.name}-{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_python_example_runs(page, block, in_tmp_dir, monkeypatch):
    monkeypatch.setattr("sys.argv", ["python"])  # plain RecBole's Config reads the command line
    exec(compile(block, f"{page.name} python block", "exec"), {})


def readme_commands():
    text = (ROOT / "README.md").read_text()
    lines = [line.split("  #")[0] for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
             for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("python ")]


def cli_options():
    from recbole_mamba import cli

    tables = (cli.MAIN_OPTIONS, cli.DISTRIBUTED_OPTIONS, cli.EVALUATE_OPTIONS, cli.RESUME_OPTIONS, cli.RECOMMEND_OPTIONS,
              cli.TUNE_OPTIONS, cli.EXPERIMENT_OPTIONS)
    return {name.strip() for table in tables for names, _ in table for name in names.split("/")}


def config_keys():
    from recbole_mamba.config import RecboleMambaConfig

    return set(RecboleMambaConfig("MambaRec", "ml-100k").final_config_dict)


def test_every_readme_command_uses_real_options():
    from recbole_mamba.atomics.__main__ import build_parser

    commands = readme_commands()
    assert len(commands) >= 8
    known = cli_options() | config_keys() | {"help"}
    subparsers = build_parser()._subparsers._group_actions[0].choices
    for words in commands:
        options = [w[2:].split("=")[0] for w in words if w.startswith("--")]
        if words[:2] == ["python", "run_recbole_mamba.py"]:
            unknown = [o for o in options if o not in known]
        elif words[:3] == ["python", "-m", "recbole_mamba.atomics"]:
            parser = subparsers[words[3]]
            unknown = [o for o in options if f"--{o}" not in parser._option_string_actions]
        else:
            raise AssertionError(f"an unknown command in the README: {' '.join(words)}")
        assert unknown == [], f"{' '.join(words)}: {unknown}"


def test_the_option_check_can_fail():
    assert "not_an_option" not in cli_options() | config_keys()
    assert {"resume", "checkpoint", "experiment", "tune", "k", "out"} <= cli_options()
