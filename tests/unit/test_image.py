"""The operator image, checked without a Docker engine (none runs where this project is built, so
the image itself has never been built here): the Dockerfile is parsed and its properties checked
(a slim final stage that runs as a numeric non-root user, installs no build tools, holds no
source, starts the operator's console script), the files it copies exist, the wheel its build
stage makes from them carries the packages and the entry point, and ``make image`` says clearly
when there is no Docker."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# What would bring a compiler or a package manager's run into an image.
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|dnf|yum|microdnf|gcc|g\+\+|clang|make|build-essential|"
    r"python3?-dev|libpq-dev|cargo|rustc)\b"
)


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, comments dropped and continuation lines joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return out


def stages() -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (their defaults) and the stages, with ${ARG} resolved in FROM."""
    args: dict[str, str] = {}
    out: list[Stage] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins.keyword == "ARG" and not out:
            name, _, default = ins.args.partition("=")
            args[name] = default
        elif ins.keyword == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            out.append(Stage(base, name))
        else:
            assert out, f"{ins.keyword} before the first FROM"
            out[-1].instructions.append(ins)
    return args, out


def final() -> Stage:
    return stages()[1][-1]


def test_the_image_is_built_in_two_stages_from_a_slim_python() -> None:
    _, all_stages = stages()
    assert len(all_stages) >= 2, "a build stage and a final stage"
    version = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    for stage in all_stages:
        image, _, tag = stage.base.partition(":")
        assert image == "python" and tag.startswith(version) and tag.endswith("-slim"), stage.base
    assert final().base == all_stages[0].base, "the virtualenv's python must be at the same path"


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    (user,) = final().all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert gid == "" or (gid.isdigit() and int(gid) != 0), user
    # The Deployment runs it as the same user (runAsNonRoot needs a numeric one to check).
    deployment = (ROOT / "manifests" / "base" / "deployment.yaml").read_text()
    assert re.search(rf"runAsUser:\s*{uid}\b", deployment), "the Deployment runs another uid"


def test_the_final_stage_installs_no_build_tools_and_holds_no_source() -> None:
    stage = final()
    for run in stage.all("RUN"):
        assert not BUILD_TOOLS.search(run), f"a build tool or package manager in the final stage: {run}"
    copies = stage.all("COPY") + stage.all("ADD")
    assert copies, "the final stage copies the built virtualenv"
    for c in copies:
        assert "--from=" in c, f"the final stage copies only from the build stage, not from the context: {c}"
    # No pip cache anywhere, and nothing but the virtualenv comes over.
    (build,) = [s for s in stages()[1] if s.name == "build"]
    env = " ".join(build.all("ENV"))
    assert "PIP_NO_CACHE_DIR=1" in env
    assert [shlex.split(c)[-2:] for c in copies] == [["/opt/clusterresync", "/opt/clusterresync"]]
    # The virtualenv has no pip of its own.
    assert any("venv --without-pip" in r for r in build.all("RUN"))


def test_the_entrypoint_is_the_operators_console_script() -> None:
    (entry,) = final().all("ENTRYPOINT")
    (script,) = json.loads(entry)
    assert PYPROJECT["project"]["scripts"][script] == "clusterresync.cli:main"
    env = " ".join(final().all("ENV"))
    assert "/opt/clusterresync/bin" in env, "the venv's bin is on PATH"
    # The root filesystem is read-only in the Deployment: Python must not try to write bytecode.
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def context_copies() -> list[str]:
    """The sources of every COPY from the build context (not --from a stage)."""
    out: list[str] = []
    for stage in stages()[1]:
        for c in stage.all("COPY"):
            words = [w for w in shlex.split(c) if not w.startswith("--")]
            if "--from=" not in c:
                out += words[:-1]
    return out


def test_the_files_it_copies_exist_and_are_what_the_wheel_needs() -> None:
    copied = context_copies()
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
    # pyproject.toml, what it reads (the readme), and every package directory of the distribution.
    needed = ["pyproject.toml", PYPROJECT["project"]["readme"]]
    needed += list(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    for path in needed:
        assert any(Path(path) == Path(c) or Path(c) in Path(path).parents for c in copied), (
            f"the build stage does not copy {path}"
        )


def test_the_wheel_the_build_stage_makes_carries_the_operator(tmp_path: Path) -> None:
    """The build stage's ``pip wheel --no-deps .`` on the copied files only (pip fetches the build
    backend, setuptools, from the package index, as the build stage does)."""
    for src in context_copies():
        target = tmp_path / "src" / src
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / src, target)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            "dist",
            ".",
        ],
        cwd=tmp_path / "src",
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "src" / "dist").glob("clusterresync-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry_points).decode()
    assert {"clusterresync/cli.py", "clusterresync/metrics.py", "clusterresync/planner/__init__.py"} <= names
    assert "clusterresync-operator = clusterresync.cli:main" in scripts


def test_make_image_says_clearly_when_there_is_no_docker() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is needed (the project's verbs are make targets)")
    out = subprocess.run(
        [make, "-s", "image", "DOCKER=/nonexistent/docker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "building the image needs Docker" in out.stderr, out.stderr
