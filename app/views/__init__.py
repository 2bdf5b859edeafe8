"""The app's pages (Streamlit): compare, annotate, dashboard. The logic they call lives in honed.app."""
