"""The answer prompt for a request: a question, a statement to check, or a search phrase.

One place for the grounded-answer prompts the RAG evaluation and the comparison app
both use. A request is classified by its form (no model call):

- **yes-no**: a question opening with an auxiliary verb ("Is low serum chloride a
  risk factor …?", "does the agreement renew automatically");
- **question**: any other question: ends with ``?`` or opens with a question word
  ("what is the notice period", "on what date was the contract made");
- **statement**: a full sentence ending with a period, as SciFact's claims are
  ("Statins decrease blood cholesterol.");
- **topic**: anything else, a search phrase ("cap on liability").

Why three templates: one claim-aware prompt made the 0.5B generator frame *questions*
as claims ("The passage does not support the claim that …", then contradict itself),
and a question-only prompt made it refuse every SciFact claim. Only a yes/no question
asks the model to open with Yes or No (which is what decision accuracy reads): told
"if it is a yes/no question, start with Yes or No", the 0.5B model opened every
answer with "Yes", "Who owns …?" included.

Example:
    >>> request_kind("Is there a cap on the supplier's liability?")
    'yes-no'
    >>> request_kind("who owns the work product")
    'question'
    >>> request_kind("Statins decrease blood cholesterol.")
    'statement'
    >>> request_kind("cap on liability")
    'topic'
"""
from __future__ import annotations

import re

# wh-words and the auxiliaries that open an English question ("does it renew", "can either party …")
WH_WORDS = frozenset("what which who whom whose when where why how".split())
AUXILIARIES = frozenset(
    "is are was were am do does did can could should would will shall may might must has have had".split())

YES_NO_TEMPLATE = (
    "Read these passages.\n\n{context_str}\n\n"
    "Question: {query_str}\n"
    "Start your answer with Yes or No, then give the reason in one sentence, quoting the passages. "
    "If the passages do not answer it, say so and say what they do say."
)
QUESTION_TEMPLATE = (
    "Read these passages.\n\n{context_str}\n\n"
    "Question: {query_str}\n"
    "Answer the question from the passages in one or two sentences, quoting them. "
    "If the passages do not answer it, say so and say what they do say."
)
STATEMENT_TEMPLATE = (
    "Read these passages.\n\n{context_str}\n\n"
    "Statement: {query_str}\n"
    "Say whether the passages support or contradict the statement, in one or two sentences, "
    "quoting them. If they say nothing about it, say so and say what they do say."
)
TOPIC_TEMPLATE = (
    "Read these passages.\n\n{context_str}\n\n"
    "Topic: {query_str}\n"
    "Say what the passages state about this topic, in one or two sentences, quoting them. "
    "If they say nothing about it, say so."
)
TEMPLATES = {"yes-no": YES_NO_TEMPLATE, "question": QUESTION_TEMPLATE, "statement": STATEMENT_TEMPLATE, "topic": TOPIC_TEMPLATE}

_WORD = re.compile(r"[A-Za-z']+")


def request_kind(text: str) -> str:
    """``yes-no``, ``question``, ``statement`` or ``topic``, from the request's form."""
    t = text.strip()
    words = _WORD.findall(t.lower())
    first = words[0] if words else ""
    if first in AUXILIARIES and (t.endswith("?") or not t.endswith(".")):
        return "yes-no"
    # "what is …", and "on what date …", "in which state …"
    if t.endswith("?") or first in WH_WORDS or (len(words) > 1 and words[1] in WH_WORDS):
        return "question"
    # a period after at least three words: a sentence, not an abbreviation such as "Inc."
    if t.endswith(".") and len(words) >= 3:
        return "statement"
    return "topic"


def answer_template(text: str) -> str:
    """The prompt template (``{context_str}``, ``{query_str}``) for this request."""
    return TEMPLATES[request_kind(text)]
