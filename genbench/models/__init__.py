"""Model references -> loaded objects: diffusers pipelines, open_clip models, tiny offline builders.

``load_generator(ref)`` and ``load_clip(ref)`` take a string reference (``tiny``, a hub id, a local directory, ...);
every diffusers/open_clip model goes through the library's own ``from_pretrained`` / ``create_model_and_transforms``.
"""

from genbench.models.cache import default_cache_dir
from genbench.models.clip import ClipEncoder, load_clip
from genbench.models.generator import ImageGenerator, NullGenerator, load_generator

__all__ = ["ClipEncoder", "ImageGenerator", "NullGenerator", "default_cache_dir", "load_clip", "load_generator"]
