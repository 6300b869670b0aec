"""The dashboard's entry file (``streamlit run ui/app.py``, or ``twin ui``): it only declares pages."""

import streamlit as st

st.set_page_config(page_title="Jumeau", layout="wide")
st.navigation(
    [
        st.Page("pages/fleet.py", title="Fleet", default=True),
        st.Page("pages/asset.py", title="Asset live"),
        st.Page("pages/history.py", title="History"),
        st.Page("pages/events.py", title="Events and memory"),
        st.Page("pages/whatif.py", title="What-if"),
        st.Page("pages/models.py", title="Models"),
    ]
).run()
