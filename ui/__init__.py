"""Jumeau's operator dashboard (Streamlit)."""
