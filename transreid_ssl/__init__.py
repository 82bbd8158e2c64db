"""transreid_ssl: see transreid_ssl/README.md."""
