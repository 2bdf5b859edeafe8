"""Reference answers a dataset carries, and the decision a yes/no answer states.

A query in ``queries.jsonl`` may carry, in its ``metadata`` object:

- a reference answer: the first of ``answer``, ``long_answer``, ``reference`` that is a
  non-empty string. With one, the RAG evaluation adds ragas' ``SemanticSimilarity`` (the
  embedder's cosine between answer and reference), ``RougeScore`` (ROUGE-L F1) and the
  LLM-judged ``AnswerCorrectness`` (factuality F1 of the answer's statements against the
  reference's);
- a labelled decision: ``decision`` or ``final_decision`` (PubMedQA's field), one of
  ``yes``, ``no``, ``maybe``. With one, *decision accuracy* compares it with the
  decision the answer opens with (the question prompt asks yes/no questions to start
  with Yes or No); an answer that opens with neither counts as wrong.

Example:
    >>> meta = {"answer": "Yes, capped at the fees paid in the prior 12 months.", "decision": "yes"}
    >>> reference_answer(meta), reference_decision(meta)
    ('Yes, capped at the fees paid in the prior 12 months.', 'yes')
    >>> answer_decision("No. Section 9 says either party may terminate.")
    'no'
    >>> answer_decision("The passages say the term is five years.") is None
    True
"""
from __future__ import annotations

import re

from honed.retriever.errors import DataError

ANSWER_FIELDS = ("answer", "long_answer", "reference")
DECISION_FIELDS = ("decision", "final_decision")
DECISIONS = ("yes", "no", "maybe")

_FIRST_WORD = re.compile(r"\W*([A-Za-z]+)")


def reference_answer(meta: dict | None) -> str | None:
    """The query's reference answer, or None."""
    for key in ANSWER_FIELDS:
        v = (meta or {}).get(key)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def reference_decision(meta: dict | None, where: str = "query metadata") -> str | None:
    """The query's labelled yes/no/maybe decision, or None; any other value is an error naming `where`."""
    for key in DECISION_FIELDS:
        v = (meta or {}).get(key)
        if v is None:
            continue
        if not isinstance(v, str) or v.strip().lower() not in DECISIONS:
            raise DataError(f"{where}: {key!r} must be one of {', '.join(DECISIONS)}, got {v!r}")
        return v.strip().lower()
    return None


def answer_decision(answer: str) -> str | None:
    """``yes``/``no``/``maybe`` when the answer opens with that word, else None."""
    m = _FIRST_WORD.match(answer or "")
    word = m.group(1).lower() if m else ""
    return word if word in DECISIONS else None
