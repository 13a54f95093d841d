"""Where the daemon's socket and token are: the same rules as the stq
command (Go: ipc.Locate)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Mapping, Optional

from .errors import StqError

__all__ = ["Paths", "locate", "MAX_SOCKET_PATH"]

#: The usable length of sun_path (108 bytes on Linux, 104 on macOS).
MAX_SOCKET_PATH = 103


@dataclass(frozen=True)
class Paths:
    """The files of one stq home."""

    home: str
    db: str
    socket: str
    token: str
    config: str
    lock: str


def locate(home: Optional[str] = None) -> Paths:
    """Resolve the paths of a home the way the stq command does.

    The home is ``home`` if given, else ``$STQ_HOME``, else the platform's
    state directory: ``~/Library/Application Support/stq`` on macOS;
    elsewhere ``$XDG_STATE_HOME/stq`` when XDG_STATE_HOME is set and
    absolute, else ``~/.local/state/stq``. The socket is ``<home>/stq.sock``
    and the token ``<home>/token``, except that without an explicit home
    (neither argument nor STQ_HOME) and with ``$XDG_RUNTIME_DIR`` set, the
    socket is ``$XDG_RUNTIME_DIR/stq/stq.sock``.

    Raises :class:`stq.StqError` when the socket path would be longer than a
    Unix socket path may be."""
    return _locate(home, os.environ, sys.platform)


def _locate(home: Optional[str], environ: Mapping[str, str], platform: str,
            check_length: bool = True) -> Paths:
    if not home:
        home = environ.get("STQ_HOME", "")
    explicit = bool(home)
    if not explicit:
        home = _default_state_dir(environ, platform)
    home = os.path.abspath(os.fsdecode(home))
    socket_path = os.path.join(home, "stq.sock")
    runtime_dir = environ.get("XDG_RUNTIME_DIR", "")
    if not explicit and runtime_dir:
        socket_path = os.path.normpath(os.path.join(runtime_dir, "stq", "stq.sock"))
    if check_length:
        n = len(os.fsencode(socket_path))
        if n > MAX_SOCKET_PATH:
            raise StqError("socket path too long: %s is %d bytes, longer than a Unix socket path may be (%d)"
                           % (socket_path, n, MAX_SOCKET_PATH))
    return Paths(
        home=home,
        db=os.path.join(home, "stq.db"),
        socket=socket_path,
        token=os.path.join(home, "token"),
        config=os.path.join(home, "config.toml"),
        lock=os.path.join(home, "stq.lock"),
    )


def _user_home(environ: Mapping[str, str]) -> str:
    # Go's os.UserHomeDir: $HOME on Unix, an error when it is unset.
    h = environ.get("HOME", "")
    if not h:
        raise StqError("find home directory: $HOME is not defined (set STQ_HOME)")
    return h


def _default_state_dir(environ: Mapping[str, str], platform: str) -> str:
    if platform == "darwin":
        return os.path.join(_user_home(environ), "Library", "Application Support", "stq")
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "stq")
    return os.path.join(_user_home(environ), ".local", "state", "stq")
