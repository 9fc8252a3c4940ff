"""Natural-language-like text from a seeded pseudo-word vocabulary.

Real text compresses 3-5x because a few words are very frequent and most
are rare (Zipf's law), and frequent words are short. The vocabulary here is
several thousand pronounceable pseudo-words, shorter ones at the top ranks,
drawn with probability ~ 1/rank. Drawing is a table lookup: a 65,536-slot
table holds each word in proportion to its probability, and two random bytes
pick a slot, so generating text runs at tens of MB/s in pure Python.
Everything derives from the seed: the same seed gives the same text.
"""

from __future__ import annotations

import random

ONSETS = [
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "st",
    "tr",
    "pl",
    "br",
    "ch",
    "sh",
    "th",
    "gr",
    "cl",
]
VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "io", "y"]
CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "x"]
SLOTS = 1 << 16
VOCABULARY_SIZE = 8000
ZIPF_EXPONENT = 1.0


def _syllables_for_rank(rank: int, rng: random.Random) -> int:
    base = 1 if rank < 60 else 2 if rank < 600 else 3 if rank < 4000 else 4
    return max(1, base + rng.choice((-1, 0, 0, 0, 1)))


def make_vocabulary(rng: random.Random, size: int = VOCABULARY_SIZE) -> list[str]:
    """``size`` distinct pseudo-words, most frequent (shortest) first."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        n = _syllables_for_rank(len(words) + 1, rng)
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(n))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_table(words: list[str], exponent: float = ZIPF_EXPONENT) -> list[str]:
    """A SLOTS-long list where each word appears about in proportion to rank**-exponent."""
    weights = [1.0 / (rank**exponent) for rank in range(1, len(words) + 1)]
    total = sum(weights)
    counts = [max(1, int(w / total * SLOTS)) for w in weights]  # every word stays possible
    rank = 0
    while sum(counts) > SLOTS:  # the floor of 1 overshoots: take it back from the top ranks
        if counts[rank] > 1:
            counts[rank] -= 1
        rank = (rank + 1) % 100
    counts[0] += SLOTS - sum(counts)
    table = [word for word, count in zip(words, counts, strict=True) for _ in range(count)]
    assert len(table) == SLOTS
    return table


class TextGenerator:
    """Sentences, speaker turns and names drawn from one seeded vocabulary."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.words = make_vocabulary(random.Random(seed ^ 0x5EED))  # noqa: S311
        self.table = zipf_table(self.words)

    def draw(self, n: int) -> list[str]:
        picks = memoryview(self.rng.randbytes(2 * n)).cast("H")
        return list(map(self.table.__getitem__, picks))

    def name(self) -> str:
        """A capitalized two-part name from the rarer half of the vocabulary."""
        pick = self.rng.randrange
        half = len(self.words) // 2
        return f"{self.words[half + pick(half)].capitalize()} {self.words[half + pick(half)].capitalize()}"

    def sentence(self, n: int) -> str:
        text = " ".join(self.draw(n))
        return text[:1].upper() + text[1:] + ("?" if self.rng.random() < 0.15 else ".")

    def paragraph(self, n_words: int) -> str:
        out: list[str] = []
        while n_words > 0:
            n = min(n_words, self.rng.randint(5, 28))
            out.append(self.sentence(n))
            n_words -= n
        return " ".join(out)

    def transcript(self, n_words: int, speakers: list[str]) -> str:
        """Timestamped speaker turns, like a meeting recorder's output."""
        rng = self.rng
        lines: list[str] = []
        t = 0
        while n_words > 0:
            n = min(n_words, rng.randint(4, 90))
            n_words -= n
            t += 1 + n // 3 + rng.randint(0, 6)
            lines.append(
                f"[{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}] "
                f"{speakers[rng.randrange(len(speakers))]}: {self.paragraph(n)}"
            )
        return "\n".join(lines)
