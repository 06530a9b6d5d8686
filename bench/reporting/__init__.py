"""The parts of ``bench/report.py``, the script that renders ``results/`` from the raw JSON.

=================  ==========================================================================
``load.py``        the JSON files, the bench modules' ``BARS``, and :class:`Index`: every
                   benchmark of a run by group and implementation, with the run's ceilings
``bars.py``        :func:`evaluate_bar`: each bar's PASS, FAIL or NOT RUN, with the reason
``formatting.py``  numbers, times and Markdown tables as the reports print them
``tables.py``      ``benchmarks.md`` and ``memory.md``
``figures.py``     ``speedups.png``, ``memory_scaling.png``, ``time_scaling.png``
``readme.py``      ``README.md``: the bars, what was run, the machine and its threads
=================  ==========================================================================

``bench/report.py`` puts them together (``render``) and is the command; the modules import one
another only downwards in this table's order of dependence (load, formatting, bars, tables,
figures, readme), never round a cycle.
"""
