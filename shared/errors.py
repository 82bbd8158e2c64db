"""One line per failure at every entry point: ``<prog>: error: <file>[:line]: <what is wrong>``.

Every command (``python -m <paper>.train|evaluate|reproduce``, ``python -m shared.data.verify``, the
``make`` targets) ends a failure caused by the user's data, config, checkpoint or machine with one line
on stderr and exit status 1. The traceback is shown only in debug mode: ``--debug`` on the command
line or ``VISIONREPRO_DEBUG=1`` in the environment.

- :func:`cli_errors` wraps an entry point's body (used by ``shared.cli.train_main``, the reproduce
  dispatcher and ``verify``).
- :func:`install_excepthook` (called when ``shared`` is imported by one of this repository's
  ``python -m`` entry points) does the same for any exception that escapes an entry point that has no
  wrapper of its own.
- :func:`one_line` turns an exception into that line: a DataLoader worker's embedded traceback is cut
  back to the worker's own message; a multi-line message keeps its first line.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .papers import PAPERS

DEBUG_ENV = "VISIONREPRO_DEBUG"


class UserError(ValueError):
    """A failure caused by the user's input (data, config, checkpoint, machine); the message says which."""


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, corrupt or of the wrong kind; the message names it."""


class DeviceError(UserError):
    """The requested device is not available on this machine."""


def debug_enabled(argv: list[str] | None = None) -> bool:
    """True with ``VISIONREPRO_DEBUG=1`` (or any value but 0/empty), or ``--debug`` in ``argv``."""
    if os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
        return True
    return "--debug" in (sys.argv[1:] if argv is None else argv)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1 and type(exc).__str__ is KeyError.__str__:
        return f"missing key {exc.args[0]!r}"
    return str(exc)


def one_line(exc: BaseException) -> str:
    """The exception as one line (see the module docstring)."""
    text = _message(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if any("DataLoader worker process" in ln for ln in lines[:1]) and len(lines) > 1:
        # torch re-raises a worker's exception with its whole traceback in the message; the last line
        # is "<Type>: <message>" as raised in the worker.
        last = lines[-1].strip()
        head, sep, rest = last.partition(": ")
        text = rest if sep and head.replace(".", "").replace("_", "").isalnum() else last
        return text
    if not lines:
        return type(exc).__name__
    return lines[0].strip()


# Failures a user causes: bad files, configs, checkpoints, devices, data. Anything else is likely a bug
# in this repository and says so (still on one line; debug mode shows the traceback).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, UnicodeError, UserError)


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, USER_ERRORS):
        return True
    name = type(exc).__name__
    # NonFiniteLossError (a RuntimeError), torch's OutOfMemoryError, a DataLoader worker's error re-raised
    # as RuntimeError, an unloadable checkpoint.
    return name in ("NonFiniteLossError", "OutOfMemoryError") or "DataLoader worker" in str(exc)[:200]


def format_error(prog: str, exc: BaseException) -> str:
    """``<prog>: error: <one line>``; a likely bug also names the exception type and the debug switch."""
    msg = one_line(exc)
    if not _is_user_error(exc):
        msg = (f"{type(exc).__name__}: {msg} (unexpected; rerun with {DEBUG_ENV}=1 or --debug "
               f"for the traceback and report it)")
    return f"{prog}: error: {msg}"


def report(prog: str, exc: BaseException) -> int:
    """Print the one line for ``exc`` on stderr; return the exit status (1; 130 on Ctrl-C)."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(format_error(prog, exc), file=sys.stderr)
    return 1


@contextmanager
def cli_errors(prog: str, argv: list[str] | None = None) -> Iterator[None]:
    """Turn any exception in the body into one line on stderr and ``SystemExit(1)`` (not in debug mode)."""
    try:
        yield
    except SystemExit:
        raise
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure ends as one line
        if debug_enabled(argv):
            raise
        raise SystemExit(report(prog, e)) from None


def main_prog() -> str | None:
    """``python -m <module>`` of the running ``__main__`` when it is one of this repository's modules."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or ""
    if name.split(".")[0] in (*PAPERS, "shared"):
        return f"python -m {name}"
    return None


def install_excepthook() -> None:
    """For this repository's ``python -m`` entry points: an escaping exception prints one line."""
    prog = main_prog()
    if prog is None or getattr(sys.excepthook, "_visionrepro", False):
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if debug_enabled() or not isinstance(exc, (Exception, KeyboardInterrupt)):
            return previous(exc_type, exc, tb)
        report(prog, exc)

    hook._visionrepro = True  # type: ignore[attr-defined]
    sys.excepthook = hook


__all__ = ["CheckpointError", "DeviceError", "UserError", "cli_errors", "debug_enabled", "format_error",
           "install_excepthook", "one_line", "report"]
