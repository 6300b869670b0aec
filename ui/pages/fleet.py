"""Fleet page."""

from ui.views.fleet import render

render()
