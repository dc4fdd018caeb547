"""Generator families (genbench/models/families.yaml): every family's tiny build generates through `genbench generate`,
its published defaults fill the options a config leaves unset, and what a family cannot do (negative prompts,
classifier-free guidance, DPM-Solver++ on a flow-matching model, img2img, prompt weighting) is refused with exit 2."""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile

import pytest
import torch
from PIL import Image

from genbench.cli import main
from genbench.config import parse_config
from genbench.errors import UsageError
from genbench.models import refs
from genbench.models.cache import load_config
from genbench.models.families import families, family_names, family_of

FAMILIES = family_names()
DATASET = "pcam"  # two classes: --shots 1 makes two images per family


def _source(**src) -> dict:
    return {"name": "fam", "datasets": ["digits"], "clip": "tiny",
            "sources": [{"source": "generated", "shots": 2, **src}]}


def _spec(**src):
    return parse_config(_source(**src)).sources[0].spec


def _usage_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------------------------------- the table


def test_the_table_names_each_family_once_with_its_documented_defaults():
    assert FAMILIES == ("sd15", "sd21-base", "sd21", "sdxl", "sdxl-turbo", "sd35-medium", "sd35-large-turbo",
                        "flux1-schnell", "flux1-dev", "pixart-sigma", "sana")
    table = families()
    # Existing SD 2.1-base collections keep their names: its defaults are genbench's long-standing ones.
    base = table["sd21-base"]
    assert (base.steps, base.guidance_scale, base.scheduler) == (25, 7.5, "dpmsolver++")
    assert _spec(generator="stabilityai/stable-diffusion-2-1-base").expand("digits")[0].variant(0) == "sd21-base_st_s0"
    for fam in table.values():
        assert fam.source and fam.label
        if fam.guidance != "cfg":
            assert fam.guidance_scale <= 1 or fam.guidance == "embedded"
        for hub in fam.hub_ids:
            assert family_of(hub) is fam and refs.generator_slug(hub) in (fam.name, "sdxl-base")
        assert family_of(f"tiny:{fam.name}") is fam and family_of(f"random:{fam.name}") is fam
    for ref in ("tiny", "toy", "null", "random:sd21-base-nope", "org/other-model", "/models/local", None):
        assert family_of(ref) is None


def test_img2img_flags_match_diffusers_auto_pipelines():
    from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    by_class = {cls.__name__: key for key, cls in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.items()}
    for fam in families().values():
        assert (by_class[fam.pipeline] in AUTO_IMAGE2IMAGE_PIPELINES_MAPPING) == fam.img2img, fam.name


@pytest.mark.parametrize("name", FAMILIES)
def test_family_defaults_fill_unset_options_and_configs_override_them(name):
    fam = families()[name]
    for ref in fam.hub_ids + (f"tiny:{name}", f"random:{name}"):
        spec = _spec(generator=ref)
        assert (spec.steps, spec.guidance_scale, spec.scheduler, spec.max_sequence_length) == \
            (fam.steps, fam.guidance_scale, fam.scheduler, fam.max_sequence_length)
    assert _spec(generator=f"tiny:{name}", steps=3).steps == 3
    assert refs.generator_untrained(f"tiny:{name}") and not refs.generator_untrained(fam.hub_ids[0])


def _native_size(config: dict) -> int:
    """Sample size of the denoiser times the VAE's downsampling (FLUX: the pipeline's fixed 128 latents)."""
    models = config["models"]
    den = models.get("unet") or models["transformer"]
    vae = models["vae"]
    blocks = vae.get("block_out_channels") or vae["encoder_block_out_channels"]
    return config.get("default_size") or den.get("sample_size", 128) * 2 ** (len(blocks) - 1)


# Published parameter counts of the real-size builds (denoiser, VAE, text encoders): diffusers / transformers counts
# of the released checkpoints' configs.
PUBLISHED = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {"unet": 2_567_463_684, "text_encoder_2": 694_659_840},
    "sd35-medium": {"transformer": 2_243_171_520, "vae": 83_819_683, "text_encoder_3": 4_762_310_656},
    "sd35-large-turbo": {"transformer": 8_056_627_520},
    "flux1-dev": {"transformer": 11_901_408_320, "text_encoder_2": 4_762_310_656},
    "flux1-schnell": {"transformer": 11_891_178_560},
    "pixart-sigma": {"transformer": 610_856_096},
    "sana": {"transformer": 1_604_462_752, "text_encoder": 2_614_341_888},
}


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_config_builds_the_published_architecture(name):
    """Each family's real-size config (built on 'meta': no memory) is the published architecture at the published
    resolution, and its tiny config uses the same classes and pipeline."""
    from genbench.models.build_families import _model

    fam = families()[name]
    real, tiny = load_config(name), load_config(f"tiny-{name}")
    assert real["pipeline"] == tiny["pipeline"] == fam.pipeline
    if "models" not in real:  # sd21-base: the first shipped real-size config (tests/test_models.py checks it)
        assert name == "sd21-base"
    else:
        assert _native_size(real) == fam.resolution
        assert {k: v["class"] for k, v in real["models"].items()} == {k: v["class"] for k, v in tiny["models"].items()}
        with torch.device("meta"):
            counts = {k: sum(p.numel() for p in _model(v).parameters()) for k, v in real["models"].items()}
        assert counts.items() >= PUBLISHED.get(name, {}).items(), counts
    assert tiny["scheduler"]["class"] == (real["scheduler"].get("class") or "DPMSolverMultistepScheduler")


# ---------------------------------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def generated(ray_local, tmp_path_factory):
    """One `genbench generate` run: every family's tiny build, two images each (two classes x one shot), 2 steps."""
    import contextlib

    out = str(tmp_path_factory.mktemp("families"))
    argv = ["--no-progress", "generate", "--dataset", DATASET, "--shots", "1", "--steps", "2", "--clip", "none",
            "--out", out, "--workers", "1", "--shard-size", "10"]
    for name in FAMILIES:
        argv += ["--generator", f"tiny:{name}"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return {os.path.basename(line).split("_")[0]: line for line in printed.getvalue().split()}


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_generates_two_images_with_its_tiny_build(generated, name):
    collection = generated[f"tiny-{name}"]
    samples = []
    for path in sorted(glob.glob(os.path.join(collection, "**", "*.tar"), recursive=True)):
        with tarfile.open(path) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        for key in sorted({n.rsplit(".", 1)[0] for n in files}):
            meta = json.loads(files[key + ".json"])
            image = Image.open(io.BytesIO(files[key + ".jpg"]))
            samples.append((meta, image.convert("RGB")))
    assert len(samples) == 2
    for meta, image in samples:
        assert meta["generator"] == f"tiny:{name}" and meta["negative_prompt"] is None
        assert image.size == (32, 32)  # the tiny build's own size
    manifest = json.load(open(os.path.join(collection, "manifest.json")))
    assert f"generator tiny:{name}" in json.dumps(manifest)  # untrained weights are named in what it made


# ---------------------------------------------------------------------------------------------------- refusals


NO_NEGATIVES = [n for n in FAMILIES if not families()[n].negatives]


@pytest.mark.parametrize("name", NO_NEGATIVES)
@pytest.mark.parametrize("strategy", ["np", "np+rd"])
def test_negative_prompts_are_refused_where_the_family_ignores_them(capsys, tmp_path, name, strategy):
    gen = families()[name].hub_ids[0]
    err = _usage_error(capsys, ["generate", "--dataset", "digits", "--generator", gen, "--strategy", strategy,
                                "--shots", "1", "--clip", "none", "--out", str(tmp_path / "o")])
    assert "sources[0].strategies" in err and repr(strategy) in err and gen in err and "negative" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", [n for n in FAMILIES if families()[n].guidance == "distilled"])
def test_classifier_free_guidance_is_refused_for_distilled_families(capsys, tmp_path, name):
    err = _usage_error(capsys, ["generate", "--dataset", "digits", "--generator", f"tiny:{name}", "--guidance-scale",
                                "7.5", "--shots", "1", "--clip", "none", "--out", str(tmp_path / "o")])
    assert "sources[0].guidance_scale" in err and "7.5" in err and "classifier-free guidance" in err
    assert _spec(generator=f"tiny:{name}", guidance_scale=1.0).guidance_scale == 1.0


@pytest.mark.parametrize("name", [n for n in FAMILIES if families()[n].flow_matching])
def test_dpmsolver_is_refused_for_flow_matching_families(name):
    with pytest.raises(UsageError) as err:
        _spec(generator=f"tiny:{name}", scheduler="dpmsolver++")
    assert err.value.field == "sources[0].scheduler" and err.value.value == "dpmsolver++"
    assert f"tiny:{name}" in str(err.value)


@pytest.mark.parametrize("src, field", [
    (dict(generator="tiny:sdxl", strategies=["rd"]), "sources[0].strategies"),  # weighting: single-CLIP SD only
    (dict(generator="tiny:pixart-sigma", strategies=["tig"]), "sources[0].strategies"),  # no img2img pipeline
    (dict(generator="tiny:sana", strategies=["ra"]), "sources[0].strategies"),
    (dict(generator="tiny:sdxl", max_sequence_length=77), "sources[0].max_sequence_length"),
    (dict(generator="tiny:flux1-dev", adapt={"method": "ti"}), "sources[0].adapt"),
])
def test_what_a_family_cannot_do_is_refused_at_config_time(src, field):
    with pytest.raises(UsageError) as err:
        _spec(**src)
    assert err.value.field == field and src["generator"] in str(err.value)


def test_what_a_family_can_do_is_accepted():
    assert _spec(generator="tiny:sdxl", strategies=["np", "rd"], emphasis="literal").uses("np")
    assert _spec(generator="tiny:sana", strategies=["np"]).guidance_scale == 4.5
    assert _spec(generator="tiny:flux1-dev", guidance_scale=7.0, max_sequence_length=128).max_sequence_length == 128
    assert _spec(generator="tiny:sd15", strategies=["np+rd", "tig"]).scheduler == "default"
    # No family: today's defaults and no checks.
    spec = _spec(generator="tiny", strategies=["np"])
    assert (spec.steps, spec.guidance_scale, spec.scheduler, spec.max_sequence_length) == (25, 7.5, "dpmsolver++", None)


def test_the_generator_itself_never_sends_negatives_or_guidance_to_a_distilled_family(tmp_path):
    from genbench.models.generator import load_generator

    gen = load_generator("tiny:flux1-schnell", device="cpu")
    with pytest.raises(UsageError) as err:
        gen.generate(["a cat"], ["blurry"], [0], steps=1, guidance_scale=0.0)
    assert err.value.field == "negative_prompts"
    with pytest.raises(UsageError) as err:
        gen.generate(["a cat"], [None], [0], steps=1, guidance_scale=3.0)
    assert err.value.field == "guidance_scale"
    with pytest.raises(UsageError) as err:
        load_generator("tiny:flux1-schnell", device="cpu", scheduler="dpmsolver++")
    assert err.value.field == "scheduler"
    one = gen.generate(["a cat"], [None], [0], steps=1, guidance_scale=0.0, max_sequence_length=64)[0]
    assert one.size == (32, 32)
    # img2img (TIG, RA) at the requested size: FLUX's img2img pipeline would otherwise make its default 1024 px (256 px
    # for the tiny build's VAE).
    again = gen.generate(["a cat"], [None], [0], steps=2, guidance_scale=0.0, init_images=[one.resize((48, 48))],
                         strength=0.5)[0]
    assert again.size == (32, 32)
    with pytest.raises(UsageError) as err:
        load_generator("tiny:sd15", device="cpu").generate(["a"], [None], [0], steps=1, guidance_scale=1.0,
                                                            max_sequence_length=64)
    assert err.value.field == "max_sequence_length"


def test_unknown_tiny_family_is_refused():
    with pytest.raises(UsageError) as err:
        refs.resolve_generator("tiny:sd99")
    assert "tiny:<family>" in str(err.value) and "flux1-schnell" in str(err.value)
