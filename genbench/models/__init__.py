"""Model references -> loaded objects: diffusers pipelines, open_clip models, tiny offline builders.

Import the submodule you need (``genbench.models.clip``, ``genbench.models.generator``): this package imports nothing
itself, so reading a reference (:mod:`genbench.models.refs`) never loads torch.
"""
