"""The README stays true: its two set-up commands are what CI runs, and command 1's job really works."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ddex_etl.cli import cli

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
CI = REPO / ".ci" / "run"


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"^```(?:sh|bash)?\n(.*?)^```", text, re.S | re.M)]


def setup_commands() -> tuple[str, str]:
    blocks = code_blocks(section("Quick start"))
    assert len(blocks) == 2, f"the quick start must hold exactly two commands, found {blocks}"
    for block in blocks:
        assert "\n" not in block, f"a set-up command must be one copy-pasteable line: {block!r}"
    return blocks[0], blocks[1]


def ci_variable(name: str) -> str:
    match = re.search(rf'^{name}="(.*)"$', CI.read_text(encoding="utf-8"), re.M)
    assert match, f".ci/run does not set {name}"
    return match.group(1)


def etl_steps(command: str) -> list[list[str]]:
    """The `etl ...` steps of a `a && b && c` command line, as argument lists."""
    steps = []
    for part in command.split("&&"):
        words = shlex.split(part)
        if words and Path(words[0]).name == "etl":
            steps.append(words[1:])
    return steps


# --------------------------------------------------------------------------- the two commands


def test_the_quick_start_is_near_the_top() -> None:
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[0] == "Quick start"


def test_command_2_is_what_ci_runs() -> None:
    _, tests = setup_commands()
    assert tests == f"{ci_variable('INSTALL')} && {ci_variable('TESTS')}"
    script = CI.read_text(encoding="utf-8")
    assert 'eval "$INSTALL"' in script and 'eval "$TESTS"' in script


def test_command_1_installs_seeds_and_runs_with_the_same_venv() -> None:
    job, tests = setup_commands()
    install = ci_variable("INSTALL")
    assert job.startswith(install.replace("'.[test]'", ".") + " && ")  # same venv, without the test extras
    assert [step[0] for step in etl_steps(job)] == ["seed", "run"]


def test_ci_script_is_strict_and_executable() -> None:
    text = CI.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert os.access(CI, os.X_OK)
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(CI)], check=True)


def test_command_1_steps_work_against_the_test_database(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README command 1 minus the venv: the repo's etl.toml, the same `etl` steps, a fresh database."""
    job, _ = setup_commands()
    for name in list(os.environ):
        if name.startswith("ETL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    shutil.copy(REPO / "etl.toml", tmp_path / "etl.toml")
    monkeypatch.chdir(tmp_path)

    steps = etl_steps(job)
    releases = int(steps[0][steps[0].index("--releases") + 1])
    outputs = []
    for args in steps:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, f"etl {' '.join(args)}:\n{result.output}"
        outputs.append(result)

    run = outputs[-1]
    assert f"of {releases} releases" in run.stderr  # progress (plain lines: not a terminal)
    assert f"built {releases:,}, rejected 0" in run.stdout  # the summary
    docs = list((tmp_path / "out").iterdir())
    assert len(docs) == releases
    assert sorted(int(d.stem) for d in docs) == list(range(1, releases + 1))


# --------------------------------------------------------------------------- the command table


def _resolve(words: list[str]) -> click.Command:
    command: click.Command = cli
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
    return command


@pytest.mark.parametrize("usage", re.findall(r"^\| `(etl [^`]+)`", README, re.M))
def test_every_documented_command_and_option_exists(usage: str) -> None:
    words = usage.replace("\\|", "|").split()[1:]
    names = [w for w in words if re.fullmatch(r"[a-z][a-z-]*", w)]
    command = _resolve(names[:2])
    assert command is not cli, f"{usage}: no such command"
    if " | " in usage.replace("\\|", "|"):  # `etl db upgrade | downgrade | current`
        group = _resolve(names[:1])
        assert isinstance(group, click.Group)
        for alternative in re.findall(r"[a-z]+", usage.split(names[0], 1)[1]):
            assert alternative in group.commands, f"{usage}: {alternative} missing"
        return
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for flag in re.findall(r"--[a-z][a-z-]*", usage):
        assert flag in options, f"{usage}: {flag} is not an option of the command"


def test_every_cli_command_is_in_the_readme() -> None:
    def leaves(group: click.Group, prefix: str) -> list[str]:
        out = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                out.extend(leaves(command, f"{prefix}{name} "))
            else:
                out.append(f"{prefix}{name}")
        return out

    for name in leaves(cli, "etl "):
        group, _, leaf = name.rpartition(" ")
        assert re.search(rf"`{re.escape(name)}\b", README) or (
            re.search(rf"`{re.escape(group)} [^`]*\b{re.escape(leaf)}\b", README)
        ), f"README does not mention `{name}`"


# --------------------------------------------------------------------------- the configuration table


def _config_table() -> dict[str, str]:
    """README's configuration table: key -> its default as written (one literal, or prose)."""
    rows: dict[str, str] = {}
    for line in section("Configuration").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([a-z_]+\.[a-z_]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1])
        for i, key in enumerate(keys):
            rows[key] = defaults[i] if len(defaults) == len(keys) else cells[1]
    return rows


def _config_check(tmp_path: Path) -> dict[str, str | None]:
    """What `etl config check` prints with no etl.toml: key -> value (None: not set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    result = CliRunner(env=env).invoke(cli, ["--config", str(tmp_path / "empty.toml"), "config", "check"])
    assert result.exit_code == 0, result.output
    out: dict[str, str | None] = {}
    current = ""
    for line in result.stdout.splitlines():
        if m := re.fullmatch(r"\[([a-z]+)\]", line):
            current = m.group(1)
        elif m := re.fullmatch(r"([a-z_]+) = (.*)", line):
            out[f"{current}.{m.group(1)}"] = m.group(2).strip('"')
        elif m := re.fullmatch(r"# ([a-z_]+):? not set.*", line):
            out[f"{current}.{m.group(1)}"] = None
    return out


def test_the_configuration_table_lists_every_key_config_check_knows(tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("")
    table, checked = _config_table(), _config_check(tmp_path)
    assert set(checked) - set(table) == set(), "keys missing from README's configuration table"
    assert set(table) - set(checked) == set(), "README's configuration table lists keys etl does not know"
    for key, value in checked.items():
        default = table[key]
        if value is None:
            assert default == "unset" or "/" in default, f"{key}: README says {default!r}, config check: not set"
        elif not " " in default:
            assert default == value, f"{key}: README says {default!r}, config check prints {value!r}"
