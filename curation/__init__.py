"""The corpus store, MIMIC-IT import/export, retrieval of in-context examples, curation."""
