"""Instruction finetuning (chapter 7): next-token loss on templated records, then test responses."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, NonNegativeInt, PositiveInt
from torch import nn

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import ConfigError, DataError
from llmbricks.core.interfaces import PromptTemplate, Trainer
from llmbricks.core.store.atomic import write_atomic
from llmbricks.core.tasks.generation import generate
from llmbricks.core.tasks.instruction import (
    InstructionBatches,
    SplitOrder,
    encode_example,
    encode_prompt,
    end_token,
    end_token_id,
    generate_responses,
    instruction_loss,
    mean_loss,
    prompt_template,
    split_records,
)
from llmbricks.core.train.loop import TrainTask, move_batch
from llmbricks.core.train.session import Session
from llmbricks.core.train.splits import SplitFractions

#: The test split's records with the model's answers, as the book's
#: ``instruction-data-with-response.json``.
RESPONSES_FILE = "responses.json"


class InstructParams(ParamsModel):
    allowed_max_length: PositiveInt | None = Field(
        None, le=1 << 24, description="truncate inputs and targets to this many tokens; null = "
        "model.context_length (never more)")
    mask_prompt: bool = Field(False, description="ignore the prompt's targets too, so only the "
                              "response and its end-of-text are learned (the book's exercise 7.2)")
    split: SplitFractions = Field(
        (0.85, 0.10, 0.05), description="train/val/test fractions of the records, cut in file "
        "order; the test split is the rest when they sum to 1 (1,100 records: 935/110/55)")
    shuffle_records: bool = Field(False, description="shuffle the records (seeded by `seed`) "
                                  "before splitting; false = split in file order, as the book")
    split_order: SplitOrder = Field("train-val-test", description="the order the splits are "
                                    "sliced in; train-test-val is the book's (with split "
                                    "[0.85, 0.05, 0.1])")
    response_tokens: NonNegativeInt = Field(256, le=1 << 24, description="new tokens per test response "
                                            "(greedy, stops at end-of-text); 0 = no responses")


class InstructTrainer(Trainer):
    """Instruction finetuning (chapter 7): prompt templates, padded and masked batches, responses.

    Reads instruction records from ``data.source``, formats them with ``data.prompt`` (when null:
    the model's own chat template if its tokenizer has one, else alpaca) and cuts them in file
    order by ``split`` (train/val/test; 1,100 records at the default 0.85/0.10/0.05: 935 / 110 /
    55). Each example ends with the template's end token (``<|eot_id|>``...), else the
    tokenizer's eos, else ``<|endoftext|>``; batches are padded with it and their padding
    targets ignored, as the book's ``custom_collate_fn``. After training it writes ``results.json`` (test loss) and
    ``responses.json``: each test record with the model's greedy ``model_response``.
    The tokenizer must have ``<|endoftext|>`` (e.g. tiktoken's gpt2).
    """

    name = "instruct"
    Params = InstructParams
    params: InstructParams

    def fit(self, session: Session) -> dict[str, Any]:
        config, dist, device = session.config, session.dist, session.device
        train_cfg, data_cfg, params = config.train, config.data, self.params
        context = config.model.context_length
        max_length = self.max_length(context)
        tokenizer = session.tokenizer
        # data.prompt, else the model's own chat template, else alpaca; the end token is the
        # template's (<|eot_id|>), else the tokenizer's eos_token, else <|endoftext|>.
        template: PromptTemplate = prompt_template(config, session.registry, tokenizer)
        eot = end_token_id(tokenizer, template)
        train_records, val_records, test_records = self.split(session)

        def batches(split: list[dict[str, Any]], size: int, **options: Any) -> InstructionBatches:
            examples = [encode_example(tokenizer, template, record, end_id=eot) for record in split]
            return InstructionBatches(examples, size, eot, allowed_max_length=max_length,
                                      mask_prompt=params.mask_prompt, seed=config.data_seed, **options)

        train_batches = batches(train_records, train_cfg.batch_size, shuffle=data_cfg.shuffle,
                                drop_last=data_cfg.drop_last, rank=dist.rank,
                                world_size=dist.world_size)
        # Rank 0 evaluates alone, on batches of the global size: the same numbers as one process.
        global_batch = train_cfg.batch_size * dist.world_size
        train_eval = batches(train_records, global_batch, drop_last=False).spread(train_cfg.eval_batches)
        val_eval = batches(val_records, global_batch, drop_last=False).spread(
            train_cfg.eval_batches) if val_records else []
        model, _ = session.build_model("all")

        def evaluate(net: nn.Module) -> dict[str, float | None]:
            return {"train_loss": mean_loss(net, train_eval, device),
                    "val_loss": mean_loss(net, val_eval, device)}

        # Samples: sample_prompt is an instruction; unset, the first validation record's.
        sample_record = ({"instruction": train_cfg.sample_prompt, "input": "", "output": ""}
                         if train_cfg.sample_prompt else (val_records or train_records)[0])
        sample_prompt = template.prompt(sample_record)
        sample_ids = [encode_prompt(tokenizer, template, sample_record)]
        stop = end_token(tokenizer, template)  # eot's name

        def sample(net: nn.Module) -> tuple[str, str]:
            text = generate(net, tokenizer, sample_prompt, max_new_tokens=train_cfg.sample_tokens,
                            max_context=context, stop=stop, prompt_ids=sample_ids)
            return sample_prompt, text

        def finish(net: nn.Module) -> dict[str, Any]:
            test = batches(test_records, global_batch, drop_last=False).all() if test_records else []
            results: dict[str, Any] = {"test_loss": mean_loss(net, test, device),
                                       "test_records": len(test_records)}
            if params.response_tokens:
                results.update(write_responses(net, session, template, test_records,
                                               params.response_tokens, eot))
            return results

        task = TrainTask(
            model=model,
            train_batches=train_batches.epoch,
            batches_per_epoch=len(train_batches),
            tokens_per_batch=max(1, round(train_cfg.batch_size * train_batches.mean_tokens())),
            loss=instruction_loss,
            evaluate=evaluate,
            sample=sample,
            to_device=move_batch,
            finish=finish,
        )
        return session.fit(task)

    def max_length(self, context: int) -> int:
        """``allowed_max_length``, or the context; never past the context."""
        max_length = self.params.allowed_max_length or context
        if max_length > context:
            raise ConfigError(f"train.trainer.allowed_max_length: {max_length} is above "
                              f"model.context_length {context}; lower it or leave it null")
        return max_length

    def split(self, session: Session) -> tuple[list[dict[str, Any]], ...]:
        """The source's instruction records, cut into train, val and test."""
        config, params = session.config, self.params
        source = session.registry.build("datasource", config.data.source)
        if source.records != "instruction":
            raise ConfigError(f"data.source: '{source.name}' yields {source.records} records, not "
                              "instruction records; use instruction_data or instruction_json")
        train, val, test = split_records(list(source), params.split, shuffle=params.shuffle_records,
                                         seed=config.data_seed, order=params.split_order)
        if not train:
            raise DataError(f"{source.describe()}: no training records")
        return train, val, test


def write_responses(net: nn.Module, session: Session, template: PromptTemplate,
                    records: list[dict[str, Any]], max_new_tokens: int,
                    stop_token: int | None = None) -> dict[str, Any]:
    """Each test record with the model's greedy ``model_response``, in ``RUN/responses.json``."""
    answers = generate_responses(net, session.tokenizer, template, records,
                                 max_new_tokens=max_new_tokens,
                                 max_context=session.config.model.context_length,
                                 stop_token=stop_token)
    entries = [{**record, "model_response": answer}
               for record, answer in zip(records, answers, strict=True)]
    write_atomic(session.run.directory / RESPONSES_FILE,
                 json.dumps(entries, indent=4, ensure_ascii=False) + "\n")
    return {"responses": RESPONSES_FILE, "responses_count": len(entries)}
