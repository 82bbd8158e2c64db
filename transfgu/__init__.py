"""transfgu: see transfgu/README.md."""
