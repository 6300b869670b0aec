"""Models page."""

from ui.views.models import render

render()
