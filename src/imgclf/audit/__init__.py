"""The data audit: likely label errors, outliers, near-duplicates (leaks across splits
included) and image-quality issues, found from the features stage's embeddings and the
prepared images (docs/audit.md). It reports; ``overrides.yaml``, read by split, acts.
"""
