"""One module per pipeline stage; each writes its own warehouse table keyed by doc_id."""
