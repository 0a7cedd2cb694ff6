"""The imgclf benchmark: ``python bench/bench.py`` (see bench/README.md).

framework: figures, targets, the table; runner: child processes and their memory;
photos, context, fitting: what several sections share; sections/: one module per
section (or close pair), registered in ``bench.sections.SECTION_FUNCS``.
"""
