"""Training pairs: where they come from (files, CSV, synthetic), alignment, and the patch store."""
