"""Proof under load, faults and bad input (issue 8): bounded scripts that write JSON to ``reports/reliability/``.

One module per check (``crash``, ``tamper``, ``deletion``, ``fuzz``, ``soak``, ``scale``); each exposes
``register(subparsers)`` adding itself under ``hei-nw reliability``, and a ``run(...)`` function the
CI-sized tests call with small sizes.
"""
