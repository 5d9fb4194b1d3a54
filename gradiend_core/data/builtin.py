"""Built-in offline data sets: deterministic grammar-based sentence generators (no download).

- `pronoun_number_texts`: 3SG (he/she/it) vs 3PL (they); >= 3,000 distinct sentences per class. The number
  is usually inferable: verb agreement (was/were, has/have, -s), antecedents ("the nurses ... they",
  "the printer ... it"), or both. "it" always refers to a thing.
- `gender_texts`: masculine (he/him/his) vs feminine (she/her/hers) with gendered antecedents (nouns, names);
  >= 3,000 distinct sentences per class, subject, object and possessive slots.
- `person_number_texts`: English subject pronouns by person and number, 1SG (I), 1PL (we), 2 (you), 3SG
  (he/she/it), 3PL (they); 2,000 distinct sentences per class, the verb agreeing with the person (I am/was,
  I walk, he walks, you were). No object, possessive or reflexive pronoun anywhere in a sentence.
- `neutral_texts`: >= 1,000 distinct sentences with no pronoun at all.

Every generated sentence of the first three holds exactly ONE target word of its data set (one [MASK] slot).
Sentences are sampled from a combinatorial grammar (frames x tenses x antecedents x verb phrases x adverbials)
with `random.Random(seed)`, deduplicated, and returned in generation order.

Deviation from the reference: the reference ships no offline corpus (it reads Wikipedia-like data from the
Hugging Face hub); these generators are this project's own, written for offline runs and tests.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable
from functools import lru_cache

# ----------------------------------------------------------------------------------------- lexicon
# base, 3sg present, past, past participle, -ing
_VERB_TABLE = """
walk walks walked walked walking
finish finishes finished finished finishing
call calls called called calling
take takes took taken taking
visit visits visited visited visiting
read reads read read reading
forget forgets forgot forgotten forgetting
cook cooks cooked cooked cooking
paint paints painted painted painting
answer answers answered answered answering
play plays played played playing
drive drives drove driven driving
carry carries carried carried carrying
water waters watered watered watering
fix fixes fixed fixed fixing
write writes wrote written writing
order orders ordered ordered ordering
clean cleans cleaned cleaned cleaning
study studies studied studied studying
wait waits waited waited waiting
sing sings sang sung singing
plan plans planned planned planning
leave leaves left left leaving
buy buys bought bought buying
check checks checked checked checking
help helps helped helped helping
repair repairs repaired repaired repairing
bake bakes baked baked baking
sell sells sold sold selling
feed feeds fed fed feeding
book books booked booked booking
bring brings brought brought bringing
move moves moved moved moving
stop stops stopped stopped stopping
arrive arrives arrived arrived arriving
make makes made made making
need needs needed needed needing
look looks looked looked looking
cost costs cost cost costing
break breaks broke broken breaking
survive survives survived survived surviving
block blocks blocked blocked blocking
fit fits fit fit fitting
use uses used used using
turn turns turned turned turning
come comes came come coming
work works worked worked working
sit sits sat sat sitting
weigh weighs weighed weighed weighing
require requires required required requiring
belong belongs belonged belonged belonging
attract attracts attracted attracted attracting
shine shines shone shone shining
leak leaks leaked leaked leaking
fall falls fell fallen falling
hold holds held held holding
"""
VERBS: dict[str, tuple[str, str, str, str, str]] = {
    p[0]: tuple(p) for p in (line.split() for line in _VERB_TABLE.strip().splitlines())}

# Verb phrases: the first word is a verb of VERBS, the rest its complement (pronoun-free).
PERSON_VPS = [
    "walk home through the old quarter", "finish the report before lunch", "call the bank about the missing payment",
    "take the early train to the city", "visit the market on the way home", "read the letter twice",
    "forget the keys on the kitchen table", "cook dinner for the whole family", "paint the fence pale green",
    "answer every question without hesitation", "play chess in the park", "drive to the coast",
    "carry the boxes up the stairs", "water the plants on the balcony", "fix the broken chair",
    "write a long email to the landlord", "order soup and fresh bread", "clean the kitchen after the party",
    "study for the final exam", "wait outside the station for an hour", "sing in the church choir",
    "plan a short trip to the mountains", "leave the house before sunrise", "buy a warm coat for the winter",
    "check the schedule again", "help the new neighbors with the move", "repair the roof of the shed",
    "bake bread for the school fair", "sell old books at the market", "feed the ducks by the pond",
    "book a table at the harbor restaurant", "bring fresh flowers to the hospital", "move the piano upstairs",
    "visit the museum downtown", "walk the dog along the river", "read the instructions carefully",
]
THING_VPS = [  # fit both devices and objects well enough
    "cost far more than expected", "need a new coat of paint", "look much older than expected",
    "take up too much space in the hall", "arrive two days later than planned", "break during the first week",
    "survive the long winter", "block the path to the garden", "weigh almost twenty kilos",
    "require careful handling", "belong to the museum", "fit perfectly in the corner",
    "attract a lot of attention", "shine in the afternoon sun", "sit in the attic for years",
    "fall off the shelf", "hold more than expected", "look almost new after the cleaning",
]
DEVICE_VPS = [
    "stop working after a few days", "make a strange rattling noise", "need a new part",
    "use too much power", "work perfectly again", "turn off without warning", "come with a long warranty",
    "leak water onto the floor",
]

# Singular persons: (noun phrase, gender) with gender m / f / n (n: either pronoun fits).
PERSONS_N = [
    "the nurse", "the new manager", "the pilot", "our teacher", "the taxi driver", "the student",
    "the engineer", "the doctor", "the librarian", "the captain", "the baker", "the lawyer", "the painter",
    "the coach", "the reporter", "the cashier", "the tourist", "the mechanic", "the chef", "the neighbor",
    "the old farmer", "the young architect", "the night guard", "the dentist", "the scientist",
    "the museum guide", "the bus driver", "the translator", "the gardener", "the new tenant",
]
PERSONS_M = [
    "my uncle", "the king", "the old man", "my father", "the young prince", "the boy", "my grandfather",
    "the groom", "the monk", "the fisherman", "my nephew", "the duke", "Mr Patel", "my brother",
    "the gentleman in the grey suit", "the schoolboy",
]
PERSONS_F = [
    "my aunt", "the queen", "the old woman", "my mother", "the young princess", "the girl", "my grandmother",
    "the bride", "the nun", "the actress", "my niece", "the duchess", "Mrs Patel", "my sister",
    "the lady in the red coat", "the schoolgirl",
]
NAMES_M = ["Marcus", "Tom", "David", "Ahmed", "Lukas", "Hiro", "Carlos", "Peter", "Samuel", "Ivan", "Omar",
           "Felix", "George", "Daniel", "Rafael"]
NAMES_F = ["Anna", "Maria", "Priya", "Sofia", "Emma", "Leila", "Yuki", "Grace", "Helen", "Olga", "Fatima",
           "Clara", "Nina", "Laura", "Amira"]
PERSONS_PL = [
    "the nurses", "the new managers", "the pilots", "our teachers", "the taxi drivers", "the students",
    "the engineers", "the doctors", "the neighbors", "the old farmers", "the children", "the tourists",
    "the workers", "the players", "the volunteers", "the twins", "my parents", "the guests", "the musicians",
    "the firefighters", "the two sisters", "the three brothers", "both lawyers", "the visitors",
    "the climbers", "the scientists", "the gardeners", "my cousins", "the bakers", "the new tenants",
]
# (singular, plural, is_device)
THINGS = [
    ("the printer", "the printers", True), ("the engine", "the engines", True), ("the laptop", "the laptops", True),
    ("the kettle", "the kettles", True), ("the fridge", "the fridges", True), ("the clock", "the clocks", True),
    ("the old radio", "the old radios", True), ("the washing machine", "the washing machines", True),
    ("the lamp", "the lamps", True), ("the heater", "the heaters", True),
    ("the parcel", "the parcels", False), ("the old bridge", "the old bridges", False),
    ("the garden gate", "the garden gates", False), ("the letter", "the letters", False),
    ("the window", "the windows", False), ("the new sofa", "the new sofas", False),
    ("the bicycle", "the bicycles", False), ("the painting", "the paintings", False),
    ("the statue", "the statues", False), ("the tent", "the tents", False), ("the boat", "the boats", False),
    ("the suitcase", "the suitcases", False), ("the wooden fence", "the wooden fences", False),
    ("the bookshelf", "the bookshelves", False), ("the carpet", "the carpets", False),
]

# Person antecedent predicates (past). {was}/{has} agree with the antecedent's number.
PERSON_PREDS = [
    "arrived at the station", "came home late", "left the party early", "sat down by the window",
    "looked at the map for a long time", "opened the front door", "stood up slowly", "checked the time",
    "{was} tired after the long shift", "{was} already at the door", "{was} running late", "missed the last bus",
    "heard a noise outside", "finished the long shift", "got an unexpected phone call",
    "{was} waiting at the corner", "read the news", "moved to a new city", "got lost in the fog",
    "{was} in a hurry", "{was} the first to arrive", "stepped off the train", "{was} new in town",
]
THING_PREDS = [
    "{was} delivered on Monday", "arrived in a large box", "{was} standing in the corner of the room",
    "{was} bought at a flea market", "{was} a gift from the neighbors", "came from a shop downtown",
    "{was} cheap at the time", "{was} moved to the basement last year", "{was} the pride of the house",
]
REPORT_VERBS = ["said", "explained", "promised", "mentioned", "admitted", "insisted", "claimed", "wrote",
                "told the manager", "told the whole team", "assured the guests", "announced"]
PAST_INTROS = ["Once the meeting was over", "Last week", "Yesterday afternoon", "Two hours later",
               "When the storm finally passed", "Earlier that day", "During the long holiday", "On the way home",
               "Late last night", "As soon as the rain stopped", "Before the sun came up", "Without a word",
               "After a short break", "On Saturday morning", "In the end", "Despite the cold weather"]
HABIT_INTROS = ["Every morning", "On most weekends", "Twice a month", "Usually", "During the week",
                "In the summer", "Every Friday", "Whenever the weather is good", "On rainy days", "Most evenings"]
NOW_INTROS = ["Right now", "At the moment", "This afternoon", "Today", "As we speak"]
PERFECT_INTROS = ["So far", "Since January", "By now", "This year", "Over the past few weeks",
                  "Since the move", "Up to now"]
FUTURE_INTROS = ["Tomorrow", "Next week", "Later tonight", "After lunch", "Early next month",
                 "If the weather holds", "Once the holidays start", "On Monday"]
OUTCOMES = ["the rest of the evening was quiet", "nobody else had to wait", "the office stayed open late",
            "the plan changed at the last minute", "the meeting started an hour later",
            "the neighbors were surprised", "the kitchen looked spotless", "the whole schedule fell apart",
            "the trip was postponed", "the shop closed early"]
STATES = ["tired", "exhausted", "nervous", "busy", "late", "hungry", "sick", "cold", "worried", "sleepy"]
PAST_ADVERBS = ["finally", "quickly", "almost", "suddenly", "eventually", "once again", "secretly", "gladly"]
ADVERBS = ["usually", "often", "always", "rarely", "sometimes", "never"]

TENSES = {  # group -> (intros, forms)
    "past": (PAST_INTROS, ["past", "past_adv", "past_prog", "pluperfect", "past_neg"]),
    "present": (HABIT_INTROS, ["pres", "pres_adv", "pres_neg", "want"]),
    "now": (NOW_INTROS, ["pres_prog"]),
    "perfect": (PERFECT_INTROS, ["perfect"]),
    "future": (FUTURE_INTROS, ["future", "going_to", "modal"]),
}


# ------------------------------------------------------------------------------------------- grammar
STATIVE = {"need", "belong", "cost", "weigh", "require", "fit", "hold"}


def _be(num: str, past: bool = True) -> str:
    """'be' agreeing with `num`: 'sg' (he/she/it, nouns), 'pl' (we/you/they, plural nouns) or '1sg' (I)."""
    if num == "1sg":
        return "was" if past else "am"
    return ("was" if num == "sg" else "were") if past else ("is" if num == "sg" else "are")


def _agree(template: str, num: str) -> str:
    return template.format(was=_be(num), has="has" if num == "sg" else "have", **{"is": _be(num, False)})


def conjugate(vp: str, form: str, num: str, rng: random.Random) -> str:
    """The verb phrase `vp` (base form first) in `form`, agreeing with a `num` ('sg'|'pl'|'1sg') subject."""
    verb, _, comp = vp.partition(" ")
    base, s3, past, pp, ing = VERBS[verb]
    sg = num == "sg"
    if verb in STATIVE and form in ("past_prog", "pres_prog"):  # "was needing" is not idiomatic
        form = "past" if form == "past_prog" else "pres"
    head = {
        "past": past,
        "past_prog": f"{_be(num)} {ing}",
        "pluperfect": f"had {pp}",
        "past_neg": f"{rng.choice(['did not', 'could not', 'would not'])} {base}",
        "past_adv": f"{rng.choice(PAST_ADVERBS)} {past}",
        "pres": s3 if sg else base,
        "pres_adv": f"{rng.choice(ADVERBS)} {s3 if sg else base}",
        "pres_neg": f"{'does' if sg else 'do'} not {base}",
        "want": f"{rng.choice(['wants', 'needs', 'has']) if sg else rng.choice(['want', 'need', 'have'])} to {base}",
        "pres_prog": f"{_be(num, False)} {ing}",
        "perfect": f"{'has' if sg else 'have'} {rng.choice(['', 'already ', 'just '])}{pp}",
        "future": f"will {base}",
        "going_to": f"{_be(num, False)} going to {base}",
        "modal": f"{rng.choice(['could', 'might', 'should'])} {base}",
        "would": f"would {base}",
    }[form]
    return f"{head} {comp}".strip()


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _lower_first(s: str) -> str:
    return s if s.split()[0] in NAMES_M + NAMES_F or s.startswith(("Mr ", "Mrs ")) else s[:1].lower() + s[1:]


def _tense(rng: random.Random, groups: tuple[str, ...] = tuple(TENSES)) -> tuple[str, str]:
    """(intro, form) of a random tense group."""
    intros, forms = TENSES[rng.choice(groups)]
    return rng.choice(intros), rng.choice(forms)


# ------------------------------------------------------------------------------- subject-slot frames
# A frame gets (rng, pronoun, num, antecedent, vps, ante_preds) and returns one sentence.
def _f_intro(rng, pron, num, ante, vps, preds):
    intro, form = _tense(rng)
    return f"{intro}, {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _f_trailing(rng, pron, num, ante, vps, preds):
    intro, form = _tense(rng, ("past", "present", "future"))
    return f"{_cap(pron)} {conjugate(rng.choice(vps), form, num, rng)} {_lower_first(intro)}."


def _f_and(rng, pron, num, ante, vps, preds):
    conj = rng.choice(["and", "but", "so", "and then"])
    form = rng.choice(["past", "past_adv", "past_prog", "pluperfect", "past_neg"])
    return f"{_cap(ante)} {_agree(rng.choice(preds), num)}, {conj} {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _f_when(rng, pron, num, ante, vps, preds):
    lead = rng.choice(["When", "After", "As soon as", "Because", "Since"])
    form = rng.choice(["past", "past_adv", "past_prog", "past_neg"])
    return f"{lead} {ante} {_agree(rng.choice(preds), num)}, {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _f_report(rng, pron, num, ante, vps, preds):
    form = rng.choice(["would", "pluperfect", "past_prog", "past", "modal"])
    return f"{_cap(ante)} {rng.choice(REPORT_VERBS)} that {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _f_because(rng, pron, num, ante, vps, preds):
    form = rng.choice(["past", "past_adv", "past_prog", "pluperfect", "past_neg"])
    return f"{_cap(ante)} {_agree(rng.choice(preds), num)} because {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _f_outcome(rng, pron, num, ante, vps, preds):
    form = rng.choice(["past", "past_prog", "pluperfect"])
    return f"Because {pron} {conjugate(rng.choice(vps), form, num, rng)}, {rng.choice(OUTCOMES)}."


def _f_although(rng, pron, num, ante, vps, preds):
    state = rng.choice(STATES)
    vp = conjugate(rng.choice(vps), "past", num, rng)
    return f"Although {pron} {_be(num)} {state}, {ante} {vp}."


def _f_now(rng, pron, num, ante, vps, preds):
    vp = conjugate(rng.choice(vps), rng.choice(["perfect", "past"]), num, rng)
    nxt = conjugate(rng.choice(vps), rng.choice(["going_to", "want", "pres_prog"]), num, rng)
    return f"{_cap(ante)} {vp}, and now {pron} {nxt}."


def _f_question(rng, pron, num, ante, vps, preds):
    vp = rng.choice(vps)
    verb, _, comp = vp.partition(" ")
    base, _, _, pp, ing = VERBS[verb]
    sg = num == "sg"
    q = rng.choice([
        f"{'Does' if sg else 'Do'} {pron} {rng.choice(ADVERBS[:5])} {base} {comp}?",
        f"{'Has' if sg else 'Have'} {pron} {pp} {comp} yet?",
        f"Why {_be(num)} {pron} {ing} {comp}?",
        f"Did {pron} really {base} {comp}?",
        f"{_cap(_be(num, False))} {pron} {ing} {comp} right now?",
    ])
    return f"{_cap(ante)} {_agree(rng.choice(preds), num)}. {q}"


def _f_checked(rng, pron, num, ante, vps, preds):
    """Only for things: a person inspects the thing and reports on it."""
    person = rng.choice(PERSONS_N + PERSONS_PL + NAMES_M + NAMES_F)
    verb = rng.choice(["checked", "inspected", "looked at", "tested", "examined"])
    form = rng.choice(["past", "past_prog", "pluperfect", "would"])
    return f"{_cap(person)} {verb} {ante} and said that {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _f_bought(rng, pron, num, ante, vps, preds):
    """Only for things: bought earlier, present-tense state now (agreement cue)."""
    person = rng.choice(NAMES_M + NAMES_F + PERSONS_PL)
    when = rng.choice(["last year", "in the spring", "a few months ago", "at an auction", "second hand"])
    form = rng.choice(["pres", "pres_neg", "perfect", "pres_prog"])
    return f"{_cap(person)} bought {ante} {when}, and now {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _f_where(rng, pron, num, ante, vps, preds):
    """Only for things: stored somewhere, where the pronoun's clause happens."""
    person = rng.choice(NAMES_M + NAMES_F + PERSONS_N + PERSONS_PL)
    place = rng.choice(["the garage", "the basement", "the attic", "a rented storage room", "the spare room",
                        "the back office", "a shed behind the house"])
    form = rng.choice(["past", "past_prog", "pluperfect", "past_adv"])
    return f"{_cap(person)} kept {ante} in {place}, where {pron} {conjugate(rng.choice(vps), form, num, rng)}."


PERSON_FRAMES: list[tuple[Callable, int]] = [
    (_f_intro, 3), (_f_trailing, 2), (_f_and, 3), (_f_when, 3), (_f_report, 3), (_f_because, 2),
    (_f_outcome, 1), (_f_although, 2), (_f_now, 2), (_f_question, 2),
]
THING_FRAMES: list[tuple[Callable, int]] = [
    (_f_where, 2), (_f_and, 3), (_f_when, 2), (_f_because, 1), (_f_question, 1), (_f_checked, 3), (_f_bought, 3),
]


def _pick(rng: random.Random, weighted: list[tuple[Callable, int]]) -> Callable:
    return rng.choices([f for f, _ in weighted], weights=[w for _, w in weighted])[0]


def _person(rng: random.Random, gender: str | None = None) -> tuple[str, str]:
    """(noun phrase, gender) of a singular person; gender None = any."""
    pools = {"m": PERSONS_M + NAMES_M, "f": PERSONS_F + NAMES_F}
    if gender is None:
        g = rng.choice(["m", "f", "n", "n"])
        if g == "n":
            return rng.choice(PERSONS_N), rng.choice(["m", "f"])
        return rng.choice(pools[g]), g
    return rng.choice(pools[gender]), gender


def _plural_person(rng: random.Random) -> str:
    if rng.random() < 0.2:
        a, b = rng.sample(NAMES_M + NAMES_F, 2)
        return f"{a} and {b}"
    return rng.choice(PERSONS_PL)


def _subject_sentence(rng: random.Random, word: str) -> str:
    """One sentence whose single target is the subject pronoun `word` (he, she, it or they)."""
    if word == "it" or (word == "they" and rng.random() < 0.3):
        sg, pl, device = rng.choice(THINGS)
        num = "sg" if word == "it" else "pl"
        vps = THING_VPS + (DEVICE_VPS if device else [])
        return _pick(rng, THING_FRAMES)(rng, word, num, sg if num == "sg" else pl, vps, THING_PREDS)
    if word == "they":
        return _pick(rng, PERSON_FRAMES)(rng, word, "pl", _plural_person(rng), PERSON_VPS, PERSON_PREDS)
    ante, _ = _person(rng, "m" if word == "he" else "f")
    if rng.random() < 0.4:  # gender-neutral noun: any pronoun fits
        ante = rng.choice(PERSONS_N)
    return _pick(rng, PERSON_FRAMES)(rng, word, "sg", ante, PERSON_VPS, PERSON_PREDS)


# ----------------------------------------------------------------------------------- generation loop
def _generate(per_class: dict[str, int], make: Callable[[random.Random, str], str], seed: int) -> list[str]:
    """Sample sentences until every class has its count of distinct sentences (classes interleaved)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    have = {c: 0 for c in per_class}
    budget = 50 * sum(per_class.values())  # draws allowed before the grammar counts as exhausted
    while any(have[c] < n for c, n in per_class.items()):
        for c, n in per_class.items():
            if have[c] >= n:
                continue
            s = " ".join(make(rng, c).split())
            budget -= 1
            if not MIN_WORDS <= len(s.split()) <= MAX_WORDS:
                continue
            if budget < 0:
                raise RuntimeError(f"grammar exhausted for class {c!r}; add lexicon entries")
            if s not in seen:
                seen.add(s)
                out.append(s)
                have[c] += 1
    return out


MIN_WORDS, MAX_WORDS = 6, 30
PRONOUN_NUMBER_PER_CLASS = 3300
GENDER_PER_CLASS = 3300
NEUTRAL_COUNT = 1200


def pronoun_number_texts(seed: int = 0) -> list[str]:
    """3SG (he/she/it) and 3PL (they) sentences, 3,300 distinct per class, one pronoun each."""
    def make(rng: random.Random, cls: str) -> str:
        word = rng.choices(["he", "she", "it"], weights=[35, 35, 30])[0] if cls == "3SG" else "they"
        return _subject_sentence(rng, word)

    return _generate({"3SG": PRONOUN_NUMBER_PER_CLASS, "3PL": PRONOUN_NUMBER_PER_CLASS}, make, seed)


# --------------------------------------------------------------------------------------------- gender
POSSESSIONS = [  # (noun, is_plural, is_portable)
    ("car", False, False), ("old bicycle", False, False), ("keys", True, True), ("phone", False, True),
    ("umbrella", False, True), ("notebook", False, True), ("winter jacket", False, True), ("wallet", False, True),
    ("piano", False, False), ("camera", False, True), ("passport", False, True), ("train ticket", False, True),
    ("reading glasses", True, True), ("favorite mug", False, True), ("new shoes", True, True),
    ("violin", False, True), ("laptop", False, True), ("gloves", True, True), ("scarf", False, True),
    ("briefcase", False, True), ("sketchbook", False, True), ("watch", False, True), ("garden shed", False, False),
    ("motorbike", False, False), ("sailing boat", False, False), ("apartment", False, False),
]
POSS_VERBS_ANY = ["sold", "cleaned", "repaired", "checked", "polished", "showed the children", "lent the neighbor",
                  "insured", "photographed", "described"]
POSS_VERBS_PORTABLE = ["lost", "found", "forgot", "packed", "left", "grabbed", "dropped", "searched for"]
POSS_TAILS = ["in the snow", "at the station", "on the bus", "before the trip", "in the garden", "after dinner",
              "at the market", "on the way to work", "under the bed", "last weekend", "at the office",
              "in a hurry", "", "", ""]
OBJ_VERBS = [("thank", "thanked"), ("greet", "greeted"), ("call", "called"), ("help", "helped"),
             ("warn", "warned"), ("invite", "invited"), ("recognize", "recognized"), ("follow", "followed"),
             ("remind", "reminded"), ("congratulate", "congratulated"), ("visit", "visited"), ("meet", "met"),
             ("pay", "paid"), ("wake", "woke"), ("drive", "drove")]
OBJ_TAILS = ["at the door", "after the show", "twice that week", "the next morning", "before noon",
             "at the station", "without a word", "in the evening", "right away", "at the end of the day",
             "on the phone", "outside the bakery"]
HELPERS = ["the waiter", "the driver", "the nurse", "the guard", "the receptionist", "the teacher",
           "the neighbor", "the doctor", "the coach", "the landlord", "the cashier", "the mail carrier"]
LOCATIONS = ["by the door", "on the kitchen table", "in the hallway", "near the window", "under the bench",
             "on the back seat", "in the top drawer", "at the reception desk"]
CLAIM_VERBS = ["insisted", "claimed", "explained", "knew", "said", "told the guard", "remembered",
               "was sure", "pointed out"]

GENDER_WORDS = {"masculine": {"subj": "he", "obj": "him", "det": "his", "pron": "his"},
                "feminine": {"subj": "she", "obj": "her", "det": "her", "pron": "hers"}}


def _gender_sentence(rng: random.Random, cls: str) -> str:
    g = "m" if cls == "masculine" else "f"
    words = GENDER_WORDS[cls]
    ante, _ = _person(rng, g)
    slot = rng.choices(["subj", "obj", "det", "pron"], weights=[40, 25, 27, 8])[0]
    if slot == "subj":
        frames = [(f, w) for f, w in PERSON_FRAMES if f not in (_f_intro, _f_trailing, _f_outcome)]
        return _pick(rng, frames)(rng, words["subj"], "sg", ante, PERSON_VPS, PERSON_PREDS)
    if slot == "obj":
        base, past = rng.choice(OBJ_VERBS)
        pron, tail, helper = words["obj"], rng.choice(OBJ_TAILS), rng.choice(HELPERS)
        return _cap(rng.choice([
            f"{ante} {_agree(rng.choice(PERSON_PREDS), 'sg')}, and {helper} {past} {pron} {tail}.",
            f"when {ante} {_agree(rng.choice(PERSON_PREDS), 'sg')}, nobody {past} {pron} {tail}.",
            f"{ante} asked {helper} to {base} {pron} {tail}.",
            f"{ante} was glad that {helper} {past} {pron} {tail}.",
            f"{ante} hoped that {helper} would {base} {pron} {tail}.",
            f"{ante} {_agree(rng.choice(PERSON_PREDS), 'sg')}, so {helper} {past} {pron} {tail}.",
        ]))
    if slot == "det":
        noun, _, portable = rng.choice(POSSESSIONS)
        verb = rng.choice(POSS_VERBS_ANY + (POSS_VERBS_PORTABLE if portable else []))
        tail, pron = rng.choice(POSS_TAILS), words["det"]
        return _cap(" ".join(rng.choice([
            f"{ante} {verb} {pron} {noun} {tail}.",
            f"{rng.choice(PAST_INTROS)}, {_lower_first(ante)} {verb} {pron} {noun} {tail}.",
            f"{ante} was proud of {pron} {noun}.",
            f"{ante} {_agree(rng.choice(PERSON_PREDS), 'sg')} and {verb} {pron} {noun} {tail}.",
        ]).split()).replace(" .", "."))
    noun, plural, _ = rng.choice(POSSESSIONS)
    be = "were" if plural else "was"
    return _cap(rng.choice([
        f"{ante} {rng.choice(CLAIM_VERBS)} that the {noun} {rng.choice(LOCATIONS)} {be} {words['pron']}.",
        f"{ante} looked at the {noun} {rng.choice(LOCATIONS)} and knew at once that the {noun} {be} "
        f"{words['pron']}.",
        f"Nobody doubted {_lower_first(ante)} when the {noun} {rng.choice(LOCATIONS)} turned out to be "
        f"{words['pron']}.",
    ]))


def gender_texts(seed: int = 0) -> list[str]:
    """Masculine (he/him/his) and feminine (she/her/hers) sentences, 3,300 distinct per class, one slot each."""
    return _generate({"masculine": GENDER_PER_CLASS, "feminine": GENDER_PER_CLASS}, _gender_sentence, seed)


# -------------------------------------------------------------------------------------------- neutral
PLACES = ["the small bakery", "the old library", "the train station", "the city park", "the village school",
          "the harbor", "the museum", "the corner shop", "the public pool", "the town hall", "the hospital",
          "the market square", "the concert hall", "the bus depot", "the flower shop", "the football stadium"]
PLACE_PREDS = ["opened early", "closed for repairs", "stayed busy", "looked empty", "was crowded", "was quiet",
               "received a fresh coat of paint", "reopened after the renovation", "hosted a small festival",
               "ran out of bread", "lost power for an hour", "welcomed a record number of visitors"]
TIMES = ["on Sunday", "before dawn", "during the night", "last week", "every morning", "in the spring",
         "on Monday", "after the storm", "before noon", "in late autumn", "at the weekend",
         "for most of the day", "during the holidays", "in the early evening"]
WEATHER = ["Heavy rain fell", "A cold wind blew", "Thick fog drifted", "Bright sunshine spread", "Light snow fell",
           "A sudden storm passed", "Warm air moved"]
REGIONS = ["over the hills", "across the valley", "along the coast", "over the old town", "across the fields",
           "over the lake", "through the narrow streets", "over the northern villages"]
SOURCES = ["the radio", "the local paper", "the weather service", "the city council", "the station notice",
           "the new timetable", "the museum website"]
EVENTS = ["the road to the coast will reopen", "fruit prices will rise", "the festival will move to a larger venue",
          "the bridge will close for repairs", "the ferry will run twice a day", "the library will extend opening hours",
          "a new bus line will start", "the market will stay open later", "the river level will drop"]
COUNTS = ["Two", "Three", "Several", "Dozens of", "A few", "Many", "Four", "Hundreds of"]
PLURAL_THINGS = ["boats", "trucks", "bicycles", "trains", "buses", "tourists", "ducks", "students", "workers",
                 "horses", "lanterns", "kites"]
PLURAL_PREDS = ["waited in the harbor", "lined up outside the station", "crossed the old bridge",
                "gathered in the square", "appeared on the horizon", "passed through the village",
                "moved slowly along the road", "filled the empty parking lot"]


def _neutral_sentence(rng: random.Random, _cls: str) -> str:
    kind = rng.randrange(6)
    time = rng.choice(TIMES)
    if kind == 0:
        return f"{_cap(rng.choice(PLACES))} {rng.choice(PLACE_PREDS)} {time}."
    if kind == 1:
        subj = rng.choice(PERSONS_N + PERSONS_PL + NAMES_M + NAMES_F + PERSONS_M + PERSONS_F)
        subj = subj.replace("my ", "the ").replace("our ", "the ")
        return f"{_cap(subj)} {conjugate(rng.choice(PERSON_VPS), 'past', 'sg', rng)} {time}."
    if kind == 2:
        return f"{rng.choice(WEATHER)} {rng.choice(REGIONS)} {time}."
    if kind == 3:
        sg, pl, device = rng.choice(THINGS)
        vps = THING_VPS + (DEVICE_VPS if device else [])
        num = rng.choice(["sg", "pl"])
        form = rng.choice(["past", "past_prog", "pluperfect"])
        return f"{_cap(sg if num == 'sg' else pl)} {conjugate(rng.choice(vps), form, num, rng)}."
    if kind == 4:
        return f"According to {rng.choice(SOURCES)}, {rng.choice(EVENTS)} {time}."
    return f"{rng.choice(COUNTS)} {rng.choice(PLURAL_THINGS)} {rng.choice(PLURAL_PREDS)} {time}."


def neutral_texts(seed: int = 0) -> list[str]:
    """1,200 distinct English sentences without any pronoun."""
    return _generate({"neutral": NEUTRAL_COUNT}, _neutral_sentence, seed)


# -------------------------------------------------------------------------------------- person_number
# Subject pronouns by person and number. Each class's pronouns, and the agreement each takes ('1sg': I am /
# I was / I walk; 'pl': we/you/they are, were, walk; 'sg': he/she/it is, was, walks).
PERSON_NUMBER_SUBJECTS = {"1SG": ["I"], "1PL": ["we"], "2": ["you"], "3SG": ["he", "she", "it"], "3PL": ["they"]}
PERSON_AGREEMENT = {"I": "1sg", "we": "pl", "you": "pl", "he": "sg", "she": "sg", "it": "sg", "they": "pl"}
PERSON_NUMBER_PER_CLASS = 2000
# A sentence is kept only with exactly one subject pronoun and none of these (object, possessive, reflexive).
NON_SUBJECT_FORMS = frozenset("me my mine myself us our ours ourselves your yours yourself yourselves him his "
                               "himself her hers herself its itself them their theirs themselves".split())
_SUBJECT_FORMS = frozenset(w.lower() for ws in PERSON_NUMBER_SUBJECTS.values() for w in ws)
REACTIONS = ["{was} surprised", "{was} glad", "{was} relieved", "{was} not sure", "{was} told", "hoped",
             "knew", "heard", "never believed", "suspected", "noticed"]
WHETHER_VERBS = ["asked", "wondered", "wanted to know", "could not remember", "checked", "forgot"]
QUESTION_AUX = ["Will", "Should", "Could", "Can", "Must"]
CONNECTIVES = ["while", "just as", "after", "before", "because", "although", "long before"]


def _third_party(rng: random.Random) -> tuple[str, str]:
    """(noun phrase, number) of someone other than the speaker or the addressee (no my/our)."""
    if rng.random() < 0.35:
        who, num = _plural_person(rng), "pl"
    else:
        who, num = _person(rng)[0], "sg"
    return re.sub(r"\b(?:my|our)\b", "the", who), num


def _p_too(rng, pron, num, ante, vps, preds):
    group = rng.choice(["past", "present"])
    be = _be(num, past=group == "past")
    degree = rng.choice(["", "", "far ", "much ", "simply "])
    return f"{rng.choice(TENSES[group][0])}, {pron} {be} {degree}too {rng.choice(STATES)} to {rng.choice(vps)}."


def _p_whether(rng, pron, num, ante, vps, preds):
    form = rng.choice(["past", "pluperfect", "would", "past_prog", "modal"])
    return f"{_cap(ante)} {rng.choice(WHETHER_VERBS)} whether {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _p_while(rng, pron, num, ante, vps, preds):
    form = rng.choice(["past", "past_prog", "past_adv", "pluperfect"])
    return (f"{_cap(pron)} {conjugate(rng.choice(vps), form, num, rng)} {rng.choice(CONNECTIVES)} {ante} "
            f"{rng.choice(preds)}.")


def _p_reaction(rng, pron, num, ante, vps, preds):
    other, other_num = _third_party(rng)
    form = rng.choice(["pluperfect", "past", "would", "past_prog"])
    reaction = _agree(rng.choice(REACTIONS), other_num)
    return f"{_cap(other)} {reaction} that {pron} {conjugate(rng.choice(vps), form, num, rng)}."


def _p_now(rng, pron, num, ante, vps, preds):
    other, other_num = _third_party(rng)
    done = conjugate(rng.choice(vps), rng.choice(["perfect", "past"]), other_num, rng)
    nxt = conjugate(rng.choice(vps), rng.choice(["going_to", "want", "pres_prog"]), num, rng)
    return f"{_cap(other)} {done}, and now {pron} {nxt}."


def _p_ask(rng, pron, num, ante, vps, preds):
    return f"{rng.choice(QUESTION_AUX)} {pron} {rng.choice(vps)} {_lower_first(rng.choice(FUTURE_INTROS))}?"


# The frames of PERSON_FRAMES that read `ante` as a third party (its predicates agree with the third
# party, not with the pronoun), plus frames of their own; _f_now is replaced by _p_now for that reason.
PERSON_NUMBER_FRAMES: list[tuple[Callable, int]] = [
    (_f_intro, 3), (_f_trailing, 2), (_f_and, 2), (_f_when, 2), (_f_report, 3), (_f_because, 1),
    (_f_outcome, 1), (_f_although, 2), (_f_question, 2), (_p_too, 2), (_p_whether, 2), (_p_while, 2),
    (_p_reaction, 2), (_p_now, 2), (_p_ask, 2),
]
_AGREED_PREDS = {n: [_agree(p, n) for p in PERSON_PREDS] for n in ("sg", "pl")}


def _person_number_draw(rng: random.Random, word: str) -> str:
    """One sentence with the subject pronoun `word`: third persons half the time with their antecedent
    frames (as in pronoun_number; "it" always), otherwise a frame beside a third party."""
    if word == "it" or (word in ("he", "she", "they") and rng.random() < 0.5):
        return _subject_sentence(rng, word)
    ante, ante_num = _third_party(rng)
    frame = _pick(rng, PERSON_NUMBER_FRAMES)
    return frame(rng, word, PERSON_AGREEMENT[word], ante, PERSON_VPS, _AGREED_PREDS[ante_num])


def _person_number_sentence(rng: random.Random, cls: str) -> str:
    words = PERSON_NUMBER_SUBJECTS[cls]
    for _ in range(100):
        word = words[0] if len(words) == 1 else rng.choices(words, weights=[35, 35, 30])[0]
        s = _person_number_draw(rng, word)
        tokens = re.findall(r"\w+", s.lower())  # whole words, as creation.word_pattern matches them
        if sum(t in _SUBJECT_FORMS for t in tokens) == 1 and NON_SUBJECT_FORMS.isdisjoint(tokens):
            return s
    raise RuntimeError(f"no clean sentence for class {cls!r} in 100 draws; check the lexicon")


def person_number_texts(seed: int = 0) -> list[str]:
    """1SG (I), 1PL (we), 2 (you), 3SG (he/she/it), 3PL (they) subject sentences, 2,000 distinct per class,
    one subject pronoun each and no object, possessive or reflexive pronoun."""
    return _generate({c: PERSON_NUMBER_PER_CLASS for c in PERSON_NUMBER_SUBJECTS}, _person_number_sentence, seed)


# ---------------------------------------------------------------------------------------- registry
BUILTIN_DATASETS: dict[str, dict] = {
    "pronoun_number": {
        "classes": {"3SG": ["he", "she", "it"], "3PL": ["they"]},
        "texts": pronoun_number_texts,
        "neutral_texts": neutral_texts,
        "description": "English third-person pronoun number: he/she/it vs they",
    },
    "gender": {
        "classes": {"masculine": ["he", "him", "his"], "feminine": ["she", "her", "hers"]},
        "texts": gender_texts,
        "neutral_texts": neutral_texts,
        "description": "English pronoun gender: he/him/his vs she/her/hers",
    },
    "person_number": {
        "classes": {"1SG": ["i"], "1PL": ["we"], "2": ["you"], "3SG": ["he", "she", "it"], "3PL": ["they"]},
        "texts": person_number_texts,
        "neutral_texts": neutral_texts,
        "description": "English subject pronouns by person and number: I / we / you / he, she, it / they",
    },
}


def builtin_texts(name: str, seed: int = 0, with_neutral: bool = True) -> list[str]:
    """The texts of built-in data set `name` (plus the neutral sentences unless with_neutral=False)."""
    if name not in BUILTIN_DATASETS:
        from gradiend_core.errors import ConfigError

        raise ConfigError(f"unknown built-in data set '{name}'; choose one of {', '.join(BUILTIN_DATASETS)}")
    spec = BUILTIN_DATASETS[name]
    return spec["texts"](seed) + (spec["neutral_texts"](seed) if with_neutral else [])


@lru_cache(maxsize=None)
def builtin_vocabulary() -> list[str]:
    """Every lowercase word (regex [a-z0-9]+ over lowercased text) the built-in generators can emit, sorted."""
    words = {w for spec in BUILTIN_DATASETS.values() for ws in spec["classes"].values() for w in ws}
    # Frame words come from the generated texts; lexicon entries from every module-level word table (so
    # combinations that seed 0 happens not to emit are covered too).
    texts = pronoun_number_texts() + gender_texts() + person_number_texts() + neutral_texts()
    for t in texts + list(_lexicon_strings()):
        words.update(re.findall(r"[a-z0-9]+", t.lower()))
    return sorted(words)


def _lexicon_strings():
    for value in list(globals().values()):
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, (list, tuple)):
            for item in value:
                items = item if isinstance(item, (list, tuple, dict)) else [item]
                if isinstance(items, dict):
                    items = list(items.values())
                yield from (x.replace("{", " ").replace("}", " ") for x in items if isinstance(x, str))
