"""Using a trained model on new images: ``imgclf predict`` (see :mod:`.predict`)."""
