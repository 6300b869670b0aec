"""What-if: a placeholder until the scenarios feature exists (no fake results)."""

from __future__ import annotations

import streamlit as st


def render() -> None:
    st.title("What-if")
    st.info(
        "What-if scenarios (fork the twin, change a payload or a wear rate, compare futures) come with "
        "the scenarios feature. Nothing is simulated on this page yet, so it shows no results."
    )
