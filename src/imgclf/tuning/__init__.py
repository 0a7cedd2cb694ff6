"""``imgclf tune``: an Optuna study over a YAML search space, every trial a DVC experiment.

- ``space``: the search space file (recipes/tune.yaml), checked key by key against
  the params' own rules;
- ``trial``: one trial as ``dvc exp run`` up to the train stage, watched through its
  DVCLive val curve so the pruner can stop it;
- ``study``: the loop (storage, sampler, pruner, time budget, the outer loop over
  feature sets), the progress lines and ``--apply``;
- ``plots``: the parameter importances and optimization history as PNG files.

docs/tuning.md is the user's guide.
"""
