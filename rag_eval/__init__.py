"""honed's evaluation: retrieval metrics, baselines, reports (and later RAG scoring and gates)."""
