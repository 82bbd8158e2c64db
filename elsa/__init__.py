"""elsa: see elsa/README.md."""
