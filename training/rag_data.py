"""A synthetic retrieval-augmented QA task, generated reproducibly from a seed.

Every fact is about an invented entity, so a question can only be answered by copying
from the right passage. A prompt is the BlockServe layout (engine/prompt.h):

    [system] [passage 1] ... [passage k] [query]  ->  answer + EOS

Persons have a birth city, a birth year, a profession and an employer; companies have a
home city. Single-hop questions ask for one of a person's attributes; two-hop questions
ask for the city of a person's employer, which needs the person's passage (the company)
and the company's passage (its city). Distractor passages describe other persons and
companies; some share the target's first name or surname.

Names are built from syllables and split into disjoint train / dev / test pools (first
names, surnames, cities and companies alike), so held-out questions are about entities
whose every name part was never seen in training.
"""

import random

SYSTEM = "Answer the question using the passages."

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r",
           "s", "st", "t", "tr", "v", "z", "th", "sh", "w"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou"]
_CODAS = ["", "", "", "", "n", "r", "l", "s", "th", "x"]
_CITY_SUFFIXES = ["holm", "burg", "ford", "stad", "mouth", "vale", "port", "wick", "dorf"]
_COMPANY_SUFFIXES = ["Labs", "Works", "Corp", "Industries", "Foundry", "Mills", "Systems"]
PROFESSIONS = [
    "baker", "sailor", "glassblower", "clockmaker", "surveyor", "painter", "chemist",
    "engineer", "librarian", "potter", "weaver", "astronomer", "carpenter", "tailor",
    "architect", "botanist", "cartographer", "blacksmith", "brewer", "jeweler", "pilot",
    "geologist", "translator", "violinist", "sculptor", "pharmacist", "locksmith",
    "beekeeper", "typesetter", "archivist", "mason", "fisherman", "optician", "composer",
    "glazier", "shipwright", "dentist", "farmer", "miner", "printer",
]

# Passages are knowledge cards that name their subject first ("About X: ..."), so every
# later token of a passage can see whom it is about, and a name is tokenized the same way
# (after a space) in the passage and in the question.
PERSON_TEMPLATES = [
    "About {name}: born in {city} in {year}; works as {a_prof} at {company}.\n",
    "About {name}: {a_prof} at {company}, born in {year} in {city}.\n",
]
COMPANY_TEMPLATES = [
    "About {company}: a company based in {city}, founded in {year}.\n",
    "About {company}: founded in {year}, with headquarters in {city}.\n",
]
QUESTIONS = {
    "city": "Where was {name} born?",
    "year": "In which year was {name} born?",
    "profession": "What is the profession of {name}?",
    "employer": "Which company does {name} work for?",
    "employer_city": "In which city is the company that {name} works for based?",
}


def _article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


class NamePools:
    """Disjoint pools of name parts for the train, dev and test splits."""

    def __init__(self, seed):
        rng = random.Random(seed)
        syllables = [o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS]
        syllables = sorted(set(syllables))

        def words(count, parts, suffixes=None):
            out = set()
            while len(out) < count:
                w = "".join(rng.choice(syllables) for _ in range(rng.choice(parts)))
                if suffixes:
                    w += rng.choice(suffixes)
                out.add(w.capitalize())
            return sorted(out)

        firsts = words(3000, [2])
        surnames = words(6000, [2, 2, 3])
        cities = words(3000, [1, 2], _CITY_SUFFIXES)
        companies = words(2500, [2])
        # A word used as one kind of name is never used as another kind.
        taken = set()
        kinds = {}
        for kind, pool in [("first", firsts), ("surname", surnames), ("city", cities),
                           ("company", companies)]:
            pool = [w for w in pool if w not in taken]
            taken.update(pool)
            rng.shuffle(pool)
            kinds[kind] = pool
        self.splits = {}
        for split, (lo, hi) in {"train": (0.0, 0.8), "dev": (0.8, 0.85),
                                "test": (0.85, 1.0)}.items():
            self.splits[split] = {
                kind: pool[int(lo * len(pool)):int(hi * len(pool))]
                for kind, pool in kinds.items()
            }


class TaskGenerator:
    """Draws prompts of one split; reproducible from (pools, split, seed)."""

    def __init__(self, pools, split, seed):
        self.pool = pools.splits[split]
        self.rng = random.Random(seed)

    def _company(self):
        base = self.rng.choice(self.pool["company"])
        return base + " " + self.rng.choice(_COMPANY_SUFFIXES)

    def _person(self, first=None, surname=None):
        r = self.rng
        return {
            "name": (first or r.choice(self.pool["first"])) + " " +
                    (surname or r.choice(self.pool["surname"])),
            "city": r.choice(self.pool["city"]),
            "year": str(r.randint(1700, 1999)),
            "profession": r.choice(PROFESSIONS),
            "employer": self._company(),
        }

    def _person_passage(self, p):
        t = self.rng.choice(PERSON_TEMPLATES)
        return t.format(year=p["year"], name=p["name"], city=p["city"], prof=p["profession"],
                        a_prof=_article(p["profession"]), company=p["employer"])

    def _company_passage(self, company, city):
        t = self.rng.choice(COMPANY_TEMPLATES)
        return t.format(company=company, city=city, year=self.rng.randint(1700, 1999))

    def _distractor_persons(self, target, count):
        """Other persons, all with distinct names; a third share a name part."""
        out, names = [], {target["name"]}
        first, surname = target["name"].split(" ", 1)
        while len(out) < count:
            roll = self.rng.random()
            if roll < 0.17:
                p = self._person(first=first)
            elif roll < 0.33:
                p = self._person(surname=surname)
            else:
                p = self._person()
            if p["name"] not in names:
                names.add(p["name"])
                out.append(p)
        return out

    def single_hop(self, num_passages):
        r = self.rng
        target = self._person()
        kind = r.choice(["city", "year", "profession", "employer"])
        others = self._distractor_persons(target, num_passages - 1)
        passages = [self._person_passage(p) for p in others]
        # Now and then a company passage among the distractors.
        for i in range(len(passages)):
            if r.random() < 0.15:
                passages[i] = self._company_passage(self._company(), r.choice(self.pool["city"]))
        gold = r.randrange(num_passages)
        passages.insert(gold, self._person_passage(target))
        return self._example(kind, target["name"], target[kind], passages, [gold])

    def two_hop(self, num_passages):
        """Needs the person's passage (its company) and the company's (its city)."""
        r = self.rng
        assert num_passages >= 2
        target = self._person()
        company_city = target["city"]
        while company_city == target["city"]:
            company_city = r.choice(self.pool["city"])
        others = self._distractor_persons(target, num_passages - 2)
        for p in others:
            while p["employer"] == target["employer"]:
                p["employer"] = self._company()
        distractors = []
        for p in others:
            # Half the distractor persons bring their own company's passage along.
            if r.random() < 0.5:
                distractors.append(self._company_passage(p["employer"], r.choice(self.pool["city"])))
            else:
                distractors.append(self._person_passage(p))
        passages = distractors
        gold_person = r.randrange(len(passages) + 1)
        passages.insert(gold_person, self._person_passage(target))
        gold_company = r.randrange(len(passages) + 1)
        passages.insert(gold_company, self._company_passage(target["employer"], company_city))
        if gold_company <= gold_person:
            gold_person += 1
        return self._example("employer_city", target["name"], company_city, passages,
                             sorted([gold_person, gold_company]))

    def _example(self, kind, name, answer, passages, gold):
        return {
            "kind": kind,
            "system": SYSTEM,
            "passages": passages,
            "query": "Question: " + QUESTIONS[kind].format(name=name) + " Answer:",
            "answer": " " + answer,
            "gold": gold,
        }

    def draw(self, min_passages, max_passages, two_hop_fraction):
        k = self.rng.randint(min_passages, max_passages)
        if self.rng.random() < two_hop_fraction:
            return self.two_hop(max(k, 2))
        return self.single_hop(k)


def make_split(pools, split, seed, count, min_passages, max_passages, two_hop_fraction):
    gen = TaskGenerator(pools, split, seed)
    return [gen.draw(min_passages, max_passages, two_hop_fraction) for _ in range(count)]
