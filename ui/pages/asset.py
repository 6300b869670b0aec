"""Asset live page."""

from ui.views.asset import render

render()
