"""Champion/challenger traffic: sticky arm assignment and team-draft interleaving.

**Assignment.** A user (or session) id is hashed with the experiment's salt to a
number in [0, 1); ids below ``split`` see the challenger. The same id always
lands in the same arm, on every replica and after a restart, with no state to
share; a new salt reshuffles everyone for the next experiment.

**Team-draft interleaving** (Radlinski, Kurup and Joachims, CIKM 2008) shows one
list built from both rankings: in each round the team with fewer picks (a coin
flip on a tie) adds its highest-ranked document not yet shown, and that
position is credited to it. A click counts for the team that placed the
clicked document; an impression is won by the team with more clicks. It needs
far fewer impressions than an A/B split to tell two rankers apart because
every user judges both at once. No maintained Python package implements it
for online use, hence these few lines.

Example:
    >>> assign_arm("user-42", split=0.1, salt="exp1") in ("champion", "challenger")
    True
    >>> merged = team_draft(["a", "b", "c"], ["b", "d", "e"], k=4, seed=7)
    >>> len(merged), len({doc for doc, _ in merged})     # four distinct documents
    (4, 4)
    >>> credit([("a", "champion"), ("d", "challenger")], clicked={"d"})
    {'champion': 0, 'challenger': 1}
"""
from __future__ import annotations

import hashlib
import random

CHAMPION, CHALLENGER = "champion", "challenger"


def bucket(user_id: str, salt: str = "") -> float:
    """A stable number in [0, 1) for a user id (sha256, so ids with a common prefix still spread)."""
    h = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


def assign_arm(user_id: str, split: float, salt: str = "") -> str:
    """``challenger`` for the `split` share of user ids, ``champion`` for the rest; sticky per id."""
    return CHALLENGER if bucket(user_id, salt) < split else CHAMPION


def team_draft(champion: list[str], challenger: list[str], k: int, seed: int | str = 0) -> list[tuple[str, str]]:
    """Interleave two rankings into at most `k` (doc id, team) pairs, team-draft style.

    `seed` fixes the coin flips, so an impression can be rebuilt from its id.
    """
    rng = random.Random(seed)
    lists = {CHAMPION: champion, CHALLENGER: challenger}
    nxt = {CHAMPION: 0, CHALLENGER: 0}
    picks = {CHAMPION: 0, CHALLENGER: 0}
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def advance(team: str) -> str | None:
        ranking = lists[team]
        while nxt[team] < len(ranking) and ranking[nxt[team]] in seen:
            nxt[team] += 1
        return ranking[nxt[team]] if nxt[team] < len(ranking) else None

    while len(out) < k:
        heads = {t: advance(t) for t in lists}
        live = [t for t in lists if heads[t] is not None]
        if not live:
            break
        if len(live) == 1:
            team = live[0]
        elif picks[CHAMPION] != picks[CHALLENGER]:
            team = min(live, key=lambda t: picks[t])
        else:
            team = CHAMPION if rng.random() < 0.5 else CHALLENGER
        doc = heads[team]
        out.append((doc, team))
        seen.add(doc)
        picks[team] += 1
    return out


def credit(merged: list[tuple[str, str]], clicked: set[str]) -> dict[str, int]:
    """Clicks per team: each clicked document counts for the team that placed it."""
    counts = {CHAMPION: 0, CHALLENGER: 0}
    for doc, team in merged:
        if doc in clicked:
            counts[team] += 1
    return counts


def winner(counts: dict[str, int]) -> str | None:
    """The team with more clicks in one impression; None for a tie (including no clicks)."""
    if counts[CHAMPION] == counts[CHALLENGER]:
        return None
    return CHAMPION if counts[CHAMPION] > counts[CHALLENGER] else CHALLENGER
