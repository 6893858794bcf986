#!/usr/bin/env python3
"""Merges ttft_bench's CSV with pytorch_peer.py's into one Markdown table (+ CSV).

    merge_gpu_table.py --bench bench/results/ttft_llama3-8b_cuda.csv \\
                       --peer  bench/results/ttft_llama3-8b_pytorch.csv \\
                       --out   bench/results/ttft_llama3-8b_gpu.md

Rows are matched on the prompt's token count (both programs take their counts from
`ttft_bench --print_config`). The header repeats each input's description (the lines of
its .md between the title and the table, read from the .md next to each CSV when it
exists). Columns:

  tokens | passages | full ms | block cached ms | block uncached ms |
  PyTorch full prefill ms | block cached vs full | block cached vs PyTorch | full vs PyTorch

"x vs y" is x's median over y's median, minus 1 (negative: x is faster). A cell either
input lacks is n/a. Also writes the rows of both inputs to <out>.csv (the six columns
the two CSVs share). `--self_test` checks the merge on made-up inputs.
"""

import argparse
import csv
import os
import sys
import tempfile

SHARED = ["tokens", "passages", "mode", "median_ms", "min_ms", "max_ms"]


def read_rows(path):
    if not os.path.exists(path):
        raise SystemExit(f"merge_gpu_table: {path} does not exist (did its step fail?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        missing = [c for c in SHARED if c not in r]
        if missing:
            raise SystemExit(f"merge_gpu_table: {path} lacks columns {missing}")
    return rows


def describe(csv_path):
    """The description lines of the .md next to csv_path (title and table left out)."""
    md = os.path.splitext(csv_path)[0] + ".md"
    if not os.path.exists(md):
        return [f"({os.path.basename(csv_path)}: no .md beside it)"]
    lines = []
    with open(md) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("|"):
                break
            if line and not line.startswith("# "):
                lines.append(line)
    return lines


def cell(r):
    if r is None:
        return "n/a"
    med, lo, hi = float(r["median_ms"]), float(r["min_ms"]), float(r["max_ms"])
    # ttft_bench's CSV has no run count: min == max there means one run (as its n=1).
    if r.get("runs") == "1" or (lo == hi == med and r.get("runs") is None):
        return f"{med:.1f} (n=1)"
    return f"{med:.1f} ({lo:.1f}–{hi:.1f})"


def pct(a, b):
    if a is None or b is None:
        return "n/a"
    return f"{100 * (float(a['median_ms']) / float(b['median_ms']) - 1):+.1f}%"


def merge(bench_csv, peer_csv, out_md, title=None):
    bench, peer = read_rows(bench_csv), read_rows(peer_csv)
    by = {}
    for r in bench + peer:
        by[(int(r["tokens"]), r["mode"])] = r
    tokens = sorted({t for t, _ in by})
    header = ("| tokens | passages | full ms | block cached ms | block uncached ms | "
              "PyTorch full prefill ms | block cached vs full | block cached vs PyTorch | "
              "full vs PyTorch |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    table = header
    for t in tokens:
        full, cached = by.get((t, "full")), by.get((t, "block_cached"))
        uncached, torch_full = by.get((t, "block_uncached")), by.get((t, "pytorch_full"))
        passages = next((r["passages"] for r in (full, cached, uncached, torch_full) if r and r["passages"]), "")
        table += (f"| {t} | {passages or 'n/a'} | {cell(full)} | {cell(cached)} | {cell(uncached)} | "
                  f"{cell(torch_full)} | {pct(cached, full)} | {pct(cached, torch_full)} | "
                  f"{pct(full, torch_full)} |\n")
    title = title or f"TTFT on the GPU: BlockServe vs PyTorch prefill ({os.path.basename(out_md)[:-3]})"
    md = [f"# {title}", "",
          f"BlockServe (`{os.path.basename(bench_csv)}`):", ""]
    md += [f"> {l}" for l in describe(bench_csv)]
    md += ["", f"PyTorch peer (`{os.path.basename(peer_csv)}`):", ""]
    md += [f"> {l}" for l in describe(peer_csv)]
    md += ["",
           "Cells: median (min–max) ms. full = BlockServe's ordinary causal prefill; block cached = "
           "Block-Attention with every passage's KV cached; block uncached = Block-Attention, "
           "nothing cached; PyTorch full prefill = the same shape's causal prefill in plain "
           "PyTorch. \"x vs y\" = median x / median y - 1 (negative: x is faster).",
           f"Merged by bench/ttft/merge_gpu_table.py.", "", table]
    os.makedirs(os.path.dirname(out_md) or ".", exist_ok=True)
    with open(out_md, "w") as f:
        f.write("\n".join(md))
    with open(out_md[:-3] + ".csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SHARED)
        for r in bench + peer:
            w.writerow([r[c] for c in SHARED])
    return table


def self_test():
    with tempfile.TemporaryDirectory() as d:
        b, p = os.path.join(d, "ttft_x_cuda.csv"), os.path.join(d, "ttft_x_pytorch.csv")
        with open(b, "w") as f:
            f.write("tokens,passages,mode,median_ms,min_ms,max_ms,flops\n"
                    "500,3,full,100.0,90.0,110.0,1e9\n500,3,block_cached,10.0,9.0,11.0,1e8\n"
                    "500,3,block_uncached,80.0,79.0,81.0,5e8\n500,3,query_only,5,5,5,1e7\n"
                    "950,6,full,200.0,200.0,200.0,2e9\n")
        with open(b[:-4] + ".md", "w") as f:
            f.write("# t\n\nModel: x.\nBackend: cuda (made up).\n\n| tokens |\n|---:|\n| 500 |\n")
        with open(p, "w") as f:
            f.write("tokens,passages,mode,median_ms,min_ms,max_ms,runs\n"
                    "500,3,pytorch_full,50.0,49.0,52.0,5\n2000,13,pytorch_full,400,400,400,1\n")
        out = os.path.join(d, "out", "ttft_x_gpu.md")
        table = merge(b, p, out)
        rows = [l for l in table.splitlines() if l[:2] == "| " and l[2:3].isdigit()]
        want = [
            "| 500 | 3 | 100.0 (90.0–110.0) | 10.0 (9.0–11.0) | 80.0 (79.0–81.0) | 50.0 (49.0–52.0) "
            "| -90.0% | -80.0% | +100.0% |",
            "| 950 | 6 | 200.0 (n=1) | n/a | n/a | n/a | n/a | n/a | n/a |",
            "| 2000 | 13 | n/a | n/a | n/a | 400.0 (n=1) | n/a | n/a | n/a |",
        ]
        assert rows == want, "\n".join(["got:"] + rows + ["want:"] + want)
        text = open(out).read()
        assert "> Backend: cuda (made up)." in text and "no .md beside it" in text, text
        merged = open(out[:-3] + ".csv").read().splitlines()
        assert merged[0] == ",".join(SHARED) and len(merged) == 1 + 5 + 2, merged
        assert merged[-1] == "2000,13,pytorch_full,400,400,400", merged
    print("merge_gpu_table self-test: ok", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="ttft_bench's CSV (e.g. --backend=cuda --tag llama3-8b_cuda)")
    ap.add_argument("--peer", help="pytorch_peer.py's CSV")
    ap.add_argument("--out", help="the merged .md (a .csv is written beside it)")
    ap.add_argument("--title", default=None)
    ap.add_argument("--self_test", action="store_true")
    args = ap.parse_args(argv)
    if args.self_test:
        self_test()
        return 0
    if not (args.bench and args.peer and args.out and args.out.endswith(".md")):
        ap.error("--bench, --peer and --out (ending in .md) are required")
    print(merge(args.bench, args.peer, args.out, args.title), end="")
    print(f"wrote {args.out} and {args.out[:-3]}.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
