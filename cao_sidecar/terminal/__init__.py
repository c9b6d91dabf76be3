"""Terminal layer: our own tmux server, driven through one control-mode client per session."""

from .errors import PaneGone, TmuxError
from .tmux import PaneInfo, TmuxServer

__all__ = ["PaneGone", "PaneInfo", "TmuxError", "TmuxServer"]
