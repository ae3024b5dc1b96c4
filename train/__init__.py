"""LoRA training in PyTorch (installed as ijt_local.train): transformers Trainer + peft, loss on responses.

    base.py      load_base_model(spec, device, dtype) -> (model, tokenizer, base_info); base_folder(spec)
    data.py      rows -> token ids with labels on the assistant turns only (tokenize_file)
    collate.py   pad each batch to its longest example
    loss.py      cross-entropy through the output head on labelled positions only, in chunks
    trainer.py   the Trainer subclass using that loss; epoch-seeded length-grouped sampling
    lora.py      TrainConfig, train_lora(): the whole run: prepare_run, lora_model, make_trainer, run_manifest
    cli.py       `ijt-local train`

No module here imports torch at import time except loss.py, trainer.py and callbacks.py, which only the
training run itself loads.
"""
