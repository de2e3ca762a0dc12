#!/usr/bin/env python
"""
Check that every command, Python example and link of the docs is still true, without running
anything:

  python tools/check_docs.py                      # README.md, datasets/README.md, docs/*.md
  python tools/check_docs.py docs/INSTALL.md      # some pages

For every fenced block of a page:

* ``bash`` / ``sh`` / ``shell`` / ``console`` blocks: each command (backslash continuations
  joined, comments dropped, split on ``&&``, ``||``, ``;`` and ``|``, ``$VAR`` from the page's
  earlier ``VAR=value`` / ``export VAR=value``) is checked: ``python SCRIPT.py`` exists and
  ``python -m MODULE`` imports; every option is one the entry point's own parser accepts
  (``get_parser()``, imported, never run), with its choices, types and required options;
  ``--config-file`` names a file or a model-zoo config; each ``key=value`` override names a key of
  that config (``+key=value`` adds one); ``make TARGET`` is a target of the Makefile; every path
  under a top-level entry of the repository (``configs/``, ``tools/``, ``datasets/`` ...) or
  ``output/`` exists in the checkout (not as ignored, generated data) or is made by an earlier
  command of the same page (``--out``, ``--output``, ``train.output_dir``, ``make demo`` ...).
  ``...`` is a placeholder token; ``path/to/...`` and other paths outside the repository are not
  checked.
* ``python`` blocks compile, and their imports resolve (nothing is executed).
* Relative links ``[text](path#anchor)`` and images point at files that exist, and anchors at
  headings of the target page (GitHub's slugs).

``<!-- docs: needs COCO -->`` on the line(s) before a block marks it as not runnable here (the
block's ``needs``); it is still checked. :func:`blocks` gives the parsed blocks of a page for a
tier that runs them.

Exits with status 1 and one ``PAGE:LINE: message`` line per problem, else 0.
"""

import argparse
import ast
import contextlib
import difflib
import fnmatch
import functools
import glob
import importlib
import importlib.util
import io
import logging
import posixpath
import re
import shlex
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

# argparse's rule (``-5`` and ``-.5`` are values), and how many values an option takes, as
# pvt_fpn_d2.cli.parse_args reads the entry points' command lines
from pvt_fpn_d2.cli import is_option, num_values
from pvt_fpn_d2.cli import parse_args as cli_parse_args
from pvt_fpn_d2.cli import silence_known_warnings

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

SHELL_LANGS = {"bash", "sh", "shell", "console"}
PYTHON_LANGS = {"python", "py", "python3"}
PLACEHOLDER = "..."
# what `make demo` (tools/demo.sh) writes, and the variables that move it
MAKE_DEMO_MADE = {"OUT": "output/demo", "DATA": "datasets/synthetic"}
# an option or positional argument whose value is written, not read (by its dest or metavar)
OUTPUT_DESTS = {"out", "output", "output_dir", "data_dir"}
# commands whose every path argument is written
MAKING_COMMANDS = {"mkdir", "touch", "tee"}
# leading words that run the rest of the line as a command
PREFIX_COMMANDS = {"time", "sudo", "nohup", "command", "exec", "env"}

_PYTHON = re.compile(r"^(?:.*/)?python(?:\d+(?:\.\d+)*)?$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_TAG = re.compile(r"^\s*<!--\s*docs:\s*(?P<body>.*?)\s*-->\s*$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*(?:\s#+)?\s*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_LINK = re.compile(
    r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|"
                  r"(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")  # fmt: skip
_REDIRECT = re.compile(r"^(?P<fd>\d*|&)(?P<op>>>|>|<)(?P<target>.*)$")
_OVERRIDE = re.compile(
    r"^(?P<prefix>\+{0,2}|~)(?P<key>[A-Za-z_][\w\-]*(?:\.[\w\-]+)*)(?P<rest>=.*)?$"
)


# ---------------------------------------------------------------------------------------------
# what a page is made of


@dataclass(frozen=True)
class Problem:
    """One thing in a page that is not true; prints as ``PAGE:LINE: message``."""

    page: Path
    line: int
    message: str
    label: str = ""  # the page as printed (relative to the repository where it is inside)

    def __str__(self) -> str:
        return f"{self.label or self.page}:{self.line}: {self.message}"


@dataclass
class Command:
    """One shell command of a block, after continuations, comments, separators and the page's
    variables: ``argv`` as the shell would pass it (``None`` where the line does not parse)."""

    line: int  # the first line of the command in the page
    lines: List[Tuple[int, str]]  # (line number, text) of every line it spans
    text: str  # the command after variable substitution, before word splitting
    argv: Optional[List[str]]
    error: str = ""

    @property
    def is_assignment(self) -> bool:
        """Only ``VAR=value`` words (or ``export VAR=value``): sets a variable of the page."""
        words = self.argv or []
        if words[:1] == ["export"]:
            words = words[1:]
        return bool(words) and all(_ASSIGNMENT.match(w) for w in words)


@dataclass
class Block:
    """A fenced block of a page: its language, the line of its opening fence, its text, what it
    needs to run (``<!-- docs: needs ... -->`` tags) and, for shell blocks, its commands."""

    lang: str
    line: int
    text: str
    needs: List[str] = field(default_factory=list)
    commands: List[Command] = field(default_factory=list)

    @property
    def first_line(self) -> int:
        """The page line of the block's first line of text (after the fence)."""
        return self.line + 1


@dataclass
class _Page:
    """A page parsed: its blocks, its text outside the blocks, and the problems of parsing."""

    path: Path
    blocks: List[Block]
    prose: List[Tuple[int, str]]  # (line number, text) outside fenced blocks
    problems: List[Tuple[int, str]]


def _strip_prompts(lines: List[str]) -> List[str]:
    """A console block's commands: the ``$ `` lines and their continuations; output lines blank."""
    if not any(line.lstrip().startswith("$ ") for line in lines):
        return lines
    kept, continued = [], False
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("$ "):
            kept.append(stripped[2:])
        elif continued:
            kept.append(line)
        else:
            kept.append("")
            continued = False
            continue
        continued = kept[-1].rstrip().endswith("\\")
    return kept


def _quoting(quote: str, single: bool, double: bool) -> Tuple[bool, bool]:
    """The shell's (in single quotes, in double quotes) after an unescaped ``'`` or ``"``."""
    if quote == "'" and not double:
        return not single, double
    if quote == '"' and not single:
        return single, not double
    return single, double


def _segments(text: str, first_line: int) -> List[Tuple[int, List[int], str]]:
    """Split shell text into commands: (first line, lines spanned, raw text with quotes kept).
    Backslash-newline joins lines; ``#`` at the start of a word (outside quotes) starts a
    comment; ``&&``, ``||``, ``;``, ``|``, ``&`` and newlines (outside quotes) end a command."""
    out: List[Tuple[int, List[int], str]] = []
    cur: List[str] = []
    lines: List[int] = []
    line = first_line
    single = double = False

    def end() -> None:
        raw = "".join(cur).strip()
        if raw:
            out.append((lines[0], sorted(set(lines)), raw))
        cur.clear()
        lines.clear()

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c not in " \t\n" and not lines:
            lines.append(line)
        if c == "\\" and not single:
            if i + 1 < n and text[i + 1] == "\n":
                cur.append(" ")
                line += 1
                if lines:
                    lines.append(line)
                i += 2
                continue
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c in "'\"":
            single, double = _quoting(c, single, double)
        elif not (single or double):
            if c == "#" and (not cur or cur[-1][-1:] in (" ", "\t", ";", "&", "|", "(")):
                while i < n and text[i] != "\n":
                    i += 1
                continue
            if c == "\n":
                end()
                line += 1
                i += 1
                continue
            if c in ";|&":
                prev, nxt = (cur[-1][-1:] if cur else ""), text[i + 1 : i + 2]
                if c == "&" and (prev in (">", "<") or nxt == ">"):  # 2>&1, &>file
                    cur.append(c)
                    i += 1
                    continue
                end()
                i += 2 if nxt == c else 1
                continue
        if c == "\n":
            line += 1
            lines.append(line)
        cur.append(c)
        i += 1
    end()
    return out


def _shell_quote_words(value: str) -> str:
    """``value`` as the unquoted expansion of a variable: split into words, each quoted."""
    return " ".join(shlex.quote(w) for w in value.split())


def _substitute(raw: str, variables: Dict[str, str]) -> str:
    """``$VAR``, ``${VAR}`` and ``${VAR:-default}`` of ``variables`` replaced as the shell would
    (not inside single quotes; split into words outside double quotes); unknown ones kept."""
    out: List[str] = []
    single = double = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and not single:
            out.append(raw[i : i + 2])
            i += 2
            continue
        if c in "'\"":
            single, double = _quoting(c, single, double)
        elif c == "$" and not single:
            m = _VAR.match(raw, i)
            if m:
                name = m.group("braced") or m.group("plain")
                value = variables.get(name, m.group("default"))
                if value is not None:
                    if double:
                        out.append(re.sub(r'(["\\$`])', r"\\\1", value))
                    else:
                        out.append(_shell_quote_words(value))
                    i = m.end()
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def _commands(text: str, first_line: int, lang: str, variables: Dict[str, str]) -> List[Command]:
    """The commands of a shell block; ``variables`` (the page's) is updated by assignments."""
    page_lines = text.split("\n")
    if lang == "console":
        text = "\n".join(_strip_prompts(page_lines))
    commands = []
    for start, spanned, raw in _segments(text, first_line):
        substituted = _substitute(raw, variables)
        lines = [
            (n, page_lines[n - first_line]) for n in spanned if n - first_line < len(page_lines)
        ]
        try:
            argv = shlex.split(substituted)
        except ValueError as e:
            commands.append(Command(start, lines, substituted, None, f"does not parse: {e}"))
            continue
        command = Command(start, lines, substituted, argv)
        if command.is_assignment:
            for word in argv[1:] if argv[0] == "export" else argv:
                name, _, value = word.partition("=")
                variables[name] = value
        commands.append(command)
    return commands


def _parse(page: Path) -> _Page:
    """Read a page: fenced blocks (with their tags and commands) and the prose between them."""
    text = page.read_text(encoding="utf-8")
    lines = text.split("\n")
    blocks: List[Block] = []
    prose: List[Tuple[int, str]] = []
    problems: List[Tuple[int, str]] = []
    variables: Dict[str, str] = {}
    needs: List[str] = []
    tag_line = 0
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        m = _FENCE.match(line)
        if m:
            fence, indent = m.group("fence"), len(m.group("indent"))
            info = m.group("info").strip().strip("{}").split()
            lang = info[0].lower().lstrip(".") if info else ""
            body: List[str] = []
            j = i + 1
            while j < len(lines):
                close = lines[j].strip()
                if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                    break
                if close.startswith(fence) and re.match(r"^[`~]+\s*[A-Za-z]", close):
                    problems.append(
                        (j + 1, f"{close} inside the block opened at line {number}: is its "
                                "closing fence missing?")
                    )  # fmt: skip
                body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
                j += 1
            if j == len(lines):
                problems.append((number, "this fenced block is never closed"))
            block = Block(lang, number, "\n".join(body), needs)
            if lang in SHELL_LANGS:
                block.commands = _commands(block.text, number + 1, lang, variables)
                for k, text in enumerate(body):
                    ends_blank = k + 1 == len(body) or not body[k + 1].strip()
                    if text.rstrip().endswith("\\") and not text.lstrip().startswith("#"):
                        if ends_blank:
                            problems.append(
                                (number + 1 + k, "the command continues (\\) into a blank line")
                            )
            blocks.append(block)
            needs, tag_line = [], 0
            i = j + 1
            continue
        tag = _TAG.match(line)
        if tag:
            body_text = tag.group("body")
            if re.match(r"needs\b", body_text):
                needs = needs + [body_text[len("needs") :].strip()]
                tag_line = tag_line or number
            else:
                problems.append(
                    (number, f"unknown docs tag {body_text!r} (expected <!-- docs: needs ... -->)")
                )
        elif line.strip():
            if needs:
                problems.append(
                    (tag_line, "<!-- docs: needs ... --> is not right before a fenced block")
                )
                needs, tag_line = [], 0
            prose.append((number, line))
        i += 1
    if needs:
        problems.append((tag_line, "<!-- docs: needs ... --> is not right before a fenced block"))
    return _Page(page, blocks, prose, problems)


def blocks(page: Path) -> List[Block]:
    """The fenced blocks of a page, in order: language, line of the opening fence, text, what
    they need to run (``.needs``, from ``<!-- docs: needs ... -->``) and, for shell blocks, the
    parsed commands (``$VAR`` of the page's earlier assignments substituted)."""
    return _parse(Path(page)).blocks


# ---------------------------------------------------------------------------------------------
# headings and links


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading's text: inline markup dropped, lower case, punctuation other
    than ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # html tags
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def _anchors(page: Path, mtime: float) -> Tuple[str, ...]:
    """Every anchor of a page: its headings' slugs (duplicates ``-1``, ``-2`` ...) and explicit
    ``<a name=...>`` / ``id=...`` anchors."""
    seen: Dict[str, int] = {}
    anchors = []
    for _, line in _parse(page).prose:
        m = _HEADING.match(line)
        if m:
            slug = github_slug(m.group(2))
            if slug in seen:
                seen[slug] += 1
                slug = f"{slug}-{seen[slug]}"
            else:
                seen[slug] = 0
            anchors.append(slug)
        anchors += [a.lower() for a in _HTML_ANCHOR.findall(line)]
    return tuple(anchors)


def _mask_inline_code(line: str) -> str:
    """The line with inline code spans blanked (their text is no link)."""
    return re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), line)


def _links(prose: List[Tuple[int, str]]) -> Iterable[Tuple[int, str]]:
    """(line, target) of every inline, reference, image and html link outside code and
    html comments."""
    in_comment = False
    for number, line in prose:
        text = _mask_inline_code(line)
        if in_comment:
            if "-->" not in text:
                continue
            text, in_comment = text.split("-->", 1)[1], False
        text = re.sub(r"<!--.*?-->", "", text)
        if "<!--" in text:
            text, in_comment = text.split("<!--", 1)[0], True
        for m in _LINK.finditer(text):
            yield number, m.group(3).strip("<>")
        m = _REF_LINK.match(text)
        if m:
            yield number, m.group(1).strip("<>")
        for target in _HTML_LINK.findall(text):
            yield number, target


# ---------------------------------------------------------------------------------------------
# what the repository has


@functools.lru_cache(maxsize=None)
def _top_level(repo: Path) -> frozenset:
    """The names a repository path starts with (hidden entries excluded), and ``output``."""
    return frozenset({p.name for p in repo.iterdir() if not p.name.startswith(".")} | {"output"})


@functools.lru_cache(maxsize=None)
def _ignored(repo: Path) -> Tuple[str, ...]:
    """The git-ignored files and folders of the checkout (generated data, outputs): they are
    not "in the repository" for a fresh clone."""
    try:
        r = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "--others", "--ignored", "--exclude-standard",
             "--directory"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ()
    if r.returncode != 0:
        return ()
    return tuple(p.rstrip("/") for p in r.stdout.splitlines() if p.strip())


def _is_ignored(repo: Path, rel: str) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in _ignored(repo))


def _would_be_ignored(repo: Path, rel: str) -> bool:
    """Whether git ignores ``rel``, whether it exists or not (generated data, outputs)."""
    try:
        r = subprocess.run(
            ["git", "-C", str(repo), "check-ignore", "-q", "--no-index", rel],
            capture_output=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def _in_repo(repo: Path, rel: str) -> bool:
    """Whether ``rel`` (a normalised path relative to the repository, maybe a glob) names files of
    the checkout that a fresh clone has (not ignored, generated ones)."""
    if any(c in rel for c in "*?["):
        matches = glob.glob(str(repo / rel))
        return any(not _is_ignored(repo, Path(m).relative_to(repo).as_posix()) for m in matches)
    return (repo / rel).exists() and not _is_ignored(repo, rel)


@functools.lru_cache(maxsize=None)
def _make_targets(makefile: Path, mtime: float) -> Tuple[str, ...]:
    """The explicit targets of a Makefile."""
    targets: List[str] = []
    for line in makefile.read_text().splitlines():
        if not line or line[0] in "\t#" or line.startswith((".PHONY", "include")):
            continue
        m = re.match(r"^([^:=#]+?)\s*::?(?![=])", line)
        if m and "$(" not in m.group(1) and "%" not in m.group(1):
            targets += m.group(1).split()
    return tuple(dict.fromkeys(targets))


def _expand_braces(token: str) -> List[str]:
    """The shell's brace expansion of ``a/{b,c}/d`` (one level at a time)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", token)
    if not m:
        return [token]
    out = []
    for part in m.group(1).split(","):
        out += _expand_braces(token[: m.start()] + part + token[m.end() :])
    return out


def _close(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean X?)`` for the closest candidate, or ``""``."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return f" (did you mean {found[0]}?)" if found else ""


# ---------------------------------------------------------------------------------------------
# entry points, parsers and configs


class _ParseError(Exception):
    """argparse's error message, raised instead of exiting."""


def _raise_parse_error(message: str) -> None:
    raise _ParseError(message)


@contextlib.contextmanager
def _on_sys_path(*folders: Path):
    """``folders`` first on ``sys.path`` (an entry point's own folder, as when it runs)."""
    added = [str(f) for f in folders if str(f) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for f in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(f)


@functools.lru_cache(maxsize=None)
def _script_parser(path: Path, repo: Path):
    """The ``get_parser()`` of a script, imported as a module (its ``__main__`` block does not
    run): an ``ArgumentParser``, or the reason there is none (a string)."""
    name = "_check_docs_" + re.sub(r"\W", "_", path.relative_to(repo).as_posix()[:-3])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        with _on_sys_path(path.parent, repo), contextlib.redirect_stdout(io.StringIO()):
            spec.loader.exec_module(module)
    except BaseException as e:  # noqa: B036 - a script may sys.exit at import
        return f"cannot be imported to read its options: {type(e).__name__}: {e}"
    return _parser_of(module)


@functools.lru_cache(maxsize=None)
def _module_parser(module_name: str, repo: Path):
    """The ``get_parser()`` of a module of the repository run with ``python -m``, ``None`` for a
    module from elsewhere (not checked), or the reason there is none (a string)."""
    spec = importlib.util.find_spec(module_name)
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    if origin is None or repo not in origin.parents:
        return None
    if origin.relative_to(repo).parts[0] not in _top_level(repo):  # .venv/...: installed
        return None
    try:
        with _on_sys_path(repo), contextlib.redirect_stdout(io.StringIO()):
            module = importlib.import_module(module_name)
    except BaseException as e:  # noqa: B036
        return f"cannot be imported to read its options: {type(e).__name__}: {e}"
    return _parser_of(module)


def _parser_of(module):
    get_parser = getattr(module, "get_parser", None)
    if get_parser is None:
        return "has no parser (get_parser()) to check the command against"
    try:
        parser = get_parser()
    except Exception as e:
        return f"get_parser() fails: {type(e).__name__}: {e}"
    if not isinstance(parser, argparse.ArgumentParser):
        return f"get_parser() returned {type(parser).__name__}, not an argparse.ArgumentParser"
    parser.error = _raise_parse_error  # the full parse of a command reports, never exits
    return parser


def _silenced():
    """The known third-party notices of configs and entry points hidden (pvt_fpn_d2.cli)."""
    silence_known_warnings()


@functools.lru_cache(maxsize=None)
def _lazy_config(path: Path, mtime: float):
    """A LazyConfig as ``LazyConfig.load`` gives it (a DictConfig), or the error loading gave."""
    from detectron2.config import LazyConfig

    _silenced()
    try:
        return LazyConfig.load(str(path))
    except Exception as e:
        return f"{type(e).__name__}: {e}"


@functools.lru_cache(maxsize=None)
def _yacs_config():
    """detectron2's ``get_cfg()`` with the PVT-v2 keys, as a DictConfig (the same keys and list
    items, for ``pvt_fpn_d2.config.is_override_key``)."""
    from detectron2.config import get_cfg
    from omegaconf import OmegaConf

    from pvt_fpn_d2 import add_pvt_v2_config

    cfg = add_pvt_v2_config(get_cfg())
    with contextlib.suppress(ImportError, AttributeError):
        from pvt_fpn_d2.config import add_pvt_v2_sem_seg_config

        cfg = add_pvt_v2_sem_seg_config(cfg)

    def plain(node):
        return {k: plain(v) for k, v in node.items()} if isinstance(node, dict) else node

    return OmegaConf.create(plain(cfg))


# ---------------------------------------------------------------------------------------------
# the checker


def _unresolved(token: str) -> bool:
    """A token that is a placeholder or holds a variable the page does not set."""
    return token == PLACEHOLDER or "$" in token or PLACEHOLDER in token


@dataclass
class _Args:
    """A command line read against its parser."""

    options: List[Tuple[argparse.Action, str, List[str]]]  # (action, as typed, values)
    positionals: List[Tuple[Optional[argparse.Action], str]]
    problems: List[Tuple[str, str]]  # (needle for the line, message)


class DocsChecker:
    """Checks pages against a repository; counts what it checked (``commands``,
    ``python_blocks``)."""

    def __init__(self, repo: Path = REPO):
        self.repo = Path(repo).resolve()
        # the checkout as it is now (outputs and generated data come and go); parsers and
        # configs stay cached for the process
        _top_level.cache_clear()
        _ignored.cache_clear()
        self.commands = 0
        self.python_blocks = 0
        self.pages = 0

    # -- reporting ---------------------------------------------------------------------------

    def _label(self, page: Path) -> str:
        for base in (self.repo, Path.cwd()):
            with contextlib.suppress(ValueError):
                return page.resolve().relative_to(base).as_posix()
        return str(page)

    def check(self, pages: Sequence[Path]) -> List[Problem]:
        """Every problem of ``pages``, in page and line order."""
        problems: List[Problem] = []
        for page in pages:
            page = Path(page)
            self.pages += 1
            label = self._label(page)
            found = sorted(self._check_page(page), key=lambda p: p[0])
            problems += [Problem(page, line, msg, label) for line, msg in found]
        return problems

    def _check_page(self, page: Path) -> List[Tuple[int, str]]:
        parsed = _parse(page)
        found = list(parsed.problems)
        made: List[str] = []
        for block in parsed.blocks:
            if block.lang in SHELL_LANGS:
                for command in block.commands:
                    found += self._check_command(command, made)
            elif block.lang in PYTHON_LANGS:
                self.python_blocks += 1
                found += self._check_python(block, page)
        found += self._check_links(page, parsed)
        return found

    # -- python blocks -----------------------------------------------------------------------

    def _check_python(self, block: Block, page: Path) -> List[Tuple[int, str]]:
        try:
            compile(block.text, f"{page}:{block.line}", "exec")  # compiled, never run
            tree = ast.parse(block.text)
        except SyntaxError as e:
            return [(block.line + (e.lineno or 1), f"python block does not compile: {e.msg}")]
        found = []
        with _on_sys_path(self.repo):
            _silenced()
            for node in ast.walk(tree):
                line = block.line + getattr(node, "lineno", 1)
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if not self._module_exists(alias.name):
                            found.append((line, f"import {alias.name}: no such module"))
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found += [(line, m) for m in self._check_from_import(node)]
        return found

    @staticmethod
    def _module_exists(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    def _check_from_import(self, node: ast.ImportFrom) -> List[str]:
        try:
            module = importlib.import_module(node.module)
        except Exception as e:
            return [f"from {node.module} import ...: cannot import {node.module} ({e})"]
        found = []
        for alias in node.names:
            name = alias.name
            if name == "*" or hasattr(module, name) or self._module_exists(f"{node.module}.{name}"):
                continue
            public = [n for n in dir(module) if not n.startswith("_")]
            found.append(
                f"from {node.module} import {name}: {node.module} has no {name}"
                + _close(name, public)
            )
        return found

    # -- links -------------------------------------------------------------------------------

    def _check_links(self, page: Path, parsed: _Page) -> List[Tuple[int, str]]:
        found = []
        for line, target in _links(parsed.prose):
            if not target or _SCHEME.match(target) or target.startswith("//"):
                continue
            path_part, _, anchor = target.partition("#")
            path_part = urllib.parse.unquote(path_part)
            if not path_part:
                dest = page
            elif path_part.startswith("/"):
                dest = self.repo / path_part.lstrip("/")
            else:
                dest = page.parent / path_part
            if not dest.exists() or self._ignored_file(dest):
                found.append((line, f"link {target}: {path_part} does not exist"))
                continue
            if anchor and dest.is_file() and dest.suffix.lower() in (".md", ".markdown"):
                anchors = _anchors(dest.resolve(), dest.stat().st_mtime)
                wanted = urllib.parse.unquote(anchor).lower()
                if wanted not in anchors:
                    where = "this page" if dest.resolve() == page.resolve() else path_part
                    found.append(
                        (line, f"link {target}: no heading #{wanted} in {where}"
                         + _close(wanted, anchors).replace("did you mean ", "did you mean #"))
                    )  # fmt: skip
        return found

    def _ignored_file(self, path: Path) -> bool:
        try:
            rel = path.resolve().relative_to(self.repo).as_posix()
        except ValueError:
            return False
        return _is_ignored(self.repo, rel)

    # -- commands ----------------------------------------------------------------------------

    def _check_command(self, command: Command, made: List[str]) -> List[Tuple[int, str]]:
        if command.argv is None:
            return [(command.line, f"command {command.error}")]
        if command.is_assignment or not command.argv:
            return []
        self.commands += 1
        problems: List[Tuple[str, str]] = []  # (needle, message)
        made_here: List[str] = []
        argv = list(command.argv)
        env: Dict[str, str] = {}
        while argv and (_ASSIGNMENT.match(argv[0]) or argv[0] in PREFIX_COMMANDS):
            if _ASSIGNMENT.match(argv[0]):
                name, _, value = argv[0].partition("=")
                env[name] = value
            argv.pop(0)
        argv, redirect_problems = self._redirections(argv, made, made_here)
        problems += redirect_problems
        for name, value in env.items():
            if name == "OUT":
                made_here.append(value)
            elif not (argv and argv[0] == "make" and name in MAKE_DEMO_MADE):
                problems += self._check_path(value, made)
        if argv:
            name = posixpath.basename(argv[0])
            if _PYTHON.match(argv[0]):
                problems += self._check_python_command(argv[1:], made, made_here)
            elif name in ("make", "gmake"):
                problems += self._check_make(argv[1:], env, made, made_here)
            elif name in MAKING_COMMANDS:
                made_here += [a for a in argv[1:] if not is_option(a)]
            else:
                problems += self._check_path(argv[0], made) if "/" in argv[0] else []
                for arg in argv[1:]:
                    problems += self._check_path(self._value_of(arg), made)
        made += [self._norm(m) for m in made_here if m and not _unresolved(m)]
        return [(self._line_of(command, needle), message) for needle, message in problems]

    @staticmethod
    def _line_of(command: Command, needle: str) -> int:
        for number, text in command.lines:
            if needle and needle in text:
                return number
        return command.line

    def _redirections(
        self, argv: List[str], made: List[str], made_here: List[str]
    ) -> Tuple[List[str], List[Tuple[str, str]]]:
        """``argv`` without its redirections; ``> FILE`` is made, ``< FILE`` must exist."""
        out, problems = [], []
        i = 0
        while i < len(argv):
            m = _REDIRECT.match(argv[i])
            if m and (m.group("fd") or argv[i][0] in "<>"):
                target = m.group("target")
                if not target and i + 1 < len(argv):
                    i += 1
                    target = argv[i]
                if not target.startswith("&"):
                    if m.group("op") == "<":
                        problems += self._check_path(target, made)
                    else:
                        made_here.append(target)
                i += 1
                continue
            out.append(argv[i])
            i += 1
        return out, problems

    # -- paths -------------------------------------------------------------------------------

    @staticmethod
    def _norm(path: str) -> str:
        path = posixpath.normpath(path)
        return "" if path == "." else path

    def _is_made(self, rel: str, made: List[str]) -> bool:
        for m in made:
            if any(c in rel for c in "*?["):
                if fnmatch.fnmatch(m, rel) or rel.startswith(m + "/"):
                    return True
            elif rel == m or rel.startswith(m + "/") or m.startswith(rel + "/"):
                return True
        return False

    def _check_path(self, token: str, made: List[str]) -> List[Tuple[str, str]]:
        """A token that names a path of the repository (or output/) must exist or be made."""
        if not token or _unresolved(token) or token.startswith(("/", "~")) or "://" in token:
            return []
        if is_option(token) or "\n" in token:
            return []
        found = []
        for path in _expand_braces(token):
            rel = self._norm(path[2:] if path.startswith("./") else path)
            if not rel or rel.startswith("..") or rel.split("/")[0] not in _top_level(self.repo):
                continue
            if self._is_made(rel, made):
                continue
            if rel.split("/")[0] != "output" and _in_repo(self.repo, rel):
                continue
            found.append((path, self._missing_message(rel, made)))
        return found

    def _missing_message(self, rel: str, made: List[str]) -> str:
        if rel.split("/")[0] == "output" or _would_be_ignored(self.repo, rel):
            made_so_far = ", ".join(made) if made else "nothing"
            return (
                f"{rel} is not made by an earlier command on this page (made so far: "
                f"{made_so_far})"
            )
        parent, name = posixpath.split(rel)
        folder = self.repo / parent
        hint = ""
        if folder.is_dir():
            siblings = [posixpath.join(parent, p.name) for p in folder.iterdir()]
            hint = _close(rel, siblings, cutoff=0.8)
        return f"{rel} does not exist{hint}"

    # -- make --------------------------------------------------------------------------------

    def _check_make(
        self, args: List[str], env: Dict[str, str], made: List[str], made_here: List[str]
    ) -> List[Tuple[str, str]]:
        makefile = self.repo / "Makefile"
        if any(
            a in ("-C", "-f", "--file", "--directory") or a.startswith(("-C", "-f")) for a in args
        ):
            return []
        variables = dict(env)
        targets = []
        for a in args:
            if _ASSIGNMENT.match(a):
                name, _, value = a.partition("=")
                variables[name] = value
            elif not is_option(a):
                targets.append(a)
        problems = []
        for name, value in variables.items():
            if name not in MAKE_DEMO_MADE and name != "OUT" and name not in env:
                problems += self._check_path(value, made)
        if not makefile.is_file():
            return problems + [("make", "make: there is no Makefile")]
        known = _make_targets(makefile, makefile.stat().st_mtime)
        for target in targets:
            if _unresolved(target):
                continue
            if target not in known:
                problems.append(
                    (target, f"make has no target {target}{_close(target, known)} "
                     f"(targets: {', '.join(known)})")
                )  # fmt: skip
            if target == "demo":
                made_here += [variables.get(k, v) for k, v in MAKE_DEMO_MADE.items()]
        return problems

    # -- python commands ---------------------------------------------------------------------

    def _check_python_command(
        self, args: List[str], made: List[str], made_here: List[str]
    ) -> List[Tuple[str, str]]:
        i = 0
        module = script = None
        while i < len(args):
            a = args[i]
            if a == "-m" and i + 1 < len(args):
                module, i = args[i + 1], i + 2
                break
            if a.startswith("-m") and len(a) > 2:
                module, i = a[2:], i + 1
                break
            if a in ("-c", "-") or a.startswith("-c"):
                return []  # code on the command line or stdin: not checked
            if a in ("-W", "-X"):
                i += 2
            elif is_option(a):
                i += 1
            else:
                script, i = a, i + 1
                break
        rest = args[i:]
        if module:
            if _unresolved(module):
                return []
            if not self._module_exists(module):
                return [(module, f"python -m {module}: no such module")]
            with _on_sys_path(self.repo):
                parser = _module_parser(module, self.repo)
            if parser is None:  # not ours: its paths only
                return [p for a in rest for p in self._check_path(self._value_of(a), made)]
            return self._check_entry_point(module, parser, rest, made, made_here)
        if script is None or _unresolved(script):
            return []
        rel = self._norm(script[2:] if script.startswith("./") else script)
        if rel.split("/")[0] not in _top_level(self.repo) or rel.startswith(".."):
            return []  # a script of the reader's: its paths only
        path = self.repo / rel
        if not path.is_file():  # a script made by an earlier command is not checked
            return self._check_path(script, made)
        if rel == "setup.py" or path.suffix != ".py":
            return [p for a in rest for p in self._check_path(self._value_of(a), made)]
        parser = _script_parser(path.resolve(), self.repo)
        return self._check_entry_point(rel, parser, rest, made, made_here)

    @staticmethod
    def _value_of(arg: str) -> str:
        return arg.split("=", 1)[1] if is_option(arg) and "=" in arg else arg

    def _check_entry_point(
        self, name: str, parser, args: List[str], made: List[str], made_here: List[str]
    ) -> List[Tuple[str, str]]:
        """Options, config, overrides and paths of one run of a script or module of ours."""
        if isinstance(parser, str):
            return [(name, f"{name} {parser}")]
        args = self._drop_optional_brackets(args)
        read = self._read_args(name, parser, args)
        problems = list(read.problems)
        overrides: List[str] = []
        outputs: List[str] = []
        config_value = None
        for action, typed, values in read.options:
            if action.dest == "config_file" and values:
                config_value = values[0]
                continue
            if self._is_output(action):
                outputs += values
            elif action.dest != "compare_opt":
                for v in values:
                    problems += self._check_path(v, made)
        for action, token in read.positionals:
            if action is not None and action.dest == "opts":
                overrides.append(token)
            elif action is not None and self._is_output(action):
                outputs.append(token)
            else:
                problems += self._check_path(token, made)
        for action in parser._actions:  # outputs written by default (prepare_synthetic's --out)
            if self._is_output(action) and isinstance(action.default, str) and action.default:
                if not any(a is action for a, _, _ in read.options):
                    if action.option_strings or not any(a is action for a, _ in read.positionals):
                        outputs.append(action.default)
        if not problems and not any(_unresolved(a) for a in args):
            problems += self._full_parse(name, parser, args)

        config = None
        if config_value is not None:
            config, config_problems = self._resolve_config(config_value, made)
            problems += config_problems
        problems += self._check_overrides(config, overrides, made, made_here)
        compare_opts = [v for a, _, vs in read.options if a.dest == "compare_opt" for v in vs]
        if compare_opts:
            compare = next((vs[0] for a, _, vs in read.options if a.dest == "compare" and vs), None)
            b = config
            if compare is not None:
                b = None
                if compare.endswith((".py", ".yaml")):
                    b, _ = self._resolve_config(compare, made, report=False)
            problems += self._check_overrides(b, compare_opts, made, [])
        if name == "train_net.py" and config is not None and config[1] is not None:
            # no train.output_dir override (those are made in _check_overrides): the config's
            if not any(re.match(r"^\+*train\.output_dir=", o) for o in overrides):
                from omegaconf import OmegaConf

                plain = OmegaConf.to_container(config[1], resolve=False)
                default = (plain.get("train") or {}).get("output_dir", plain.get("OUTPUT_DIR"))
                if isinstance(default, str) and "${" not in default:
                    made_here.append(default)
        made_here += outputs
        return problems

    @staticmethod
    def _drop_optional_brackets(args: List[str]) -> List[str]:
        """``[--layout default]`` (an optional part, as in usage lines) read as its words."""
        out, depth = [], 0
        for a in args:
            if a.startswith("[") and "=" not in a.split("[", 1)[0]:
                depth += 1
                a = a[1:]
            if depth and a.endswith("]") and "[" not in a:
                depth -= 1
                a = a[:-1]
            if a:
                out.append(a)
        return out

    @staticmethod
    def _is_output(action: argparse.Action) -> bool:
        return (
            action.dest in OUTPUT_DESTS
            or action.dest.startswith("output_")
            or action.metavar == "OUT"
        )

    def _read_args(self, name: str, parser: argparse.ArgumentParser, args: List[str]) -> _Args:
        """Options (with argparse's abbreviations) and their values, and positionals by action."""
        by_string = parser._option_string_actions
        long_options = [s for s in by_string if s.startswith("--")]
        remainder = any(a.dest == "opts" and a.nargs == argparse.REMAINDER for a in parser._actions)
        options, positionals, problems = [], [], []
        after_overrides = False
        i = 0
        skip_value = False
        while i < len(args):
            a = args[i]
            if a == "--":
                positionals += [t for t in args[i + 1 :]]
                break
            if a == PLACEHOLDER:
                i += 1
                continue
            if not is_option(a):
                if skip_value and "=" not in a:  # the value of an unknown option
                    skip_value = False
                    i += 1
                    continue
                positionals.append(a)
                after_overrides = after_overrides or "=" in a
                i += 1
                continue
            skip_value = False
            typed, eq, attached = a.partition("=") if a.startswith("--") else (a, "", "")
            action = by_string.get(typed)
            if action is None and not a.startswith("--") and len(a) > 2 and a[:2] in by_string:
                typed, attached, eq = a[:2], a[2:], "="  # -k4: a short option and its value
                action = by_string[typed]
            if action is None and a.startswith("--") and parser.allow_abbrev:
                matches = [s for s in long_options if s.startswith(typed)]
                if remainder and after_overrides:
                    matches = []  # pvt_fpn_d2.cli.parse_args takes these by their full name
                if len(matches) > 1:
                    skip_value = not eq
                    problems.append((typed, f"{name}: option {typed} is ambiguous "
                                            f"({', '.join(matches)})"))  # fmt: skip
                    i += 1
                    continue
                action = by_string[matches[0]] if matches else None
            if action is None:
                problems.append(
                    (typed, f"{name} has no option {typed}{_close(typed, long_options)}")
                )
                skip_value = not eq
                i += 1
                continue
            if eq:
                values, n = [attached], 0
            else:  # pvt_fpn_d2.cli's count, of the words there are
                values = args[i + 1 : i + 1 + num_values(action, typed, args[i + 1 :])]
                n = len(values)
            for v in values:
                if action.choices is not None and not _unresolved(v):
                    if v not in [str(c) for c in action.choices]:
                        problems.append((v, f"{name} {typed}: invalid choice {v!r} (choose from "
                                            f"{', '.join(map(str, action.choices))})"))  # fmt: skip
            options.append((action, typed, values))
            i += 1 + n
        return _Args(options, self._assign_positionals(parser, positionals), problems)

    @staticmethod
    def _assign_positionals(parser: argparse.ArgumentParser, tokens: List[str]):
        actions = [a for a in parser._actions if not a.option_strings]
        out: List[Tuple[Optional[argparse.Action], str]] = []
        i = 0
        for action in actions:
            if action.nargs is None or action.nargs == "?":
                n = 1
            elif isinstance(action.nargs, int):
                n = action.nargs
            else:
                n = len(tokens) - i
            out += [(action, t) for t in tokens[i : i + n]]
            i += n
        return out + [(None, t) for t in tokens[i:]]

    @staticmethod
    def _full_parse(name: str, parser: argparse.ArgumentParser, args: List[str]):
        """What the entry point's own parse says of the whole command as typed (required options,
        types, groups, options after the overrides). The parse follows the parser's shape, as
        the entry points do: trailing ``key=value`` overrides (``nargs=REMAINDER``) go through
        ``pvt_fpn_d2.cli.parse_args``, ``nargs="*"`` ones through ``parse_intermixed_args``."""
        if any(a in ("-h", "--help", "--version") for a in args):
            return []
        opts = next((a for a in parser._actions if a.dest == "opts"), None)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                if opts is not None and opts.nargs == argparse.REMAINDER:
                    cli_parse_args(parser, args)
                elif opts is not None:
                    parser.parse_intermixed_args(args)
                else:
                    parser.parse_args(args)
        except _ParseError as e:
            return [(name, f"{name}: {e}")]
        except SystemExit:
            said = stderr.getvalue().strip().splitlines()
            return [(name, said[-1] if said else f"{name}: the command line does not parse")]
        return []

    # -- configs and overrides ---------------------------------------------------------------

    def _config_label(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(self.repo).as_posix()
        return str(path)

    def _resolve_config(self, value: str, made: List[str], report: bool = True):
        """``((path, loaded config or None), problems)`` for a ``--config-file`` value; path
        ``None`` where it is not checked (a placeholder, a made file) or unknown."""
        if _unresolved(value) or value.startswith(("/", "~", "path/to/", "detectron2:")):
            return None, []
        rel = self._norm(value[2:] if value.startswith("./") else value)
        if self._is_made(rel, made):
            return None, []
        path = None
        if (self.repo / rel).is_file() and not _is_ignored(self.repo, rel):
            path = self.repo / rel
        else:
            name = rel[len("configs/") :] if rel.startswith("configs/") else rel
            candidate = self.repo / "configs" / name
            if candidate.is_file() and candidate.suffix in (".py", ".yaml"):
                path = candidate
            else:
                with contextlib.suppress(Exception):
                    from pvt_fpn_d2.model_zoo import get_config_file

                    path = Path(get_config_file(value))
        if path is None:
            if not report:
                return None, []
            names = [
                p.relative_to(self.repo / "configs").as_posix()
                for p in (self.repo / "configs").rglob("*")
                if p.suffix in (".py", ".yaml") and p.name != "__init__.py"
            ]
            name = rel[len("configs/") :] if rel.startswith("configs/") else rel
            hint = _close(name, names)
            return None, [
                (value, f"--config-file {value}: no such file, and no config of that name in "
                        f"the model zoo (configs/){hint}")
            ]  # fmt: skip
        if path.suffix == ".yaml":
            return (path, _yacs_config()), []
        loaded = _lazy_config(path.resolve(), path.stat().st_mtime)
        if isinstance(loaded, str):
            return (path, None), [(value, f"{self._config_label(path)} does not load: {loaded}")]
        return (path, loaded), []

    def _check_overrides(
        self, config, overrides: List[str], made: List[str], made_here: List[str]
    ) -> List[Tuple[str, str]]:
        """Each ``key=value`` (yacs: ``KEY VALUE``) names a key of ``config`` (``(path,
        DictConfig)`` or None: not checked), by ``pvt_fpn_d2.config.is_override_key`` (the rule
        of ``apply_overrides``); its value, a path, exists or is made."""
        problems = []
        yacs = config is not None and config[0].suffix == ".yaml"
        i = 0
        while i < len(overrides):
            token = overrides[i]
            i += 1
            if token == PLACEHOLDER:
                continue
            m = _OVERRIDE.match(token)
            if yacs and m and not m.group("rest") and i < len(overrides):
                value = overrides[i]  # KEY VALUE pairs of yacs
                token = f"{token} {value}"
                i += 1
            elif m and (m.group("rest") or m.group("prefix") == "~"):
                value = (m.group("rest") or "=")[1:]
            else:
                if not _unresolved(token):
                    problems.append((token, f"{token!r} is not a key=value override"))
                continue
            key = m.group("key")
            if key == "train.output_dir":
                made_here.append(value)
            elif not value.startswith("${"):
                problems += self._check_path(value, made)
            if config is None or config[1] is None or m.group("prefix").startswith("+"):
                continue
            from pvt_fpn_d2.config import closest_override_keys, is_override_key

            if not is_override_key(config[1], key):
                label = self._config_label(config[0])
                close = closest_override_keys(config[1], key, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append((key, f"override {token}: {label} has no key {key}{hint}"))
        return problems


def check_pages(pages: List[Path], repo: Path = REPO) -> List[Problem]:
    """Every problem of ``pages`` (commands, Python blocks, links, tags) against ``repo``."""
    return DocsChecker(repo).check(pages)


def default_pages(repo: Path = REPO) -> List[Path]:
    """README.md, datasets/README.md and docs/*.md, those that exist."""
    pages = [repo / "README.md", repo / "datasets" / "README.md"]
    pages += sorted((repo / "docs").glob("*.md"))
    return [p for p in pages if p.is_file()]


def get_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "pages",
        nargs="*",
        type=Path,
        help="pages (default: README.md, datasets/README.md, docs/*.md)",
    )
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="the checkout the commands run in (default: this)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    _silenced()
    logging.basicConfig(level=logging.WARNING)
    checker = DocsChecker(args.repo)
    pages = args.pages or default_pages(checker.repo)
    problems = checker.check(pages)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {len({p.page for p in problems})} page(s)")
        return 1
    print(
        f"{checker.pages} pages, {checker.commands} commands, {checker.python_blocks} python "
        "blocks checked: no problem"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
