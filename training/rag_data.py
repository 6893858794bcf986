"""A synthetic retrieval-augmented QA task, generated reproducibly from a seed.

Every fact is about an invented entity, so a question can only be answered by copying
from the right passage. A prompt is the BlockServe layout (engine/prompt.h):

    [system] [passage 1] ... [passage k] [query]  ->  answer + EOS

Persons have a birth city, a birth year, a profession and an employer; companies have a
home city. Single-hop questions ask for one of a person's attributes; two-hop questions
ask for the city of a person's employer, which needs the person's passage (the company)
and the company's passage (its city). Distractor passages describe other persons and
companies; some share the target's first name or surname.

Names are built from syllables. First names, surnames, cities and companies come from
closed pools (a few hundred words each, so the tokenizer learns each as one token);
every full name belongs to one of the train / dev / test splits by a hash, so held-out
questions are about persons never seen in training, only their name parts. Every fact is
drawn afresh for each prompt (a person's city, a company's city), so no answer can be
memorized: it must be copied from the passage that states it. Birth years appear in the
passages but are not asked about (digits tokenize into pieces shared by every year, which
a model this small copies poorly).
"""

import random
import zlib

SYSTEM = "Answer the question using the passages."

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r",
           "s", "st", "t", "tr", "v", "z", "th", "sh", "w"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou"]
_CODAS = ["", "", "", "", "n", "r", "l", "s", "th", "x"]
_CITY_SUFFIXES = ["holm", "burg", "ford", "stad", "mouth", "vale", "port", "wick", "dorf"]
COMPANY_SUFFIXES = ["Labs", "Works", "Corp", "Industries", "Foundry", "Mills", "Systems"]
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


SINGLE_HOP_KINDS = ["city", "profession", "employer"]


def query_text(kind, name):
    return "Question: " + QUESTIONS[kind].format(name=name) + " Answer:"


def _article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


# Which split a full name belongs to: a stable hash of the name, so a person is in exactly
# one split whatever the draw order (80% train, 5% dev, 15% test).
_SPLIT_BOUNDS = [("train", 80), ("dev", 85), ("test", 100)]


def split_of(name):
    bucket = zlib.crc32(name.encode()) % 100
    return next(split for split, bound in _SPLIT_BOUNDS if bucket < bound)


class NamePools:
    """The closed vocabularies of the task: first names, surnames, cities and companies
    (each company a base name with a fixed suffix), no word in two of them. Every split
    draws from all of them; a person's full name (first name + surname) belongs to one
    split (split_of), so held-out questions are about persons never seen in training."""

    def __init__(self, seed, firsts=240, surnames=360, cities=150, companies=150):
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

        drawn = [("city", words(cities, [1, 2], _CITY_SUFFIXES)),
                 ("company", words(companies, [2])),
                 ("first", words(firsts, [2])), ("surname", words(surnames, [2]))]
        taken, self.words = set(), {}
        for kind, pool in drawn:
            pool = [w for w in pool if w not in taken]
            taken.update(pool)
            rng.shuffle(pool)
            self.words[kind] = pool
        self.words["company"] = [w + " " + rng.choice(COMPANY_SUFFIXES)
                                 for w in self.words["company"]]


class TaskGenerator:
    """Draws prompts of one split; reproducible from (pools, split, seed)."""

    def __init__(self, pools, split, seed):
        self.pool = pools.words
        self.split = split
        self.rng = random.Random(seed)

    def _company(self):
        return self.rng.choice(self.pool["company"])

    def _name(self, first=None, surname=None):
        """A full name of this split; `first` or `surname` fixes that part."""
        while True:
            name = (first or self.rng.choice(self.pool["first"])) + " " + \
                   (surname or self.rng.choice(self.pool["surname"]))
            if split_of(name) == self.split:
                return name

    def _person(self, first=None, surname=None):
        r = self.rng
        return {
            "name": self._name(first, surname),
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

    def context(self, num_passages, with_two_hop):
        """Passages about persons and companies around an anchor person, and every question
        they answer. Names and employers are unique within a context; a third of the other
        persons share the anchor's first name or surname; a company passage states a city
        different from its employee's birth city. With `with_two_hop` the anchor's employer
        has a passage. Returns (passages, anchor, questions, company_city); a question
        is (kind, person, answer, gold passage indices); company_city maps each company
        with a passage to its city."""
        r = self.rng
        names, employers = set(), set()

        def new_person(like=None):
            while True:
                roll = r.random()
                first, surname = like["name"].split(" ", 1) if like else (None, None)
                p = self._person(first=first if roll < 0.17 else None,
                                 surname=surname if 0.17 <= roll < 0.33 else None)
                if p["name"] not in names and p["employer"] not in employers:
                    names.add(p["name"])
                    employers.add(p["employer"])
                    return p

        def city_other_than(city):
            while True:
                c = r.choice(self.pool["city"])
                if c != city:
                    return c

        anchor = new_person()
        persons, company_city = [anchor], {}
        if with_two_hop:
            company_city[anchor["employer"]] = city_other_than(anchor["city"])
        while len(persons) + len(company_city) < num_passages:
            if r.random() < 0.7:
                persons.append(new_person(like=anchor))
                continue
            uncovered = [p for p in persons if p["employer"] not in company_city]
            if uncovered and r.random() < 0.6:
                p = r.choice(uncovered)
                company_city[p["employer"]] = city_other_than(p["city"])
            else:
                company = self._company()
                if company not in employers:
                    employers.add(company)
                    company_city[company] = r.choice(self.pool["city"])
        cards = [("person", p) for p in persons] + [("company", c) for c in company_city]
        r.shuffle(cards)
        passages, where = [], {}
        for kind, item in cards:
            if kind == "person":
                where[item["name"]] = len(passages)
                passages.append(self._person_passage(item))
            else:
                where[item] = len(passages)
                passages.append(self._company_passage(item, company_city[item]))
        questions = []
        for p in persons:
            for kind in SINGLE_HOP_KINDS:
                questions.append((kind, p, p[kind], [where[p["name"]]]))
            if p["employer"] in company_city:
                questions.append(("employer_city", p, company_city[p["employer"]],
                                  sorted([where[p["name"]], where[p["employer"]]])))
        return passages, anchor, questions, company_city

    def single_hop(self, num_passages):
        """One question about the anchor person's birth city, year, profession or employer."""
        passages, anchor, questions, _ = self.context(num_passages, with_two_hop=False)
        kind = self.rng.choice(SINGLE_HOP_KINDS)
        q = next(q for q in questions if q[0] == kind and q[1] is anchor)
        candidates = [other[2] for other in questions if other[0] == kind]
        return self._example(q[0], anchor["name"], q[2], passages, q[3], candidates)

    def two_hop(self, num_passages):
        """In which city is the anchor's employer based: needs two passages."""
        passages, anchor, questions, company_city = self.context(max(2, num_passages),
                                                                 with_two_hop=True)
        q = next(q for q in questions if q[0] == "employer_city" and q[1] is anchor)
        return self._example(q[0], anchor["name"], q[2], passages, q[3],
                             list(company_city.values()))

    def training_prompt(self, num_passages, two_hop_fraction, max_questions):
        """One set of passages with up to `max_questions` of its questions (two-hop ones
        first when drawn). Training scores every question against the same passages."""
        r = self.rng
        passages, _, questions, _ = self.context(num_passages, r.random() < two_hop_fraction)
        two_hop = [q for q in questions if q[0] == "employer_city"]
        single = [q for q in questions if q[0] != "employer_city"]
        r.shuffle(two_hop)
        r.shuffle(single)
        chosen = (two_hop[:max(1, max_questions // 3)] + single)[:max_questions]
        r.shuffle(chosen)
        return {
            "system": SYSTEM,
            "passages": passages,
            "queries": [query_text(q[0], q[1]["name"]) for q in chosen],
            "answers": [" " + q[2] for q in chosen],
            "kinds": [q[0] for q in chosen],
            # For training's retrieval supervision: where each answer is stated, whom the
            # question is about, and for two-hop questions the bridge entity (the
            # employer, stated in the person's passage and heading the company's).
            "gold": [q[3] for q in chosen],
            "subjects": [" " + q[1]["name"] for q in chosen],
            "bridges": [" " + q[1]["employer"] if q[0] == "employer_city" else ""
                        for q in chosen],
        }

    def _example(self, kind, name, answer, passages, gold, candidates):
        """`candidates`: the answer the same question has for every subject of the prompt
        (each person's value of `kind`; for two-hop, each company card's city), so that a
        pick of the right kind from the wrong passage can be told from retrieval."""
        return {
            "kind": kind,
            "system": SYSTEM,
            "passages": passages,
            "query": query_text(kind, name),
            "answer": " " + answer,
            "gold": gold,
            "candidates": sorted(set(" " + c for c in candidates)),
        }

    def draw(self, min_passages, max_passages, two_hop_fraction):
        k = self.rng.randint(min_passages, max_passages)
        if self.rng.random() < two_hop_fraction:
            return self.two_hop(k)
        return self.single_hop(k)


def make_split(pools, split, seed, count, min_passages, max_passages, two_hop_fraction):
    """`count` single-question examples (the evaluation sets)."""
    gen = TaskGenerator(pools, split, seed)
    return [gen.draw(min_passages, max_passages, two_hop_fraction) for _ in range(count)]


def make_training_prompts(pools, seed, count, min_passages, max_passages, two_hop_fraction,
                          max_questions):
    """`count` training prompts, each with several questions on the same passages."""
    gen = TaskGenerator(pools, "train", seed)
    return [gen.training_prompt(gen.rng.randint(min_passages, max_passages), two_hop_fraction,
                                max_questions) for _ in range(count)]
