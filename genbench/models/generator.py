"""Generator references -> an object that turns (prompt, negative prompt, seed) triples into RGB images.

References: ``toy`` (a StableDiffusionPipeline trained here on the digits train split, :mod:`genbench.models.toy`),
``tiny`` (a real StableDiffusionPipeline built offline from ``configs/tiny-sd.json``), ``tiny:<family>`` (a tiny random
build of a generator family's architecture, :mod:`genbench.models.families`), ``null`` (no model: seeded noise images,
to measure the engine's own cost), ``random:<config>`` (a shipped architecture such as ``random:sd21-base`` or
``random:flux1-schnell`` with random weights, for throughput), a hub id (``stabilityai/stable-diffusion-2-1-base``,
``black-forest-labs/FLUX.1-schnell``, ...) or a local diffusers pipeline directory. Every diffusers model is loaded
by ``AutoPipelineForText2Image.from_pretrained``; img2img shares its weights via ``AutoPipelineForImage2Image.from_pipe``.
A generator of a known family never sends negative prompts or classifier-free guidance to a family without them.
A generator loaded with IP-Adapter weights (``ip_adapter=``, a local ``.safetensors`` file beside an ``image_encoder/``
folder, as h94/IP-Adapter lays them out) also takes one image prompt per sample (RA's image prompt).
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from genbench.errors import UsageError
from genbench.models import refs
from genbench.models.device import resolve_device, resolve_dtype
from genbench.models.families import Family, family_of

log = logging.getLogger(__name__)

SCHEDULERS = ("dpmsolver++", "default")
# Pipeline arguments genbench turns off where a pipeline has them: PixArt/Sana would otherwise generate at the nearest
# aspect-ratio bin of their training sizes and resize (we generate squares at the requested size), and PixArt's
# caption cleaning depends on whether bs4 and ftfy happen to be installed.
_OFF = ("use_resolution_binning", "clean_caption")
# Pipeline arguments with one entry per sample.
_PER_SAMPLE = ("prompt", "negative_prompt", "prompt_embeds", "negative_prompt_embeds", "generator")


class ImageGenerator:
    """Base interface; see :class:`DiffusersGenerator` and :class:`NullGenerator`."""

    ref: str
    is_tiny: bool
    default_size: int

    def generate(self, prompts: list[str], negative_prompts: list[str | None], seeds: list[int], *, steps: int,
                 guidance_scale: float, height: int | None = None, width: int | None = None,
                 init_images: list | None = None, strength: float | None = None,
                 weighted: bool = False, ip_adapter_images: list | None = None,
                 ip_adapter_scale: float | None = None, max_sequence_length: int | None = None) -> list[Image.Image]:
        """One RGB image per prompt; sample i depends only on (prompt i, negative i, seed i, its init or image-prompt
        image) and the call's settings.

        ``init_images``: img2img from image i with ``strength``. ``ip_adapter_images``: image i is sample i's image
        prompt through the loaded IP-Adapter, at ``ip_adapter_scale`` (text-to-image otherwise).

        ``max_sequence_length``: the text encoder's token budget, for pipelines that take one (T5, Gemma).

        ``weighted=True`` reads the emphasis syntax of :mod:`genbench.prompts.weighting` (``((cat))``, ``[x]``,
        ``(x:1.3)``) in prompts and negatives and conditions on weighted embeddings (the RD strategy); otherwise the
        text goes to the pipeline verbatim (brackets in a class name are just text).
        """
        raise NotImplementedError

    def _check(self, prompts: list[str], negative_prompts: list[str | None], seeds: list[int], steps: int,
               height: int | None, width: int | None, init_images: list | None,
               strength: float | None, ip_adapter_images: list | None = None) -> tuple[int, int]:
        """Validate a call up front (naming the argument) and return the (height, width) to generate at."""
        n = len(prompts)
        if len(negative_prompts) != n:
            raise UsageError("negative_prompts", f"{len(negative_prompts)} items", f"one per prompt ({n})")
        if len(seeds) != n:
            raise UsageError("seeds", f"{len(seeds)} items", f"one per prompt ({n})")
        if int(steps) < 1:
            raise UsageError("steps", steps, "an integer >= 1")
        h, w = height or self.default_size, width or self.default_size
        for name, v in (("height", h), ("width", w)):
            if v % 8 or v <= 0:
                raise UsageError(name, v, "a positive multiple of 8")
        if init_images is not None:
            if len(init_images) != n:
                raise UsageError("init_images", f"{len(init_images)} items", f"one per prompt ({n})")
            if strength is None or not 0.0 < float(strength) <= 1.0:
                raise UsageError("strength", strength, "a number in (0, 1] when init_images are given")
            if int(int(steps) * float(strength)) < 1:
                # img2img runs only the last steps*strength steps: zero of them is an empty (failing) run.
                raise UsageError("strength", strength, f"at least 1/steps = {1 / int(steps):.3g} with steps={steps}")
        if ip_adapter_images is not None:
            if init_images is not None:
                raise UsageError("ip_adapter_images", f"{len(ip_adapter_images)} items", "no init_images beside them")
            if len(ip_adapter_images) != n:
                raise UsageError("ip_adapter_images", f"{len(ip_adapter_images)} items", f"one per prompt ({n})")
        return h, w


class NullGenerator(ImageGenerator):
    """No model: an image per seed of uniform noise, cheap and deterministic, for measuring orchestration overhead."""

    def __init__(self) -> None:
        self.ref, self.is_tiny, self.default_size = "null", True, 64

    def generate(self, prompts, negative_prompts, seeds, *, steps, guidance_scale, height=None, width=None,
                 init_images=None, strength=None, weighted=False, ip_adapter_images=None, ip_adapter_scale=None,
                 max_sequence_length=None):
        h, w = self._check(prompts, negative_prompts, seeds, steps, height, width, init_images, strength,
                           ip_adapter_images)
        return [Image.fromarray(np.random.default_rng(int(s)).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
                for s in seeds]


class DiffusersGenerator(ImageGenerator):
    """A diffusers text-to-image pipeline (SD 1.x/2.x, SDXL, SD3, FLUX, PixArt, Sana, ...) with a lazily derived img2img
    twin. ``family``: the generator family of its reference (None: unknown, sent what the call gives);
    ``default_size``: the size to generate at when a call names none (default: the pipeline's own)."""

    def __init__(self, ref: str, pipe: Any, is_tiny: bool, device: torch.device, ip_adapter: str | None = None,
                 family: Family | None = None, default_size: int | None = None):
        self.ref, self.pipe, self.is_tiny, self.device = ref, pipe, is_tiny, device
        self.ip_adapter, self.family = ip_adapter, family
        self.default_size = int(default_size) if default_size else native_size(pipe)
        self._img2img: Any = None

    def _image_pipe(self) -> Any:
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            # from_pipe reuses the loaded modules: no second copy of the weights.
            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    @torch.inference_mode()
    def generate(self, prompts, negative_prompts, seeds, *, steps, guidance_scale, height=None, width=None,
                 init_images=None, strength=None, weighted=False, ip_adapter_images=None, ip_adapter_scale=None,
                 max_sequence_length=None):
        h, w = self._check(prompts, negative_prompts, seeds, steps, height, width, init_images, strength,
                           ip_adapter_images)
        if ip_adapter_images is not None and self.ip_adapter is None:
            raise UsageError("ip_adapter_images", f"{len(ip_adapter_images)} items",
                             f"a generator loaded with IP-Adapter weights ({self.ref} has none)")
        one_clip_unet = getattr(self.pipe, "text_encoder_2", None) is None and getattr(self.pipe, "unet", None) is not None
        if weighted and not one_clip_unet:
            # Two text encoders + pooled embeddings (SDXL), or a transformer pipeline: our weighting scheme covers
            # single-encoder SD only, and silently dropping the emphasis would change the experiment.
            raise UsageError("strategy", "weighted prompts with " + self.ref, "SD 1.x/2.x generators (one text encoder)")
        self._check_family(negative_prompts, guidance_scale)
        if not prompts:
            return []
        # One CPU generator per sample, seeded with that sample's seed: its initial noise is independent of batching.
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        # diffusers wants all-or-nothing negative prompts; "" is exactly what it uses for a missing one.
        negatives = None if all(n is None for n in negative_prompts) else [n or "" for n in negative_prompts]
        common = dict(num_inference_steps=int(steps), guidance_scale=float(guidance_scale), generator=generators,
                      output_type="pil")
        pipe = self.pipe if init_images is None else self._image_pipe()
        common.update(_pipeline_extras(pipe, self.ref, max_sequence_length))
        if weighted:
            from genbench.prompts.weighting import weighted_prompt_embeds

            tok, enc = self.pipe.tokenizer, self.pipe.text_encoder
            common["prompt_embeds"] = weighted_prompt_embeds(tok, enc, list(prompts), device=self.device)
            common["negative_prompt_embeds"] = weighted_prompt_embeds(
                tok, enc, [n or "" for n in negative_prompts], device=self.device)
        else:
            # Only when given: PixArt and Sana take "" rather than None, FLUX would take negatives as true CFG.
            common.update(prompt=list(prompts), **({"negative_prompt": negatives} if negatives is not None else {}))
        if ip_adapter_images is not None:
            self.pipe.set_ip_adapter_scale(float(1.0 if ip_adapter_scale is None else ip_adapter_scale))
            # diffusers tiles one image prompt over the whole batch (its embeddings are repeated batch-size times), so
            # samples with image prompts of their own go one call each: sample i stays independent of its batch.
            made = []
            for i, image in enumerate(ip_adapter_images):
                one = {k: (v[i : i + 1] if k in _PER_SAMPLE and v is not None else v) for k, v in common.items()}
                made += self.pipe(height=h, width=w, ip_adapter_image=image.convert("RGB"), **one).images
            return [im.convert("RGB") for im in made]
        if init_images is None:
            out = self.pipe(height=h, width=w, **common)
        else:
            # img2img keeps the init image size; resize so the output has the requested size (FLUX's img2img
            # takes the size as arguments, defaulting to its 1024 px instead).
            images = [im.convert("RGB").resize((w, h), Image.BICUBIC) for im in init_images]
            sized = {"height": h, "width": w} if "height" in inspect.signature(type(pipe).__call__).parameters else {}
            out = pipe(image=images, strength=float(strength), **sized, **common)
        return [im.convert("RGB") for im in out.images]

    def _check_family(self, negative_prompts: list[str | None], guidance_scale: float) -> None:
        """What a config check already refuses (:func:`genbench.sources.generator_family.check_family`), again at the
        pipeline: a family without negative prompts gets none, a distilled one no classifier-free guidance."""
        fam = self.family
        if fam is None:
            return
        given = [n for n in negative_prompts if n]
        if given and not fam.negatives:
            raise UsageError("negative_prompts", given[0], f"none for generator {self.ref}: {fam.describe()} and takes no "
                                                           "negative prompt")
        if fam.guidance == "distilled" and float(guidance_scale) > 1:
            raise UsageError("guidance_scale", guidance_scale, f"at most 1 for generator {self.ref}: {fam.describe()}, "
                                                               "a larger value would run classifier-free guidance")

    def __repr__(self) -> str:
        return f"DiffusersGenerator(ref={self.ref!r}, device={self.device}, size={self.default_size})"


def native_size(pipe: Any) -> int:
    """The size a pipeline generates at by default: its denoiser's sample size (UNet or transformer) times the VAE's
    downsampling; FLUX's transformer has none, its pipeline a fixed ``default_sample_size``."""
    den = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = den.config.get("sample_size") if den is not None else None
    if sample is None:
        sample = getattr(pipe, "default_sample_size", None)
    if sample is None:
        raise UsageError("generator", type(pipe).__name__, "a pipeline whose UNet or transformer has a sample_size")
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    return int(sample * pipe.vae_scale_factor)


def _pipeline_extras(pipe: Any, ref: str, max_sequence_length: int | None) -> dict[str, Any]:
    """Call arguments a pipeline gets beside the common ones: ``max_sequence_length`` when asked (refused, naming the
    pipeline, where it takes none) and :data:`_OFF` switched off where it has them."""
    params = inspect.signature(type(pipe).__call__).parameters
    out: dict[str, Any] = {name: False for name in _OFF if name in params}
    if max_sequence_length is not None:
        if "max_sequence_length" not in params:
            raise UsageError("max_sequence_length", max_sequence_length,
                             f"unset for generator {ref} ({type(pipe).__name__} takes no max_sequence_length)")
        out["max_sequence_length"] = int(max_sequence_length)
    return out


def _resolve_path(ref: str, cache_dir: str | None) -> tuple[str, bool, int | None]:
    """(path or hub id for from_pretrained, is_tiny, the built config's default size or None), by the rules of
    :func:`genbench.models.refs.resolve_generator`."""
    from genbench.models.build import built_pipeline_dir
    from genbench.models.cache import load_config

    kind, value = refs.resolve_generator(ref)
    if kind == "toy":
        from genbench.models.toy import toy_model_dir

        return str(toy_model_dir(value, cache_dir)), False, None
    if kind in ("tiny", "random"):
        return str(built_pipeline_dir(value, cache_dir)), value.startswith("tiny"), load_config(value).get("default_size")
    return value, False, None


def _set_scheduler(pipe: Any, scheduler: str) -> None:
    if scheduler == "default":
        return
    from diffusers import DPMSolverMultistepScheduler

    # Multistep DPM-Solver++ (2nd order) is deterministic given the initial noise: no per-step noise is drawn.
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")


def load_generator(ref: str, device: str | None = None, dtype: str | None = None, cache_dir: str | None = None,
                   scheduler: str | None = None, compile: bool = False,
                   ip_adapter: str | None = None) -> ImageGenerator:
    """Load a generator by reference (see module docstring). GPU default dtype is bf16, CPU always float32 unless asked.
    ``scheduler``: ``dpmsolver++`` or ``default`` (the checkpoint's own); None: the family's default, else dpmsolver++.
    ``ip_adapter``: a local IP-Adapter weights file (``.safetensors``) whose folder holds its ``image_encoder/``."""
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError("generator", ref, refs.ALLOWED_GENERATOR)
    family = family_of(ref)
    scheduler = scheduler or (family.scheduler if family else "dpmsolver++")
    if scheduler not in SCHEDULERS:
        raise UsageError("scheduler", scheduler, SCHEDULERS)
    if family is not None and family.flow_matching and scheduler != "default":
        raise UsageError("scheduler", scheduler, f"default for generator {ref} ({family.name} is a flow-matching model: "
                                                 "DPM-Solver++ for noise prediction does not apply)")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if ref == "null":
        return NullGenerator()
    path, is_tiny, default_size = _resolve_path(ref, cache_dir)
    from diffusers import AutoPipelineForText2Image

    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if not os.path.isdir(path) and cache_dir:
        kwargs["cache_dir"] = os.path.join(cache_dir, "hub")
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(path, **kwargs)
    except OSError as e:
        # Offline (HF_HUB_OFFLINE=1) and not in the local HF cache, or no such repo.
        raise UsageError("generator", ref, refs.ALLOWED_GENERATOR + f" (loading failed: {str(e).splitlines()[0]})") from e
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None  # benchmark data is filtered downstream; the checker also blacks out images
    _set_scheduler(pipe, scheduler)
    if ip_adapter:
        _load_ip_adapter(pipe, ip_adapter)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(dev)
    denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    if dev.type == "cuda":
        # SDPA (AttnProcessor2_0) is diffusers' default on torch 2; channels_last helps a UNet's convolutions.
        getattr(pipe, denoiser).to(memory_format=torch.channels_last)
    if compile:
        setattr(pipe, denoiser, torch.compile(getattr(pipe, denoiser)))
    log.info("loaded generator %s from %s on %s (%s)%s", ref, path, dev, torch_dtype,
             f" with IP-Adapter {ip_adapter}" if ip_adapter else "")
    return DiffusersGenerator(ref, pipe, is_tiny, dev, ip_adapter, family=family, default_size=default_size)


def _load_ip_adapter(pipe: Any, weights: str) -> None:
    """IP-Adapter weights from a local file, its image encoder from ``image_encoder/`` beside it (never fetched)."""
    if not weights.endswith(".safetensors") or not os.path.isfile(weights):
        raise UsageError("ra_ip_adapter", weights, "a local IP-Adapter weights file (.safetensors)")
    if not hasattr(pipe, "load_ip_adapter"):
        raise UsageError("ra_ip_adapter", weights,
                         f"a generator whose pipeline takes IP-Adapters ({type(pipe).__name__} does not)")
    folder, name = os.path.split(os.path.abspath(weights))
    pipe.load_ip_adapter(folder, subfolder="", weight_name=name, image_encoder_folder="image_encoder",
                         local_files_only=True)
