"""The transformers side of the model parity tests: small random Llama models and their logits."""

from __future__ import annotations

from typing import Any


def random_llama(torch: Any, transformers: Any, seed: int, **config: Any) -> Any:
    """A 2-layer ``LlamaForCausalLM`` (vocab 300, width 64, 4 query / 2 key-value heads) from
    ``seed``, with ``config`` overriding ``LlamaConfig`` fields, and norm weights moved off 1 so
    they are tested too (HF initialises them to 1)."""
    torch.manual_seed(seed)
    fields = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  rope_theta=1000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  bos_token_id=256, eos_token_id=256, pad_token_id=256)  # fmt: skip
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**fields, **config})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def hf_logits(model: Any, tokens: Any, attention_mask: Any = None, position_ids: Any = None):
    """fp32 logits ``[B, T, V]`` of a transformers causal LM as numpy."""
    import torch

    kwargs = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(attention_mask, dtype=torch.long)
    if position_ids is not None:
        kwargs["position_ids"] = torch.tensor(position_ids, dtype=torch.long)
    with torch.no_grad():
        return model(torch.tensor(tokens, dtype=torch.long), **kwargs).logits.float().numpy()


# The Hugging Face side of the tokenizer tests: byte-level BPE trained and saved by `tokenizers` /
# transformers the way Llama 3 and GPT-2 publish it (written out here, not taken from deepdive).
LLAMA3_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>")  # fmt: skip


def train_byte_level_bpe(
    texts: list[str], vocab_size: int, special_tokens: tuple[str, ...], style: str = "llama3"
) -> Any:
    """A ``tokenizers.Tokenizer`` trained on ``texts``: ``style="llama3"`` is Llama 3's layout
    (Split regex + ByteLevel, ``ignore_merges``, a TemplateProcessing that puts the first special
    token before a text); ``"gpt2"`` is GPT-2's (ByteLevel with its own regex, no BOS). The
    special tokens are added after training, so their ids follow the byte-level tokens'."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    llama3 = style == "llama3"
    tok = Tokenizer(models.BPE(ignore_merges=llama3))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not llama3)
    if llama3:
        split = pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(list(special_tokens))
    if llama3:
        bos = special_tokens[0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return tok


def save_hf_tokenizer(tok: Any, folder: Any, bos: str | None, eos: str) -> Any:
    """``tok`` saved as a checkpoint folder holds it (tokenizer.json + tokenizer_config.json, by
    transformers' ``save_pretrained``); returns the transformers tokenizer read back from it."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)
    fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)
