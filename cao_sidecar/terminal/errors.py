"""Errors of the terminal layer (re-exported by :mod:`cao_sidecar.terminal.tmux`)."""

from __future__ import annotations


class TmuxError(Exception):
    """tmux answered ``%error`` (the message is tmux's text), or a tmux fork failed."""


class PaneGone(TmuxError):
    """The target pane/window no longer exists, or its process has exited."""


class ControlClientExited(TmuxError):
    """The control-mode client exited before answering (its session was destroyed, or the server died)."""


_MISSING = ("can't find pane", "can't find window", "can't find session", "no such pane", "no such window")


def target_missing(exc: BaseException) -> bool:
    """Whether tmux's error says the command's target (pane, window, session) does not exist."""
    msg = str(exc)
    return any(m in msg for m in _MISSING)


INSTALL_TMUX = "tmux is not installed: install tmux (apt-get install tmux)"


class TmuxMissing(TmuxError):
    """The tmux program cannot be run (not installed, or not on PATH)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(INSTALL_TMUX + (f" ({detail})" if detail else ""))
