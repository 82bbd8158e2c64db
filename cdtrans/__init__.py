"""cdtrans: see cdtrans/README.md."""
