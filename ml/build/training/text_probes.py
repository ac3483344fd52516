"""A small functional probe written by deepscreen: hate vs the hard non-hate cases around it.

Not HateCheck and not a benchmark: a few templates per function (derogation, dehumanisation, threats,
obfuscated spellings; and their negations, counter-speech, neutral and positive mentions, abuse of
non-protected targets, non-hateful profanity) over eight target groups. Nothing here is trained on;
the training report shows the AUROC on it as a sanity check of the functional behaviour the
data sets are meant to teach.
"""

from __future__ import annotations

GROUPS = ("women", "Muslims", "Jews", "black people", "gay people", "trans people", "immigrants",
          "disabled people")

HATEFUL = (
    "{g} are disgusting.", "I despise {g}.", "{g} are a plague on this country.",
    "All {g} are liars and thieves.", "{g} are vermin.", "{g} are nothing but animals.",
    "{g} are parasites feeding on the rest of us.", "I will hurt any of the {g} I meet.",
    "{g} should all be shot.", "We need to get rid of {g} for good.", "{g} don't deserve to live.",
    "You can never trust {g}, it's in their nature.", "{g} are too stupid to vote.",
    "{g} are v3rm1n.", "k1ll all {g}", "{g} are s c u m", "{g} are pa.ra.sites",
    "I'd never hire {g}, they are all lazy.", "Typical {g}, always ruining everything.",
    "{g} should be banned from our neighbourhood.",
)
NOT_HATEFUL = (
    "I don't hate {g}.", "{g} are not vermin, they are people like us.",
    "Saying that {g} are animals is disgusting and wrong.", "It is never acceptable to threaten {g}.",
    "I had lunch with some {g} today.", "My neighbours are {g}.", "{g} deserve the same rights as everyone.",
    "I love spending time with {g}.", "There are many {g} in my city.", "Statements like '{g} are scum' must stop.",
)
NON_GROUP_NOT_HATEFUL = (
    "Mosquitoes are vermin.", "I hate Mondays so much.", "This printer should be shot.",
    "Fuck yeah, I love this song!", "This shit is amazing, best pizza ever.", "Kill the lights when you leave.",
    "Cockroaches are disgusting parasites.", "What a lovely afternoon in the park.",
    "My cat is a little monster, she destroyed the couch.", "Damn, that exam was brutal.",
)


def functional_probe() -> tuple[list[str], list[int], list[str]]:
    """(texts, labels, function names)."""
    texts, labels, kinds = [], [], []
    for group in GROUPS:
        for template in HATEFUL:
            texts.append(template.format(g=group))
            labels.append(1)
            kinds.append("hateful")
        for template in NOT_HATEFUL:
            texts.append(template.format(g=group))
            labels.append(0)
            kinds.append("not_hateful_about_group")
    for text in NON_GROUP_NOT_HATEFUL:
        texts.append(text)
        labels.append(0)
        kinds.append("not_hateful_other")
    return texts, labels, kinds
