"""What-if page."""

from ui.views.whatif import render

render()
