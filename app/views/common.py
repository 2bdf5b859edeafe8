"""What every page shares: the feedback store, opened once per app process."""
from __future__ import annotations

import streamlit as st

from honed.app.store import FeedbackStore


@st.cache_resource
def feedback_store(url) -> FeedbackStore:
    return FeedbackStore(url)
