"""CE, category enhancement (paper Section 2.3): a T5 word-to-sentence model turns a class name into a sentence."""

from __future__ import annotations

import logging
import re

from genbench.errors import UsageError

log = logging.getLogger(__name__)

CE_DEFAULT_REF = "mrm8488/t5-base-finetuned-common_gen"


def _mentions(text: str, class_name: str) -> bool:
    """Whether ``text`` contains ``class_name`` as whole words, case-insensitive ("3" is not in "3500")."""
    return re.search(rf"(?<!\w){re.escape(class_name)}(?!\w)", text, flags=re.IGNORECASE) is not None


class CategoryEnhancer:
    """CE: a T5 word-to-sentence model that turns a category name into a sentence about it.

    Load once per worker and reuse for every prompt. ``ref`` is ``"tiny"`` (the offline test model of
    :mod:`genbench.models.t5_tiny`, built under ``cache_dir``), a local directory, or a hub id already in the local
    Hugging Face cache; all load through ``from_pretrained``. Sampling is top-k (k=50, temperature 1) with a CPU
    ``torch.Generator`` seeded by the caller, so a seed gives the same sentence in every process.
    """

    def __init__(self, ref: str = CE_DEFAULT_REF, device: str | None = None, cache_dir: str | None = None,
                 max_new_tokens: int = 32, top_k: int = 50):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        path = ref
        if ref == "tiny":
            from genbench.models.t5_tiny import tiny_t5_dir

            path = str(tiny_t5_dir(cache_dir))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSeq2SeqLM.from_pretrained(path)
        except OSError as exc:
            raise UsageError(
                "enhancer.ref", ref, "'tiny', a local model directory, or a hub id present in the local cache"
            ) from exc
        from genbench.models.device import resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.ref = ref
        self.max_new_tokens = int(max_new_tokens)
        self.top_k = int(top_k)
        log.info("loaded CE model %s from %s on %s", ref, path, self.device)

    def sentences(self, class_name: str, seed: int, prepend_class: bool = False) -> str:
        """One sentence for ``class_name``, deterministic for ``seed``.

        The model's sentence may drift away from the class (the paper reports that drift as a finding of CE), so it
        is used as it is. With ``prepend_class``, a sentence that does not contain the class name (whole words,
        case-insensitive) becomes ``"<class name>, <sentence>"``; an empty sentence is the class name.
        """
        import torch

        words = " ".join(class_name.replace("_", " ").split())
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        ids = self._sample(words, gen)
        text = " ".join(self.tokenizer.decode(ids, skip_special_tokens=True).split())
        if not text:
            return class_name
        if prepend_class and not _mentions(text, class_name):
            text = f"{class_name}, {text}"
        return text

    def _sample(self, words: str, gen) -> list[int]:
        import torch

        cfg = self.model.config
        eos = cfg.eos_token_id
        with torch.no_grad():
            enc = self.tokenizer(words, return_tensors="pt").to(self.device)
            encoder_outputs = self.model.get_encoder()(**enc)
            step_ids = torch.tensor([[cfg.decoder_start_token_id]], device=self.device)
            past, out = None, []
            for i in range(self.max_new_tokens):
                res = self.model(encoder_outputs=encoder_outputs, attention_mask=enc["attention_mask"],
                                 decoder_input_ids=step_ids, past_key_values=past, use_cache=True)
                past = res.past_key_values
                # Sample on the CPU so a seed gives the same draw on any device.
                logits = res.logits[0, -1].float().cpu()
                if i == 0 and eos is not None:
                    logits[eos] = float("-inf")  # at least one word
                top = torch.topk(logits, min(self.top_k, logits.numel()))
                choice = top.indices[torch.multinomial(torch.softmax(top.values, -1), 1, generator=gen)].item()
                if choice == eos:
                    break
                out.append(choice)
                step_ids = torch.tensor([[choice]], device=self.device)
        return out
