"""honed's evaluation: BEIR retrieval metrics, RAG scoring with ragas, significance, reports and the release gate."""
