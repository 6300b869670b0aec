"""Events and memory page."""

from ui.views.events import render

render()
