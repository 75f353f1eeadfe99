"""GLiClass (the `gliclass` package's uni-encoder zero-shot classifier) as the package runs it,
on packed batches: its settings, the label prompt and its tokenisation, and which tokens stand
for each label. The head itself (pooling, projections, scorer) is GliclassHead in heads.py;
this module stays torch-free so that spec.py can read a folder's settings.

- Prompt: `<<LABEL>>label` for each label, then `<<SEP>>`, joined with no spaces, after the
  text (`prompt_first` off, the package's default) or before it; the whole string is tokenised
  at once, as the package's UniEncoderZeroShotClassificationPipeline does, so the tokens are
  the package's tokens.
- Text: the first token of the sequence ([CLS]), the package's `pooling_strategy` "first".
- Labels: each label's `<<LABEL>>` token (or the token after it, with `embed_class_token`
  off), or with `class_token_pooling` "average" the mean of the tokens from its marker up to
  the next marker (the last label's run goes on to the end of the sequence, as the package
  counts it).
- Scores: one logit per label (scorer "simple", "weighted-dot" or "mlp"); softmax over the
  labels for single-label classification, a sigmoid per label for multi-label (engine.tasks).

Long texts differ from the package on purpose. The package cuts the whole string at its
max_length (1024 by default), which with the text first drops the labels after a long text.
Here only the text is ever cut, and at the backbone's maximum length: the label prompt is
always whole. A sequence that fits is exactly the package's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputTooLong, InvalidInput
from .tokenize import LengthGuard, Tokenized, load_tokenizer, plain_copy

ARCHITECTURE = "GLiClass"  # model_type of the config.json that the package's save_pretrained writes
LABEL_TOKEN = "<<LABEL>>"  # the pipeline's markers (fixed in the package, not in the config)
SEP_TOKEN = "<<SEP>>"
SCORERS = ("simple", "weighted-dot", "mlp")
LABEL_POOLINGS = ("first", "average")


@dataclass(frozen=True)
class GliclassSettings:
    """What a uni-encoder GLiClass needs from its config.json (the package's defaults where a
    key is absent)."""

    class_token_index: int  # the token id of `<<LABEL>>`
    prompt_first: bool  # labels before the text (else after it)
    embed_class_token: bool  # a label is read at its marker (else at the token after it)
    class_token_pooling: str  # "first": one token per label; "average": the label's run of tokens
    scorer: str  # a key of SCORERS
    use_lstm: bool  # a bidirectional LSTM over the sequence before the text is pooled
    normalize_features: bool  # unit text and label vectors, logits times logit_scale
    projector_activation: str  # between the two linears of each projector (a key of heads.ACTIVATIONS)


def is_gliclass(config: dict[str, Any]) -> bool:
    return config.get("model_type") == ARCHITECTURE or "GLiClassModel" in (config.get("architectures") or ())


def read_settings(config: dict[str, Any]) -> GliclassSettings:
    """GLiClass settings from its config.json; ValueError names any variant this engine does not
    run (only the uni-encoder with its text read at the first token is implemented)."""
    architecture = config.get("architecture_type", "uni-encoder")
    if architecture != "uni-encoder":
        raise ValueError(f"GLiClass architecture_type {architecture!r} is not supported; only 'uni-encoder' "
                         f"(the package's default: labels and text in one sequence)")
    refused = {"use_calibrator": "GLiClass models with a calibrator are not supported",
               "multimodal": "multimodal GLiClass models are not supported",
               "squeeze_layers": "GLiClass models that squeeze encoder layers are not supported",
               "use_segment_embeddings": "GLiClass segment embeddings are not supported",
               "extract_text_features": "GLiClass models that extract text features are not supported"}
    for key, reason in refused.items():
        if config.get(key):
            raise ValueError(f"{reason}; only the plain uni-encoder is")
    if config.get("encoder_layer_id", -1) != -1:
        raise ValueError("GLiClass models that read an inner encoder layer (encoder_layer_id) are not supported")
    pooling = config.get("pooling_strategy", "first")
    if pooling != "first":
        # the package pools these over the padded batch (no mask), so its own scores change with the batch
        raise ValueError(f"GLiClass pooling_strategy {pooling!r} is not supported; only 'first' (the package's "
                         f"default)")
    scorer = config.get("scorer_type", "simple")
    if scorer not in SCORERS:
        raise ValueError(f"GLiClass scorer_type {scorer!r} is not supported; only {SCORERS}")
    label_pooling = config.get("class_token_pooling", "first")
    if label_pooling not in LABEL_POOLINGS:
        raise ValueError(f"GLiClass class_token_pooling {label_pooling!r} is not supported; only {LABEL_POOLINGS}")
    if config.get("class_token_index", -1) < 0:
        raise ValueError("config.json has no class_token_index (a model saved by the gliclass package has one)")
    return GliclassSettings(class_token_index=config["class_token_index"],
                            prompt_first=bool(config.get("prompt_first", False)),
                            embed_class_token=bool(config.get("embed_class_token", True)),
                            class_token_pooling=label_pooling, scorer=scorer, use_lstm=bool(config.get("use_lstm")),
                            normalize_features=bool(config.get("normalize_features")),
                            projector_activation=config.get("projector_hidden_act", "gelu"))


@dataclass(frozen=True, slots=True)
class Prompted:
    """One text after (or before) its label prompt (a `Tokenized.extra`): the tokens each label's
    vector is the mean of, as [start, stop) positions in the sequence."""

    labels: list[tuple[int, int]]


class GliclassTokenizer:
    """Texts and labels -> one sequence per text (see the module doc)."""

    def __init__(self, folder: Path, settings: GliclassSettings, max_length: int):
        self.settings = settings
        self.max_length = max_length
        self._tokenizer = plain_copy(load_tokenizer(folder))  # cut by hand: only the text may lose tokens
        self.cut = LengthGuard(self._tokenizer, max_length)
        if self._tokenizer.token_to_id(LABEL_TOKEN) != settings.class_token_index:
            raise ValueError(f"the tokenizer's {LABEL_TOKEN} is not the config's class_token_index "
                             f"{settings.class_token_index}")

    def encode(self, texts: list[str], labels: list[str], truncate: bool = True) -> list[Tokenized]:
        for label in labels:
            if LABEL_TOKEN in label or SEP_TOKEN in label:
                raise InvalidInput(f"labels may not contain {LABEL_TOKEN!r} or {SEP_TOKEN!r}")
        prompt = "".join(LABEL_TOKEN + label for label in labels) + SEP_TOKEN
        items = []
        for position, text in enumerate(texts):
            text = self.cut(text)
            first = len(prompt) if self.settings.prompt_first else 0  # where the text starts in the string
            joined = prompt + text if self.settings.prompt_first else text + prompt
            encoding = self._tokenizer.encode(joined)
            ids = encoding.ids
            in_text = [not special and first <= start < first + len(text)
                       for (start, _), special in zip(encoding.offsets, encoding.special_tokens_mask)]
            over = len(ids) - self.max_length
            if over > 0:
                if not truncate:
                    raise InputTooLong(f"input {position} is longer than the model's maximum of {self.max_length} "
                                       f"tokens with its labels, and truncate is false")
                text_tokens = [p for p, inside in enumerate(in_text) if inside]
                if len(text_tokens) <= over:
                    raise InvalidInput(f"these {len(labels)} labels take the model's whole length of "
                                       f"{self.max_length} tokens; send fewer or shorter labels")
                dropped = set(text_tokens[-over:])  # the end of the text, never the prompt
                kept = [p for p in range(len(ids)) if p not in dropped]
                ids, in_text = [ids[p] for p in kept], [in_text[p] for p in kept]
            type_ids = [0] * len(ids)
            markers = [p for p, token in enumerate(ids) if token == self.settings.class_token_index and not in_text[p]]
            items.append(Tokenized(ids, type_ids, extra=Prompted(self._label_runs(markers, len(ids)))))
        return items

    def _label_runs(self, markers: list[int], length: int) -> list[tuple[int, int]]:
        """Each label's tokens: its marker (or the token after it), or with "average" its run up
        to the next marker (the last one's to the end of the sequence), as the package reads them."""
        skip = 0 if self.settings.embed_class_token else 1
        if self.settings.class_token_pooling == "first":
            return [(m + skip, m + skip + 1) for m in markers]
        return [(m + skip, stop) for m, stop in zip(markers, markers[1:] + [length])]


# checkpoint names (the package's state dict) -> the backbone's own names / GliclassHead's (heads.py)
BACKBONE_PREFIX = "model.encoder_model."
HEAD_NAMES = {"model.text_projector.": "text.", "model.classes_projector.": "label.", "model.scorer.": "scorer.",
              "model.lstm.lstm.": "lstm.", "model.logit_scale": "logit_scale"}
