"""The classification head's pooling, checked by hand on a tiny hidden tensor."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.component import Dims
from llmbricks.core.errors import ConfigError
from llmbricks.plugins.heads.classification import ClassificationHead

DIMS = Dims(vocab_size=10, context_length=8, emb_dim=2, n_heads=1, n_kv_heads=1, n_layers=1,
            dropout=0.0)
# Two rows of three positions, D = 2; row 1 has 2 real tokens and one pad position.
HIDDEN = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                       [[7.0, 8.0], [9.0, 10.0], [100.0, 200.0]]])
LENGTHS = torch.tensor([3, 2])


def head(pooling: str) -> ClassificationHead:
    """An identity projection (+ bias 0.5), so the logits are the pooled vector + 0.5."""
    module = ClassificationHead(ClassificationHead.Params(pooling=pooling), DIMS)
    with torch.no_grad():
        module.proj.weight.copy_(torch.eye(2))
        module.proj.bias.fill_(0.5)
    return module


def test_last_takes_the_last_position_even_when_it_is_padding():
    out = head("last")(HIDDEN, LENGTHS)
    assert torch.equal(out, torch.tensor([[5.5, 6.5], [100.5, 200.5]]))


def test_last_nonpad_takes_each_rows_last_real_token():
    out = head("last_nonpad")(HIDDEN, LENGTHS)
    assert torch.equal(out, torch.tensor([[5.5, 6.5], [9.5, 10.5]]))


def test_mean_averages_the_real_tokens_only():
    out = head("mean")(HIDDEN, LENGTHS)
    # row 0: ((1+3+5)/3, (2+4+6)/3) = (3, 4); row 1: ((7+9)/2, (8+10)/2) = (8, 9)
    assert torch.allclose(out, torch.tensor([[3.5, 4.5], [8.5, 9.5]]))


@pytest.mark.parametrize("pooling,expected", [
    ("last", [[5.5, 6.5], [100.5, 200.5]]),
    ("last_nonpad", [[5.5, 6.5], [100.5, 200.5]]),
    ("mean", [[3.5, 4.5], [39.166667, 73.166667]]),  # (7+9+100)/3 + 0.5
])
def test_without_lengths_every_position_is_real(pooling, expected):
    assert torch.allclose(head(pooling)(HIDDEN), torch.tensor(expected))


def test_shape_bias_and_defaults():
    module = ClassificationHead(ClassificationHead.Params(num_classes=3), DIMS)
    assert module.per_token is False and module.params.pooling == "last"
    assert module(torch.randn(4, 5, 2)).shape == (4, 3)
    assert module.proj.bias is not None  # the book's nn.Linear(768, 2) has a bias


def test_num_classes_below_two_is_refused_at_config_load():
    from llmbricks.core.config import load_config

    with pytest.raises(ConfigError, match="num_classes"):
        load_config({"model": {"head": {"name": "classification", "num_classes": 1}}})


def test_a_model_passes_lengths_to_the_head():
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config

    config = load_config({"model": {"vocab_size": 20, "context_length": 8, "emb_dim": 8,
                                    "n_layers": 1, "n_heads": 2, "dropout": 0.0,
                                    "head": {"name": "classification", "pooling": "last_nonpad"}}})
    torch.manual_seed(0)
    model = build_model(config).eval()
    ids = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    with torch.no_grad():
        padded = model(ids, lengths=torch.tensor([3, 5]))
        short = model(ids[:1, :3])
    assert padded.shape == (2, 2)
    assert torch.allclose(padded[0], short[0], atol=1e-6)  # the padding changed nothing
