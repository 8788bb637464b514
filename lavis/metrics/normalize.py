"""Answer normalisation before word matching: the published rule (quirks kept) and our strict one.

The published rule is LLaVA-Med's ``normalize_word`` (itself the VQA-v2 answer processor), which
Quilt-LLaVA copies unchanged. Its quirks, all reproduced by :func:`normalize_reference`:

* whether a punctuation mark is deleted or turned into a space is decided once for the whole
  string: a mark is deleted everywhere if it touches a space anywhere, or if the string contains a
  ``digit,digit`` pattern anywhere (then *every* mark is deleted, so "x-ray" becomes "xray");
* the period pattern was meant to have a look-behind but has a look-ahead that always passes, so
  it deletes every "." not followed by a digit, and ``re.UNICODE`` (= 32) is passed where the
  ``count`` argument goes, so only the first 32 such periods are deleted.

:func:`normalize_strict` decides per occurrence and deletes every period (see docs/metrics.md).
"""

from __future__ import annotations

import re

# fmt: off
# The marks the reference handles, in its order (the order matters for the whole-string checks).
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
# fmt: on
ARTICLES = frozenset({"a", "an", "the"})

# The VQA contraction table as the reference ships it, "key value" per line. Kept verbatim,
# including its dead entries (capitalised keys never match lower-cased words) and the one reversed
# entry ("somebody'd" -> "somebodyd"): they act identically on prediction and reference.
_CONTRACTION_TABLE = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've
couldnt've couldn't've|didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've
hadn'tve hadn't've|hasnt hasn't|havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's
howd how'd|howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd
itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am|mightnt mightn't
mightnt've mightn't've|mightn'tve mightn't've|mightve might've|mustnt mustn't|mustve must've
neednt needn't|notve not've|oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at
'ow'sat 'ow's'at|shant shan't|shed've she'd've|she'dve she'd've|she's she's|shouldve should've
shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd
somebodyd've somebody'd've|somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's
someoned someone'd|someoned've someone'd've|someone'dve someone'd've|someonell someone'll
someones someone's|somethingd something'd|somethingd've something'd've
something'dve something'd've|somethingll something'll|thats that's|thered there'd
thered've there'd've|there'dve there'd've|therere there're|theres there's|theyd they'd
theyd've they'd've|they'dve they'd've|theyll they'll|theyre they're|theyve they've|twas 'twas
wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've|werent weren't|whatll what'll
whatre what're|whats what's|whatve what've|whens when's|whered where'd|wheres where's
whereve where've|whod who'd|whod've who'd've|who'dve who'd've|wholl who'll|whos who's
whove who've|whyll why'll|whyre why're|whys why's|wont won't|wouldve would've|wouldnt wouldn't
wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|y'allll y'all'll
yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd|youd've you'd've
you'dve you'd've|youll you'll|youre you're|youve you've
"""
CONTRACTIONS: dict[str, str] = dict(
    pair.split(" ") for pair in _CONTRACTION_TABLE.replace("\n", "|").split("|") if pair
)

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The reference calls ``pattern.sub("", text, re.UNICODE)``: the flag lands in ``count``.
REFERENCE_PERIOD_LIMIT = int(re.UNICODE)

# Strict: the same marks plus ":" (a colon after a word otherwise glues to it: "ratio:" != "ratio").
_STRICT_MARK = re.compile("[" + re.escape("".join(PUNCTUATION) + ":") + "]")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d)")


def _canonical_words(text: str) -> str:
    """Split, map number words to digits, drop articles, expand contractions, join with one space."""
    words = (NUMBER_WORDS.get(word, word) for word in text.split())
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


def normalize_reference(text: str) -> str:
    """One pass of LLaVA-Med's ``normalize_word`` (applied to lower-cased text), quirks included.

    The reference ends by deleting commas; every comma is already gone by then (``,`` is in the
    punctuation list and no table value contains one), so that step is omitted.
    """
    text = text.lower()
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        # Decided on the original string, not on what earlier marks left behind.
        touches_space = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if delete_all or touches_space else " ")
    out = _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=REFERENCE_PERIOD_LIMIT)
    return _canonical_words(out)


def normalize_strict(text: str) -> str:
    """Our normalisation: every decision is local to the mark, and every period is handled.

    A comma between two digits is a thousands separator and is deleted ("1,000" -> "1000"); any
    other listed mark becomes a space (so "x-ray" -> "x ray" whatever else the answer contains);
    every "." not followed by a digit is deleted ("2.5" stays).
    """
    text = _THOUSANDS_COMMA.sub("", text.lower())
    text = _STRICT_MARK.sub(" ", text)
    text = _PERIOD_NOT_BEFORE_DIGIT.sub("", text)
    return _canonical_words(text)
