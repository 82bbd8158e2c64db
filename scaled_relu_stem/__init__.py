"""scaled_relu_stem: see scaled_relu_stem/README.md."""
