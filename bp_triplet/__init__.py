"""bp_triplet: see bp_triplet/README.md."""
