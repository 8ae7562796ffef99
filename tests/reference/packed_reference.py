"""Reference for packed sequences, computed by Hugging Face transformers.

Packs a few documents the way transformers' padding-free training does
(DataCollatorWithFlattening: one row, position_ids restarting at 0 for each
document, label -100 at each document's first token) and runs
LlamaForCausalLM on the fixture with those position_ids, no attention mask
and no cache, which makes transformers mask attention between the documents
(masking_utils.find_packed_sequence_indices; with a cache it does not).

    packed_reference.py FIXTURE_DIR OUT.safetensors ATTENTION

writes input_ids (1, T), position_ids (1, T), logits (1, T, V) and loss ().
Used by tests/test_model.cpp ("packed rows match transformers' padding-free ...").
"""
import sys

import torch
from safetensors.torch import save_file
from transformers import DataCollatorWithFlattening, LlamaForCausalLM


def main() -> None:
    fixture, out, attention = sys.argv[1], sys.argv[2], sys.argv[3]
    model = LlamaForCausalLM.from_pretrained(fixture, torch_dtype=torch.float32, attn_implementation=attention)
    model.eval()
    generator = torch.Generator().manual_seed(1234)
    vocab = model.config.vocab_size
    lengths = [7, 13, 4, 9]
    features = [{"input_ids": torch.randint(0, vocab, (n,), generator=generator).tolist()} for n in lengths]
    batch = DataCollatorWithFlattening(return_tensors="pt", return_position_ids=True)(features)
    with torch.no_grad():
        output = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                       use_cache=False)
    save_file(
        {
            "input_ids": batch["input_ids"].to(torch.int64).contiguous(),
            "position_ids": batch["position_ids"].to(torch.int64).contiguous(),
            "logits": output.logits.float().contiguous(),
            "loss": output.loss.float().reshape(()).contiguous(),
        },
        out,
    )


if __name__ == "__main__":
    main()
