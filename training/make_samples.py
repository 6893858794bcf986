"""Writes the sample corpus that scripts/run_system.sh ingests and asks about:

    samples/passages.jsonl   {"id": ..., "text": ...} per passage
    samples/questions.txt    "ids | question | expected answer" per line

The passages and questions come from the synthetic RAG task's held-out (test) split, so
the shipped model has never seen any of their names. Everything is drawn from --seed;
the model is not consulted, so the expected answers are the task's ground truth and the
run shows whatever the model really answers next to them.

    /usr/bin/python3 training/make_samples.py [--seed N] [--out_dir samples]
"""

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rag_data  # noqa: E402


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=20240923,
                   help="the training seed (fixes the name pools and so the test split)")
    p.add_argument("--sample_seed", type=int, default=7, help="draws the sample contexts")
    p.add_argument("--out_dir", default="samples")
    args = p.parse_args()

    gen = rag_data.TaskGenerator(rag_data.NamePools(args.seed), "test", args.sample_seed)
    rows, lines, seen = [], [], set()
    # Two contexts of 5 passages (training saw 2-5); per context one question of each kind about the anchor
    # person, asked over its gold passage(s) plus every other passage of the context.
    for _ in range(2):
        passages, anchor, questions, _ = gen.context(5, with_two_hop=True)
        ids = []
        for text in passages:
            subject = text[len("About "):text.index(":")]
            pid = ("person-" if " " in subject and not subject.split()[-1] in
                   rag_data.COMPANY_SUFFIXES else "company-") + slug(subject)
            ids.append(pid)
            if pid not in seen:
                seen.add(pid)
                rows.append({"id": pid, "text": text})
        for kind in ["city", "profession", "employer", "employer_city"]:
            q = next(q for q in questions if q[0] == kind and q[1] is anchor)
            lines.append(f"{','.join(ids)} | {rag_data.query_text(kind, anchor['name'])} | "
                         f"{q[2]}")

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "passages.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(args.out_dir, "questions.txt"), "w") as f:
        f.write("# Written by training/make_samples.py: held-out passages of the synthetic RAG task.\n"
                "# One question per line: passage ids (comma-separated) | query | expected answer.\n"
                "# A \"system:\" line sets the system prompt of the questions after it.\n"
                f"system: {rag_data.SYSTEM}\n")
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} passages and {len(lines)} questions to {args.out_dir}/")


if __name__ == "__main__":
    main()
