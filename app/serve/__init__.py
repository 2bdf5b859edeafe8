"""``honed serve``: the HTTP retrieval service, champion/challenger traffic and the micro-batcher."""
