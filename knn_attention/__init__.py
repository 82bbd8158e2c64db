"""knn_attention: see knn_attention/README.md."""
