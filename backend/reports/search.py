"""Species name search: prefix matches first, then typo-tolerant matches (trigram candidates ranked by
edit distance). The flora has at most tens of thousands of names, so this lives in memory."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass


def normalise(text: str) -> str:
    """Lower case, accents removed, inner whitespace collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.lower().split())


def _trigrams(text: str) -> set[str]:
    padded = f"  {text} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (adjacent transpositions count as one edit)."""
    prev2, prev = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def max_typos(query: str) -> int:
    return 1 if len(query) <= 5 else 2 if len(query) <= 9 else 3


@dataclass(frozen=True)
class Match:
    index: int  # position in the searched list
    kind: str  # prefix | word-prefix | fuzzy
    distance: int


class NameIndex:
    """Search over a fixed list of names."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.norm = [normalise(n) for n in names]
        self.words = [n.split() for n in self.norm]
        self.postings: dict[str, list[int]] = {}
        for i, n in enumerate(self.norm):
            for g in _trigrams(n):
                self.postings.setdefault(g, []).append(i)

    def search(self, query: str, limit: int) -> list[Match]:
        q = normalise(query)
        if not q:
            return []
        out: list[Match] = []
        seen: set[int] = set()
        prefix = sorted((i for i, n in enumerate(self.norm) if n.startswith(q)), key=lambda i: (len(self.norm[i]), self.norm[i]))
        for i in prefix:
            out.append(Match(i, "prefix", 0))
            seen.add(i)
        words = [i for i, ws in enumerate(self.words) if i not in seen and any(w.startswith(q) for w in ws)]
        for i in sorted(words, key=lambda i: self.norm[i]):
            out.append(Match(i, "word-prefix", 0))
            seen.add(i)
        if len(out) >= limit or len(q) < 3:
            return out[:limit]
        # typo-tolerant: names sharing trigrams with the query, ranked by the edit distance between the
        # query and the name's beginning (or a word's beginning) of the same length
        grams = _trigrams(q)
        shared = Counter(i for g in grams for i in self.postings.get(g, ()) if i not in seen)
        budget = max_typos(q)
        fuzzy = []
        for i, n_shared in shared.most_common(500):
            if n_shared < max(1, len(grams) - 3 * budget):
                break
            name = self.norm[i]
            starts = [0] + [k + 1 for k, c in enumerate(name) if c == " "]
            d = min(min(edit_distance(q, name[s:s + len(q) + e]) for e in (-1, 0, 1)) for s in starts)
            if d <= budget:
                fuzzy.append((d, name, i))
        out += [Match(i, "fuzzy", d) for d, _, i in sorted(fuzzy)]
        return out[:limit]
