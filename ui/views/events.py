"""Events and memory: anomalies, faults and notes; acknowledge an anomaly with a note (stored and
shown to everyone); "when did we see this before?" from the twin's episodic memory."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import queries
from ui.resources import config, engine
from ui.timefmt import format_local
from ui.views.common import store_error, store_tables

CATEGORIES = ("anomaly", "fault", "note", "marker", "error")


def event_label(row) -> str:
    state = "acknowledged" if row.acknowledged else "open"
    return f"#{row.id} {format_local(int(row.t_ns))} {row.asset} {row.category}: {row.name} ({state})"


def acknowledge_form(url: str, events: pd.DataFrame) -> None:
    anomalies = events[events["category"] == "anomaly"]
    st.subheader("Acknowledge an anomaly")
    if anomalies.empty:
        st.caption("No anomalies in this list.")
        return
    labels = [event_label(row) for row in anomalies.itertuples()]
    with st.form("ack-form", clear_on_submit=True):
        chosen = st.selectbox("Anomaly", labels, key="ack-event")
        author = st.text_input("Your name", key="ack-author")
        note = st.text_area("Note (what you saw, what you did)", key="ack-note")
        submitted = st.form_submit_button("Acknowledge")
    if submitted:
        event_id = int(anomalies.iloc[labels.index(chosen)]["id"])
        try:
            queries.acknowledge(url, event_id, author, note)
        except queries.StoreUnavailable as exc:
            store_error(exc)
            return
        st.success(f"Acknowledged event #{event_id}; everyone sees the note.")


def note_form(url: str, assets: list[str]) -> None:
    st.subheader("Add a note")
    if not assets:
        st.caption("No assets recorded yet.")
        return
    with st.form("note-form", clear_on_submit=True):
        asset = st.selectbox("Asset", assets, key="note-asset")
        author = st.text_input("Your name", key="note-author")
        text = st.text_area("Note", key="note-text")
        submitted = st.form_submit_button("Add note")
    if submitted and text.strip():
        try:
            queries.add_note(url, asset, author, text)
        except queries.StoreUnavailable as exc:
            store_error(exc)
            return
        st.success(f"Note stored on {asset}.")


def memory_search(url: str, tables: frozenset[str], events: pd.DataFrame) -> None:
    st.subheader("When did we see this before?")
    if "memories" not in tables:
        st.info("The twin's episodic memory is not in the database yet (no `memories` table).")
        return
    try:
        from twin.worker.memory import search
    except ImportError:
        st.info("Memory search comes with the twin worker, which is not installed here.")
        return
    if events.empty:
        st.caption("Pick an event first.")
        return
    labels = [event_label(row) for row in events.itertuples()]
    chosen = events.iloc[labels.index(st.selectbox("Like the moment of", labels, key="memory-event"))]
    moments = search(engine(url), str(chosen["asset"]), int(chosen["t_ns"]), k=5)
    if not moments:
        st.info(f"Nothing remembered for {chosen['asset']} yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "when": format_local(m.t_ns),
                    "kind": m.kind,
                    "similarity": round(m.similarity, 3),
                    "context": str(m.context)[:200],
                }
                for m in moments
            ]
        ),
        hide_index=True,
        key="memory-table",
    )


def render() -> None:
    st.title("Events and memory")
    url = config().database_url
    tables = store_tables(url)
    if tables is None:
        return
    if "events" not in tables:
        st.info("Nothing recorded yet: the database has no events table (run `twin up` or `twin record`).")
        return
    try:
        every = queries.event_table(url, limit=2000)
        assets = sorted(set(every["asset"])) if not every.empty else []
        c1, c2, c3 = st.columns([2, 3, 2])
        asset = c1.selectbox("Asset", ["(all)", *assets], key="events-asset")
        categories = c2.multiselect(
            "Categories", CATEGORIES, default=["anomaly", "fault", "note"], key="events-cats"
        )
        only_open = c3.checkbox("Only open anomalies", key="events-open")
        events = queries.event_table(url, None if asset == "(all)" else asset, tuple(categories))
        if not events.empty and only_open:
            events = events[(events["category"] == "anomaly") & ~events["acknowledged"]]
        if events.empty:
            st.info("No events match.")
        else:
            shown = events.assign(time=events["t_ns"].map(lambda t: format_local(int(t))))
            st.dataframe(
                shown[
                    [
                        "id",
                        "time",
                        "asset",
                        "category",
                        "name",
                        "severity",
                        "message",
                        "acknowledged",
                        "notes",
                    ]
                ],
                hide_index=True,
                key="events-table",
            )
            acknowledge_form(url, events)
        note_form(url, assets)
        memory_search(url, tables, events)
    except queries.StoreUnavailable as exc:
        store_error(exc)
