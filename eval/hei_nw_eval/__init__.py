"""HEI-NW evaluation: scenario generators, dataset loaders, metrics, records, reports.

Model-independent parts of the harness. Importing it loads no model and touches
no files; the engine (``hei_nw_plugin``) is imported only by
:mod:`hei_nw_eval.retrieval_check`, and matplotlib only by :mod:`hei_nw_eval.report`.
"""
