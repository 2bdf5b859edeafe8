"""LLM access, one home: the packaged GGUF through llama.cpp (in a child process), or any OpenAI-compatible URL.

- :mod:`.generator`: :func:`~.generator.make_llm` (``"qwen"``, a GGUF path, or ``URL#model``) gives a
  LlamaIndex LLM that answers RAG questions; :func:`~.generator.chat_json` asks for schema-constrained JSON
  (synthetic queries, the judge's structured outputs).
- :mod:`.process`: the child process every local llama.cpp call runs in, so a native crash ends one call,
  not the caller (:class:`~.process.LocalLLMCrashed`).
- :mod:`.llama`: loading llama.cpp safely on any x86-64 CPU (extra buffer types off where AMX is compiled
  in) and the build facts reports record.

The ragas judge built on these lives with the evaluation (:mod:`honed.rag_eval.judge`).

Example:
    >>> from honed.retriever.llm.generator import make_llm
    >>> make_llm("qwen", max_tokens=32).complete("Say hi").text       # doctest: +SKIP
"""
