"""History page."""

from ui.views.history import render

render()
