"""tcl_i2v: see tcl_i2v/README.md."""
