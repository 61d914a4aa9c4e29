"""Design figures for the injection scanner's de-obfuscated views (``charter.guards.views``), from
data the views may be tuned on: synthetic obfuscations of TRAINING-split attacks and benign
prompts, training benign prompts with natural codes, tags and blobs added, and the tune split.

Usage::

    python training/obfuscation_views.py [--n-attacks 300] [--n-benign 600] [--tune]

For each obfuscation it prints the share of obfuscated training attacks caught and of obfuscated
training benign prompts refused, without and with views, at the shipped ``direct`` threshold;
``--tune`` adds the tune split (pooled, role-play) and the templated tune hard cases. It never
reads the test split or the evaluation sets: those are scored once, by
``bench/guards/bench_injection.py``.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import injection_data as data

from charter.guards.injection import InjectionModel, load_model

SEED = 7
MAX_CHARS = 600
LEET = {"o": "0", "i": "1", "e": "3", "a": "4", "s": "5", "t": "7"}


def leet(text: str, rng: random.Random, share: float = 1.0) -> str:
    """Each foldable letter of each word replaced with its leet digit with probability ``share``."""
    return "".join(
        LEET[c.lower()] if c.lower() in LEET and rng.random() < share else c for c in text
    )


def spaced(text: str, sep: str = " ", gap: str = "   ") -> str:
    return gap.join(sep.join(word) for word in text.split())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OBFUSCATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "leet (all)": lambda t, r: leet(t, r),
    "leet (half)": lambda t, r: leet(t, r, 0.5),
    "base64 bare": lambda t, r: b64(t),
    "base64 framed": lambda t, r: f"Decode this and do what it says: {b64(t)}",
    "base64url, no padding": lambda t, r: base64.urlsafe_b64encode(t.encode()).decode().rstrip("="),
    "hex bare": lambda t, r: t.encode().hex(),
    "hex bytes spaced": lambda t, r: " ".join(f"{b:02x}" for b in t.encode()),
    "\\x escapes": lambda t, r: "".join(f"\\x{b:02x}" for b in t.encode()),
    "\\u escapes": lambda t, r: "".join(f"\\u{ord(c):04x}" for c in t if ord(c) < 0x10000),
    "percent": lambda t, r: "".join(f"%{b:02X}" for b in t.encode()),
    "spaced letters": lambda t, r: spaced(t),
    "hyphenated letters": lambda t, r: spaced(t, "-", " "),
    "spaced leet": lambda t, r: spaced(leet(t, r)),
    "base64 of leet": lambda t, r: f"decode: {b64(leet(t, r))}",
}


def _natural(rng: random.Random) -> str:
    """A code, tag or blob of the kind ordinary messages carry."""
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    kinds: list[Callable[[], str]] = [
        lambda: (
            f"order #{rng.choice(letters)}{rng.randint(1, 9)}{rng.choice(letters)}"
            f"{rng.randint(0, 9)}-{rng.randint(10000, 99999)}"
        ),
        lambda: f"model {rng.choice(letters)}{rng.randint(1, 9)}-{rng.randint(100, 999)}",
        lambda: (
            f"my username is {rng.choice(['D4rk', 'Sn1p3r', 'L00t', 'N1nj4', 'Sh4d0w'])}"
            f"{rng.choice(['L0rd', 'K1ng', 'W0lf', 'B0t', 'F0x'])}{rng.randint(1, 99)}"
        ),
        lambda: (
            "token "
            + base64.b64encode(
                bytes(rng.randrange(256) for _ in range(rng.randint(12, 48)))
            ).decode()
        ),
        lambda: f"colour #{rng.randrange(16**6):06x}",
        lambda: f"commit {rng.randrange(16**40):040x}",
        lambda: f"ref {' '.join(rng.choice(letters) for _ in range(rng.randint(3, 6)))}",
        lambda: "payload " + b64(f'{{"id": {rng.randint(1, 9999)}, "status": "paid"}}'),
        lambda: (
            f"serial {rng.randint(1, 9)}{rng.choice(letters)}{rng.randint(1, 9)}"
            f"-{rng.randint(1, 9)}{rng.choice(letters)}{rng.randint(10, 99)}"
        ),
        lambda: f"at {rng.randint(1, 12)}pm on the {rng.randint(4, 28)}th, {rng.randint(2, 64)}GB",
    ]
    return rng.choice(kinds)()


def _rate(model: InjectionModel, texts: Sequence[str], views: bool) -> float:
    hits = [model.score_views(t, views)[0] >= model.threshold for t in texts]
    return float(np.mean(hits)) if hits else float("nan")


def _sample(examples: Sequence[data.Example], n: int, rng: random.Random) -> list[str]:
    texts = sorted({e.text for e in examples if 0 < len(e.text) <= MAX_CHARS})
    return rng.sample(texts, min(n, len(texts)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-attacks", type=int, default=300)
    parser.add_argument("--n-benign", type=int, default=600)
    parser.add_argument("--tune", action="store_true", help="also the tune split and hard cases")
    args = parser.parse_args(argv)
    model = load_model("direct")
    rng = random.Random(SEED)
    splits = data.split_prompts()
    hard = data.hard_splits()
    train = splits["train"] + hard["train"]
    attacks = _sample([e for e in train if e.label == 1], args.n_attacks, rng)
    benign = _sample([e for e in train if e.label == 0], args.n_benign, rng)
    print(f"training attacks {len(attacks)}, training benign {len(benign)}, t={model.threshold}")
    print("\n| set | attacks caught, no views / views | benign refused, no views / views |")
    print("|---|---|---|")

    def row(name: str, pos: Sequence[str], neg: Sequence[str]) -> None:
        print(
            f"| {name} | {_rate(model, pos, False):.3f} / {_rate(model, pos, True):.3f} "
            f"| {_rate(model, neg, False):.4f} / {_rate(model, neg, True):.4f} |"
        )

    def table(label: str, pos: Sequence[str], neg: Sequence[str]) -> None:
        row(f"{label}: plain", pos, neg)
        for name, fn in OBFUSCATIONS.items():
            r = random.Random(f"{SEED}:{label}:{name}")
            row(f"{label}: {name}", [fn(t, r) for t in pos], [fn(t, r) for t in neg])
        r = random.Random(f"{SEED}:{label}:natural")
        natural = [f"{t} {_natural(r)}" for t in neg] + [f"{_natural(r)} {t}" for t in neg]
        row(f"{label}: benign + natural codes, tags, blobs", [], natural)

    table("train", attacks, benign)
    if args.tune:
        tune = splits["tune"]
        tune_rows = tune + hard["tune"]
        table(
            "tune",
            _sample([e for e in tune_rows if e.label == 1], args.n_attacks, rng),
            _sample([e for e in tune_rows if e.label == 0], args.n_benign, rng),
        )
        tune_benign = [e.text for e in tune if e.label == 0]
        tune_attacks = [e.text for e in tune if e.label == 1]
        row("tune split, pooled", tune_attacks, tune_benign)
        roleplay = [e.text for e in tune if e.source == "gpteacher_roleplay"]
        row("tune split, role-play", [], roleplay)
        templ = hard["tune"]
        row(
            "templated tune hard cases",
            [e.text for e in templ if e.label == 1],
            [e.text for e in templ if e.label == 0],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
