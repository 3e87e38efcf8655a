"""Playbook parsing, embeddings, vector store and hybrid search."""
