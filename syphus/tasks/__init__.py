"""Generation tasks: one module per MIMIC-IT scene type (see base.py for the contract)."""
