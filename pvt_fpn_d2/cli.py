"""
Helpers for the command-line entry points (``train_net.py``, ``tools/*.py``,
``python -m pvt_fpn_d2.check_dataset``): the known-harmless third-party notices they hide, and
options typed after the ``key=value`` config overrides.

Only entry points call these; importing the library changes no warning filter. This module
imports nothing but the standard library.
"""

import argparse
import contextlib
import logging
import re
import sys
import warnings
from typing import Iterator, Optional, Sequence

__all__ = [
    "KNOWN_LOG_MESSAGES",
    "KNOWN_WARNINGS",
    "is_option",
    "num_values",
    "parse_args",
    "silence_known_warnings",
]

# (category, the exact message as a regex matched at its start, the module it is reported from
# or None for any, why it is harmless). Each is a notice of a pinned dependency that the user
# cannot act on; anything else stays visible.
KNOWN_WARNINGS = (
    (
        FutureWarning,
        r"`torch\.jit\.script` is deprecated\. "
        r"Please switch to `torch\.compile` or `torch\.export`\.",
        None,
        "fvcore.nn and detectron2 v0.6 (box_regression, ...) decorate functions with "
        "torch.jit.script when imported; torch 2.x deprecates the API, the functions still work. "
        "(Python 3.14's '... is not supported in Python 3.14+ and may break' stays visible.)",
    ),
    (
        UserWarning,
        r"pkg_resources is deprecated as an API\.",
        None,
        "detectron2.model_zoo (model_zoo.get_config, which the configs use) imports "
        "pkg_resources; `make setup` pins setuptools<81, which still ships it.",
    ),
    (
        UserWarning,
        r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing "
        r"argument\.",
        None,
        "detectron2 v0.6's anchor generator calls torch.meshgrid(y, x) without `indexing`, "
        "relying on today's default indexing='ij'.",
    ),
    (
        UserWarning,
        r"The given NumPy array is not writable, and PyTorch does not support non-writable "
        r"tensors\.",
        r"fvcore\.transforms\.transform$",
        "fvcore's flip transforms wrap the image in a tensor to flip it (a copy) and never write "
        "into it; with Pillow >= 9 the arrays that detectron2's resize returns are read-only.",
    ),
    (
        ResourceWarning,
        r"unclosed file <_io\.TextIOWrapper name='.*' mode='r'",
        r"detectron2\.engine\.defaults$",
        "detectron2's default_setup logs the config file with PathManager.open(...).read() and "
        "leaves the file to the garbage collector, which closes it at once. Hidden by default "
        "anyway; this keeps `python -X dev` and `-W error::ResourceWarning` runs clean.",
    ),
    (
        FutureWarning,
        r"`create_unbacked_symint` is deprecated, please use `new_dynamic_size` instead",
        r"torchvision\._meta_registrations$",
        "torchvision's meta kernel of nms (what torch.export traces in place of the real op, "
        "during tools/export_model.py) calls the renamed torch API once per NMS; the exported "
        "graph is the same.",
    ),
)

# Notices that third-party code logs through ``logging`` rather than ``warnings``: (the logger's
# name, the exact message as a regex matched at its start, why it is harmless).
KNOWN_LOG_MESSAGES = (
    (
        "torch.utils.cpp_extension",
        r"No CUDA runtime is found, using CUDA_HOME=",
        "logged (WARNING) when the module is imported on a machine with a CUDA toolkit directory "
        "but no GPU; detectron2's collect_env (default_setup's environment table) imports it. "
        "Training on the CPU is the intended use there, and the table says 'GPU available: No'.",
    ),
    (
        "torch.fx._symbolic_trace",
        r"is_fx_tracing will return true for both fx\.symbolic_trace and torch\.(export|compile)\b",
        "upstream detectron2 (GitHub main, not v0.6) calls detectron2.utils.tracing."
        "is_fx_tracing() in every ROIPooler.forward, only to skip its argument assertions while "
        "torch.fx traces the model; that calls torch's deprecated torch.fx._symbolic_trace."
        "is_fx_tracing, which logs this once per process (a 'W... _symbolic_trace.py:57]' line "
        "on stderr). Training and prediction trace nothing, so the answer is False either way.",
    ),
    (
        "",  # the root logger: onnxruntime.quantization calls logging.warning
        r"Please consider (to run )?pre-processing before quantization",
        "logged twice by onnxruntime.quantization.quantize_static (tools/export_model.py "
        "--quantize int8) for every model: its pre-processing (symbolic shape inference and "
        "graph optimisation) is for models without shapes; the exported graph has them, and "
        "ONNX Runtime optimises the quantized graph when it loads it.",
    ),
)


class _DropMessage(logging.Filter):
    """A logging filter that drops the records whose message matches a regex."""

    def __init__(self, pattern: "re.Pattern[str]"):
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


# one filter object per logger, so that adding it again changes nothing
_LOG_FILTERS = tuple(
    (logger, _DropMessage(re.compile(message))) for logger, message, _why in KNOWN_LOG_MESSAGES
)


def silence_known_warnings() -> None:
    """
    Hide the known-harmless third-party notices: the warnings listed in :data:`KNOWN_WARNINGS`
    (by category and exact message) and the log records listed in :data:`KNOWN_LOG_MESSAGES`
    (by logger and exact message; e.g. torch's "No CUDA runtime is found" on CPU-only machines).
    Call it first thing in an entry point, before detectron2, fvcore or timm are imported (some
    of these warnings are emitted at import time). Calling it again changes nothing.
    """
    for category, message, module, _why in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module or "")
    for logger, drop in _LOG_FILTERS:
        logging.getLogger(logger).addFilter(drop)


def is_option(token: str) -> bool:
    """Whether ``token`` is an option: "-5" or "-.5" are values (argparse's own rule for parsers
    without numeric options)."""
    return token.startswith("-") and len(token) > 1 and not re.match(r"^-\.?\d", token)


def num_values(action: argparse.Action, token: str, rest: Sequence[str]) -> int:
    """How many of the tokens after ``token`` are ``action``'s values."""
    if "=" in token or action.nargs == 0:
        return 0
    if action.nargs is None:
        return 1
    if isinstance(action.nargs, int):
        return action.nargs
    # "?", "*", "+": the following plain values, up to the next option or key=value override
    n = 0
    for t in rest:
        if is_option(t) or "=" in t or (action.nargs == "?" and n == 1):
            break
        n += 1
    return n


@contextlib.contextmanager
def _nothing_required(parser: argparse.ArgumentParser) -> Iterator[None]:
    """``parser`` with its required options and groups optional inside the block."""
    required = [a for a in parser._actions if a.required and a.option_strings]
    groups = [g for g in parser._mutually_exclusive_groups if g.required]
    for item in required + groups:
        item.required = False
    try:
        yield
    finally:
        for item in required + groups:
            item.required = True


def parse_args(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None, overrides: str = "opts"
) -> argparse.Namespace:
    """
    ``parser.parse_args(argv)`` for a parser whose ``overrides`` positional takes the rest of
    the command line (``nargs=argparse.REMAINDER``, as detectron2's ``default_argument_parser``),
    where options typed after the first ``key=value`` override would end up among the overrides
    (``train_net.py --config-file C train.max_iter=40 --resume``). Those options and their
    values are taken out of the overrides and parsed as options; an unknown option there exits
    with one line asking to put options before the overrides.

    Args:
        parser: the parser; its ``overrides`` argument uses ``nargs=argparse.REMAINDER``.
        argv: the arguments (default ``sys.argv[1:]``).
        overrides: ``dest`` of the overrides argument.

    Returns:
        the parsed arguments, ``overrides`` holding only the config overrides.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with _nothing_required(parser):  # a required option may be among the overrides' tail
        tail = list(getattr(parser.parse_args(argv), overrides) or [])
    if not any(is_option(t) for t in tail):
        return parser.parse_args(argv)
    head = argv[: len(argv) - len(tail)]  # REMAINDER takes the end of argv
    options, kept = [], []
    i = 0
    while i < len(tail):
        token = tail[i]
        if not is_option(token):
            kept.append(token)
            i += 1
            continue
        action = parser._option_string_actions.get(token.split("=", 1)[0])
        if action is None:
            parser.exit(
                2,
                f"{parser.prog}: error: unknown option {token!r} after the key=value overrides; "
                "put options before the overrides (see --help)\n",
            )
        n = num_values(action, token, tail[i + 1 :])
        if n > len(tail) - i - 1 or (action.nargs == "+" and n == 0):
            parser.error(f"argument {token}: expected a value after it")
        options += tail[i : i + 1 + n]
        i += 1 + n
    args = parser.parse_args(head + options)  # the options alone: a list option takes no override
    setattr(args, overrides, kept)
    return args
