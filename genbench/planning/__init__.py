"""Planning a run without running it (``genbench plan``): collections, images, shards, what is already done, what is
missing, and what it will cost. Ray-free and model-free: nothing here imports torch, open_clip, diffusers or Ray."""

from genbench.planning.plan import Plan, make_plan
from genbench.planning.render import format_plan, plan_json

__all__ = ["Plan", "format_plan", "make_plan", "plan_json"]
