"""Molecular property prediction (paper section 5.3): OGB ``ogbg-mol*`` data as padded jraph batches.

Data side, one concept per module:

- :mod:`.features`: RDKit featurisation exactly as OGB's ``smiles2graph`` (9 atom, 3 bond features).
- :mod:`.moleculenet`: MoleculeNet CSV files (SMILES + label matrix, ``NaN`` = missing).
- :mod:`.splits`: OGB's Bemis-Murcko scaffold split (80/10/10, largest scaffold groups first).
- :mod:`.dataset`: featurised graphs in flat arrays, cached on disk after the first featurisation.
- :mod:`.tfds_source`: ``ogbg_molpcba`` through ``tfds.data_source``, converted to the same format.
- :mod:`.input_pipeline`: padding budgets and deterministic shuffled batches of ``jraph.GraphsTuple``.
- :mod:`.metrics`: OGB's evaluator (per-task ROC-AUC or average precision, mean over valid tasks).
"""
