"""Terminal layer: our own tmux server, driven through one control-mode client per session."""

from .errors import PaneGone, TmuxError
from .panes import PaneInfo
from .tmux import TmuxServer

__all__ = ["PaneGone", "PaneInfo", "TmuxError", "TmuxServer"]
