"""Regenerate the real-data tables and report of a folder of run records, from its JSON alone.

    python eval/real_tables.py reports/full

Pairs every run with B0 again, and every B1 run with the memory reader with B1 without
it, RAG, BM25-RAG and long context (paired bootstrap over the per-question sidecars),
then writes ``report.md`` / ``report.html`` (headline tables first) and ``headline.md``,
and prints the headline tables. No model is loaded and nothing is rerun.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hei_nw_eval.headline import headline_tables, tables_markdown
from hei_nw_eval.records import load_records
from hei_nw_eval.report import build_report
from hei_nw_eval.runner import refresh_comparisons


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("reports/full"))
    parser.add_argument("--title", default="HEI-NW on real data: LoCoMo dev5, bAbI qa1-qa3 and scenarios A-E")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the paired differences")
    args = parser.parse_args(argv)
    changed = refresh_comparisons(args.folder, n_boot=args.n_boot)
    files = build_report(args.folder, title=args.title)
    text = tables_markdown(headline_tables(load_records(args.folder)))
    (args.folder / "headline.md").write_text(f"# {args.title}\n\n{text}", encoding="utf-8")
    print(text)
    print(f"refreshed {changed} records' comparisons; wrote {files.markdown}, {files.html} and {args.folder / 'headline.md'}")


if __name__ == "__main__":
    main()
