"""mhformer: see mhformer/README.md."""
