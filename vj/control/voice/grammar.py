"""From what the recogniser heard to a canonical command, or to nothing.

Speech recognition on a small model mishears: "pan left" comes out as "10 left", "prompt" as "from", "scene three"
as "scene 3". The grammar takes that in stride:

* text is normalised (case, punctuation, fillers like "please" and "a bit", spoken numbers to digits);
* each command has a list of phrasings (``PHRASES``); an utterance is compared with every phrasing both as text
  (rapidfuzz) and by sound (Metaphone codes from jellyfish, compared with rapidfuzz), and the best match wins if
  it is good enough;
* ``prompt <text>`` starts with a trigger ("prompt", "dream of", "show me", "change the prompt to"...), also when
  the trigger itself was misheard; the rest is the user's own words.

And it refuses: an utterance that matches no phrasing well enough, that the recogniser itself doubted (high
no-speech probability, low log-probability), or that is too long to be a command, gives no command at all. Chatter
("what a lovely evening"), music and noise must never move the picture.

Commands that are dear to get wrong (``STRICT_PHRASES``: "sleep" closes the model to free the GPU, "wake up" loads
it again, seconds to minutes of work) are stricter still: the whole utterance must be one of their phrasings, word
for word, not asked as a question, from a recogniser that was sure. Something close to one of them that is not it
("sleepy", "woke up", "don't go to sleep") gives nothing at all, rather than the nearest other command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import jellyfish
from rapidfuzz import fuzz

# canonical command -> ways of saying it (after normalisation). Order matters only for equal scores.
PHRASES: dict[str, tuple[str, ...]] = {
    "zoom in": ("zoom in", "zoom closer", "fly in", "move in", "go in", "push in", "closer", "zoom in more"),
    "zoom out": ("zoom out", "pull out", "pull back", "fly out", "back out", "move out", "zoom back"),
    "pan left": ("pan left", "go left", "move left", "drift left", "slide left", "left"),
    "pan right": ("pan right", "go right", "move right", "drift right", "slide right", "right"),
    "pan up": ("pan up", "go up", "move up", "drift up", "tilt up", "up"),
    "pan down": ("pan down", "go down", "move down", "drift down", "tilt down", "down"),
    "rotate left": ("rotate left", "turn left", "spin left", "rotate counterclockwise", "rotate anticlockwise"),
    "rotate right": ("rotate right", "turn right", "spin right", "rotate clockwise"),
    "faster": ("faster", "speed up", "go faster", "quicker", "more speed"),
    "slower": ("slower", "slow down", "go slower", "less speed"),
    "stop": ("stop", "stop moving", "stand still", "hold still", "stop motion", "halt", "stop the motion"),
    "spark": ("spark", "ignite", "new seed", "spark it", "give it a spark", "fresh spark"),
    "freeze": ("freeze", "hold it", "hold", "pause", "freeze frame", "freeze it", "hold that"),
    "resume": ("resume", "go on", "continue", "unfreeze", "carry on", "keep going", "play", "lights on", "gone"),
    "chaos up": ("more chaos", "chaos up", "more chaotic", "wilder", "crazier"),
    "chaos down": ("less chaos", "chaos down", "less chaotic", "calmer", "calm down", "gentler"),
    "save": (
        "save",
        "save this",
        "save this dream",
        "save that",
        "keep this",
        "keep this one",
        "keep that one",
        "remember this",
        "save it",
        "save the dream",
    ),
    "replay": (
        "replay",
        "replay the best dreams",
        "replay the dreams",
        "show the best dreams",
        "top dreams",
        "replay dreams",
        "best dreams",
    ),
    "blackout": ("blackout", "black out", "go dark", "lights out", "go black"),
    "record": ("start recording", "record this", "record the set", "start the recording", "recording on"),
    "stop recording": ("stop recording", "stop the recording", "recording off", "end the recording"),
    "scene next": ("next scene", "scene next", "next", "skip scene", "the next scene"),
    "scene previous": (
        "previous scene",
        "scene previous",
        "last scene",
        "go back a scene",
        "scene back",
        "the previous scene",
    ),
}

# canonical -> phrasings that must be the whole utterance (fillers aside), word for word. See the module docstring.
STRICT_PHRASES: dict[str, tuple[str, ...]] = {
    "sleep": ("sleep", "go to sleep"),
    "wake up": ("wake up", "wakeup"),
}
STRICT_NEAR = 80.0  # an utterance this close to a strict phrasing, but not it: no command

# Ways to start a prompt. The words after it are the prompt, as said.
PROMPT_TRIGGERS = (
    "change the prompt to",
    "set the prompt to",
    "make the prompt",
    "the prompt is",
    "new prompt",
    "prompt",
    "prompts",
    "dream of",
    "dream about",
    "dream",
    "show me",
    "imagine",
    "paint",
)
# Misheard triggers, seen from the small model: they count only with a real prompt after them.
SOUNDALIKE_TRIGGERS = ("from", "trump", "romped", "prom", "prompted", "remind my", "remover", "dreamer", "dream a")

SCENE_WORDS = ("go to scene", "switch to scene", "change to scene", "scene number", "scene", "seen", "scenes")

NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
# What "scene two" tends to become: only read as a number right after "scene".
SCENE_SOUNDALIKES = {"to": 2, "too": 2, "for": 4, "won": 1, "tree": 3, "free": 3, "ate": 8, "sex": 6, "fife": 5}

FILLERS_BEFORE = (
    "um",
    "uh",
    "er",
    "okay",
    "ok",
    "hey",
    "so",
    "and",
    "now",
    "please",
    "can you",
    "could you",
    "would you",
    "let's",
    "lets",
    "let us",
    "i want to",
    "i'd like to",
    "go ahead and",
    "vj",
    "just",
    "yeah",
    "alright",
    "all right",
    "a bit",
    "a little",
    "a little bit",
    "little bit",
    "bit",
)
FILLERS_AFTER = (
    "please",
    "now",
    "thanks",
    "thank you",
    "a bit",
    "a little",
    "a little bit",
    "little bit",
    "a lot",
    "okay",
    "ok",
    "again",
    "more please",
)

# Words a small recogniser puts in place of command words ("pan left" heard as "10 left", "save" as "same").
# An utterance is also read with these put right, at a small cost, so a clean reading still wins.
MISHEARD = {
    "ten": "pan",
    "10": "pan",
    "then": "pan",
    "pen": "pan",
    "pam": "pan",
    "ban": "pan",
    "pent": "pan",
    "pin": "pan",
    "write": "right",
    "rite": "right",
    "wright": "right",
    "lift": "left",
    "laughed": "left",
    "zoo": "zoom",
    "soon": "zoom",
    "doom": "zoom",
    "zooming": "zoom",
    "same": "save",
    "safe": "save",
    "saved": "save",
    "sparks": "spark",
    "spock": "spark",
    "park": "spark",
    "freezes": "freeze",
    "frees": "freeze",
    "seen": "scene",
    "sin": "scene",
    "scenes": "scene",
    "rotates": "rotate",
    "mower": "more",
    "cows": "chaos",
    "kaos": "chaos",
    "keys": "chaos",
}
MISHEARD_COST = 4.0
MAX_COMMAND_WORDS = 6  # longer than this without a prompt trigger: talk, not a command


@dataclass(frozen=True)
class Heard:
    """What the recogniser made of one utterance, and how sure it was."""

    text: str
    no_speech: float = 0.0  # probability there was no speech at all
    logprob: float = 0.0  # average log-probability of the tokens


@dataclass(frozen=True)
class Command:
    canonical: str  # e.g. "pan left", "scene 3", "prompt a neon city"
    score: float  # how well it matched, 0..100
    text: str  # the normalised text it came from

    @property
    def verb(self) -> str:
        return "prompt" if self.canonical.startswith("prompt ") else self.canonical.split(" ")[0]

    @property
    def argument(self) -> str:
        return self.canonical.split(" ", 1)[1] if " " in self.canonical else ""


@dataclass(frozen=True)
class GrammarOptions:
    threshold: float = 82.0  # the lowest match score accepted (0..100)
    max_no_speech: float = 0.6  # the recogniser's own doubt that it heard speech
    min_logprob: float = -1.2  # and its doubt about the words
    strict_logprob: float = -0.7  # a weaker match needs a surer recogniser
    strict_margin: float = 8.0  # "weaker": within this many points of the threshold


def _clean(text: str) -> str:
    text = text.lower().replace("-", " ").replace("’", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(text.split())


def _strip(words: list[str], fillers: tuple[str, ...], front: bool) -> list[str]:
    changed = True
    while changed and words:
        changed = False
        for f in sorted(fillers, key=len, reverse=True):
            fw = f.split()
            part = words[: len(fw)] if front else words[-len(fw) :]
            if part == fw and len(words) > len(fw):
                words = words[len(fw) :] if front else words[: -len(fw)]
                changed = True
                break
    return words


def normalise(text: str) -> str:
    """Lower case, no punctuation, no fillers at either end, spoken numbers as digits."""
    words = _clean(text).split()
    words = _strip(words, FILLERS_BEFORE, front=True)
    words = _strip(words, FILLERS_AFTER, front=False)
    return " ".join(str(NUMBERS[w]) if w in NUMBERS else w for w in words)


_SPOKEN = {v: k for k, v in NUMBERS.items() if not k.endswith(("st", "nd", "rd", "th"))}


@lru_cache(maxsize=4096)
def sounds(text: str) -> str:
    """The phrase as Metaphone codes, word by word: "pan left" and "ban left" sound alike."""
    words = (_SPOKEN.get(int(w), w) if w.isdigit() else w for w in text.split())
    return " ".join(jellyfish.metaphone(w) for w in words)


def similarity(a: str, b: str) -> float:
    """0..100: the better of spelling and sound."""
    return max(fuzz.ratio(a, b), fuzz.ratio(sounds(a), sounds(b)) - 4)  # sound alone is a little less sure


def _prompt(text: str) -> tuple[str, float] | None:
    """(prompt text, confidence) when ``text`` starts with a prompt trigger."""
    words = text.split()
    for trigger in PROMPT_TRIGGERS:
        tw = trigger.split()
        if words[: len(tw)] == tw and len(words) > len(tw):
            rest = words[len(tw) :]
            if trigger == "dream" and rest[0] not in ("of", "about", "a", "an", "the"):
                continue
            if trigger in ("dream",) and rest[0] in ("of", "about"):
                rest = rest[1:]
            return _prompt_text(rest), 100.0
    for n in (1, 2):
        head, rest = " ".join(words[:n]), words[n:]
        if len(rest) < 3:  # "from the start", "from here on": talk. A prompt describes something.
            continue
        for trigger in (*SOUNDALIKE_TRIGGERS, "prompt", "dream of", "show me"):
            if similarity(head, trigger) >= 85:
                return _prompt_text(rest), 85.0
    return None


# Function words a small recogniser swaps in descriptions: "of" heard as "on" or "off" ("a forest made of glass"
# as "made on glass"). After these words "of" is what a description means.
# fmt: off
OF_WORDS = frozenset((
    "made", "full", "field", "fields", "sea", "ocean", "river", "lake", "sky", "garden", "forest", "city", "world",
    "land", "cloud", "clouds", "swarm", "wall", "tower", "kingdom", "palace", "heart", "sound", "storm", "rain",
    "shower", "carpet", "blanket", "dream", "dreams",
))
# fmt: on


def _prompt_text(words: list[str]) -> str:
    # "prompt to a ..." / "prompt is a ..." / "dream of a ...": the link word is not part of the prompt
    while words and words[0] in ("to", "is", "of", "about", "be"):
        words = words[1:]
    words = [("of" if w in ("on", "off") and i and words[i - 1] in OF_WORDS else w) for i, w in enumerate(words)]
    return " ".join(_SPOKEN.get(int(w), w) if w.isdigit() and int(w) in _SPOKEN else w for w in words)


def _scene(text: str, scenes: tuple[str, ...]) -> tuple[str, float] | None:
    words = text.split()
    # "... scene 3" at the end of a short utterance whose start was misheard ("rotate scene three")
    if 2 < len(words) <= 4 and words[-2] in ("scene", "seen", "scenes") and words[-1].isdigit():
        return f"scene {int(words[-1])}", 90.0
    for lead in SCENE_WORDS:
        lw = lead.split()
        if words[: len(lw)] != lw or len(words) == len(lw):
            continue
        rest = words[len(lw) :]
        if len(rest) == 1 and (rest[0].isdigit() or rest[0] in SCENE_SOUNDALIKES):
            n = int(rest[0]) if rest[0].isdigit() else SCENE_SOUNDALIKES[rest[0]]
            return f"scene {n}", 100.0
        name = " ".join(rest)
        best = max(((similarity(name, s.lower()), s) for s in scenes), default=(0.0, ""))
        if best[0] >= 80:
            return f"scene {best[1].lower()}", best[0]
    return None


def first_thought(text: str) -> str:
    """The first thing said: a recogniser given little audio tends to repeat itself ("Scene two. Scene two"),
    or to echo its prompt. A lone trigger ("Prompt. Golden clouds ...") keeps the sentence that follows it."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]
    if not sentences:
        return ""
    kept = [sentences[0]]
    for s in sentences[1:]:
        so_far = normalise(" ".join(kept))
        if so_far not in PROMPT_TRIGGERS and len(so_far.split()) > 1:
            break
        kept.append(s)
    return " ".join(kept)


def parse(heard: Heard | str, *, scenes: tuple[str, ...] = (), options: GrammarOptions | None = None) -> Command | None:
    """The command in ``heard``, or None when there is none (or not one sure enough)."""
    opts = options or GrammarOptions()
    if isinstance(heard, str):
        heard = Heard(heard)
    if heard.no_speech > opts.max_no_speech or heard.logprob < opts.min_logprob:
        return None
    text = normalise(first_thought(heard.text))
    if not text:
        return None
    found = _prompt(text)
    if found is not None:
        prompt, score = found
        if prompt:
            return _sure(Command(f"prompt {prompt}", score, text), heard, opts)
    found = _scene(text, scenes)
    if found is not None:
        return _sure(Command(found[0], found[1], text), heard, opts)
    strict, near = _strict(text)
    if strict is not None:
        asked = first_thought(heard.text).rstrip().endswith("?")  # "Sleep?" is a question, not an order
        if asked or heard.logprob < opts.strict_logprob:
            return None
        return Command(strict, 100.0, text)
    words = text.split()
    if len(words) > MAX_COMMAND_WORDS:
        return None
    score, canonical = _best_phrase(words)
    repaired = [MISHEARD.get(w, w) for w in words]
    if repaired != words:
        alt, alt_canonical = _best_phrase(repaired)
        if alt - MISHEARD_COST > score:
            score, canonical = alt - MISHEARD_COST, alt_canonical
    if score < opts.threshold or near > score:  # nearer to "wake up" than to anything else: nothing
        return None
    return _sure(Command(canonical, score, text), heard, opts)


def _strict(text: str) -> tuple[str | None, float]:
    """(the strict command ``text`` says word for word, or None; how near it comes to one when it does not, 0 when
    not within ``STRICT_NEAR``). A phrase said twice over ("Wake up. Wake up.": recognisers repeat) is said."""
    words = text.split()
    near = 0.0
    for canonical, phrasings in STRICT_PHRASES.items():
        for phrase in phrasings:
            pw = phrase.split()
            if words and len(words) % len(pw) == 0 and words == pw * (len(words) // len(pw)):
                return canonical, 100.0
            near = max(near, similarity(text, phrase))
    return None, near if near >= STRICT_NEAR else 0.0


def _best_phrase(words: list[str]) -> tuple[float, str]:
    text = " ".join(words)
    best: tuple[float, str] = (0.0, "")
    for canonical, phrasings in PHRASES.items():
        for phrase in phrasings:
            n = len(phrase.split())
            score = similarity(text, phrase)
            # "replay the best dreams tonight": the command, then a few extra words. Not for short single words
            # ("down", "next"): those must be the whole utterance, or "dawn left" would be "pan down".
            extra = len(words) - n
            if extra > 0 and n > 1:
                score = max(score, similarity(" ".join(words[:n]), phrase) - 4 * extra)
            elif 0 < extra <= 2 and len(phrase) >= 5:  # one word with a little more around it: spelled right
                edge = max(fuzz.ratio(words[0], phrase), fuzz.ratio(words[-1], phrase))  # ("amidst faster")
                score = max(score, edge - 4 * extra)  # by sound alone "pass" would be "pause"
            if score > best[0]:
                best = (score, canonical)
    return best


def _sure(command: Command, heard: Heard, opts: GrammarOptions) -> Command | None:
    if command.score < opts.threshold + opts.strict_margin and heard.logprob < opts.strict_logprob:
        return None  # a so-so match from a recogniser that was not sure either
    return command


# For the recogniser: the phrasings it should expect, as sentences (Whisper follows the style of its prompt).
def vocabulary_prompt() -> str:
    return (
        "Zoom in. Zoom out. Pull back. Pan left. Pan right. Pan up. Pan down. Go left. Move up. Rotate left. "
        "Rotate right. Turn right. Faster. Slower. Slow down. Stop. Prompt a garden of stars. Dream of a desert at "
        "dawn. Show me a tower of light. Scene three. Next scene. Previous scene. Spark. Ignite. New seed. Freeze. "
        "Hold it. Resume. Go on. More chaos. Less chaos. Save this dream. Keep this one. Replay. Blackout."
    )
