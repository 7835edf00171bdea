"""``core.tasks.inspection``: attention weights, positional panels, embeddings PCA, the PNGs.

The weights are checked against the book's formula written out here, against what each layer
outputs (``out_proj(weights @ v)``), and fused ``sdpa`` against reference ``mha`` on the same
parameters (GQA, ALiBi, RoPE, T5, a sliding window, a softcap).
"""

from __future__ import annotations

import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import llmbricks
from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import ComponentError, InputError
from llmbricks.core.interfaces import Attention, PositionalEncoding
from llmbricks.core.registry import Registry
from llmbricks.core.tasks.inspection import (
    attention_weights,
    describe_positional,
    inspect_attention,
    inspect_embeddings,
    inspect_positional,
    parse_indices,
    pca_2d,
    plot_attention,
    positional_views,
)
from llmbricks.core.tasks.inspection.figure import token_label
from tests.e2e.bad_run_fixtures import make_finished_run

REGISTRY = Registry()
SHAPE = {"vocab_size": 50, "context_length": 12, "emb_dim": 24, "n_layers": 2, "n_heads": 4,
         "dropout": 0.0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def model(attention: str = "mha", positional: str = "absolute", registry: Registry = REGISTRY,
          **params: object):
    config = load_config({"model": {**SHAPE, "positional": positional,
                                    "attention": {"name": attention, **params}}},
                         registry=registry)
    torch.manual_seed(0)
    return build_model(config, registry).eval()


def layer_inputs_and_outputs(net) -> list[tuple[torch.Tensor, torch.Tensor, object]]:
    """(x, output, module) of every attention layer in one forward pass."""
    seen = []
    handles = [m.register_forward_hook(lambda mod, args, out: seen.append((args[0], out, mod)))
               for m in net.modules() if isinstance(m, Attention)]
    try:
        with torch.no_grad():
            net(torch.arange(10).reshape(1, -1) % SHAPE["vocab_size"])
    finally:
        for h in handles:
            h.remove()
    return seen


IDS = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7]


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
@pytest.mark.parametrize(("positional", "params"), [
    ("absolute", {}), ("rope", {"n_kv_heads": 2}), ("alibi", {"n_kv_heads": 1}), ("t5", {}),
    ("rope", {"window": 3}), ("alibi", {"softcap": 5.0, "n_kv_heads": 2})],
    ids=["absolute", "rope-gqa", "alibi-mqa", "t5", "rope-window", "alibi-softcap-gqa"])
def test_weights_are_causal_distributions(attention, positional, params):
    weights = attention_weights(model(attention, positional, **params), IDS)
    assert weights.shape == (2, 4, 10, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 10))
    assert torch.all(weights.triu(1) == 0)
    if "window" in params:  # query p sees keys p - 3 < j <= p only
        assert torch.all(weights.tril(-3) == 0)


@pytest.mark.parametrize(("positional", "params"), [
    ("absolute", {}), ("rope", {"n_kv_heads": 2}), ("alibi", {"n_kv_heads": 2}), ("t5", {"n_kv_heads": 1}),
    ("sinusoidal", {"window": 4}), ("rope", {"softcap": 3.0})],
    ids=["absolute", "rope-gqa", "alibi-gqa", "t5-mqa", "sinusoidal-window", "rope-softcap"])
def test_fused_sdpa_gives_the_weights_of_mha(positional, params):
    mha = model("mha", positional, **params)
    sdpa = model("sdpa", positional, **params)
    sdpa.load_state_dict(mha.state_dict())
    torch.testing.assert_close(attention_weights(sdpa, IDS), attention_weights(mha, IDS))


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
@pytest.mark.parametrize(("positional", "params"), [
    ("alibi", {"n_kv_heads": 2}), ("rope", {"n_kv_heads": 1, "qkv_bias": True}),
    ("t5", {"window": 4})], ids=["alibi-gqa", "rope-mqa", "t5-window"])
def test_the_weights_are_what_each_layer_applies(attention, positional, params):
    """out_proj(weights @ v) is each layer's output: the drawn weights are the ones used."""
    net = model(attention, positional, **params)
    weights = attention_weights(net, list(range(10)))
    for layer, (x, out, module) in enumerate(layer_inputs_and_outputs(net)):
        kv = module.dims.n_kv_heads
        v = module.v_proj(x).view(1, 10, kv, -1).transpose(1, 2)
        v = v.repeat_interleave(module.dims.n_heads // kv, dim=1)
        mixed = (weights[layer] @ v[0]).transpose(0, 1).reshape(1, 10, -1)
        torch.testing.assert_close(module.out_proj(mixed), out, atol=1e-5, rtol=1e-5)


def test_mha_weights_are_the_books_formula():
    """softmax(mask(Q K^T / sqrt(d_k))), as the book writes it, from the layer's own projections."""
    net = model("mha", "absolute", qkv_bias=True)
    weights = attention_weights(net, list(range(10)))
    x, _, module = layer_inputs_and_outputs(net)[1]
    heads, d_k = module.dims.n_heads, module.dims.head_dim
    with torch.no_grad():
        queries = (x @ module.q_proj.weight.T + module.q_proj.bias).view(10, heads, d_k).transpose(0, 1)
        keys = (x @ module.k_proj.weight.T + module.k_proj.bias).view(10, heads, d_k).transpose(0, 1)
        scores = queries @ keys.transpose(1, 2)
        mask = torch.triu(torch.ones(10, 10, dtype=torch.bool), diagonal=1)
        book = torch.softmax(scores.masked_fill(mask, -torch.inf) / d_k ** 0.5, dim=-1)
    torch.testing.assert_close(weights[1], book)


class Opaque(Attention):
    """Attention that mixes tokens but does not say how (a third-party kind, say)."""

    name = "opaque"

    def __init__(self, params, dims) -> None:
        super().__init__(params, dims)
        self.proj = torch.nn.Linear(dims.emb_dim, dims.emb_dim)

    def residual_projections(self):
        return [self.proj]

    def forward(self, x, pos, cache=None):
        return self.proj(x.cumsum(1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1))


@llmbricks.hookimpl
def _components():
    return [Opaque]


OPAQUE_PLUGIN = types.SimpleNamespace(llmbricks_components=_components)


def test_an_attention_kind_without_weights_is_named():
    registry = Registry({"opaque": OPAQUE_PLUGIN})
    with pytest.raises(ComponentError, match="attention 'opaque' does not give its attention "
                                             "weights"):
        attention_weights(model("opaque", registry=registry), IDS)


def test_the_hooks_are_removed_and_the_mode_restored():
    net = model("sdpa").train()
    attention_weights(net, IDS)
    assert net.training
    assert not any(m._forward_pre_hooks for m in net.modules())


def test_plot_attention_has_one_panel_per_layer_and_head():
    weights = attention_weights(model(), IDS)
    tokens = [chr(ord("a") + i) for i in range(10)]
    fig = plot_attention(weights, tokens)
    assert len(fig.axes) == 2 * 4 + 1  # the panels and one shared colour bar
    fig = plot_attention(weights, tokens, layers=[1], heads=[0, 3])
    panels = fig.axes[:-1]
    assert [ax.get_title() for ax in panels] == ["layer 1, head 0", "layer 1, head 3"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == tokens
    with pytest.raises(InputError, match="head 4 does not exist: the model has 4 heads, 0 to 3"):
        plot_attention(weights, tokens, heads=[4])
    big = torch.zeros(13, 12, 2, 2)
    with pytest.raises(InputError, match="13 layers x 12 heads = 156 panels"):
        plot_attention(big, ["a", "b"])


@pytest.mark.parametrize(("specs", "expected"), [
    ((), None), (("0",), [0]), (("0-2", "5"), [0, 1, 2, 5]), (("1,3",), [1, 3]),
    ((" 2 - 3 ",), [2, 3])])
def test_parse_indices(specs, expected):
    assert parse_indices(specs, "layer") == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("x", "--head 'x': expected a number or a range"), ("3-1", "the range 3-1 is empty"),
    ("1-", "expected a number")])
def test_parse_indices_refuses(spec, message):
    with pytest.raises(InputError, match=message):
        parse_indices((spec,), "head")


def test_token_labels_show_whitespace_and_stay_short():
    assert token_label(" the\n") == "\u2423the\u21b5"
    assert token_label("\t$x$") == "\u2192$x$"
    assert token_label("") == "\u2205"
    assert token_label("abcdefghijkl") == "abcdefg\u2026"
    assert token_label("\x00") == "\\x00"


# --- positional ------------------------------------------------------------------------------

def config_with(positional: object = "rope"):
    return load_config({"model": {**SHAPE, "positional": positional}, "seed": 3}, registry=REGISTRY)


def test_every_registered_kind_gets_a_panel_grouped_by_how_it_acts():
    views = positional_views(config_with({"name": "rope", "theta": 100.0}), registry=REGISTRY)
    assert [v.kind for v in views] == ["absolute", "sinusoidal", "rope", "alibi", "t5", "none"]
    assert [v.family for v in views] == ["added", "added", "rotation", "bias", "bias", "nothing"]
    own = views[2]
    assert own.title.startswith("rope") and own.title.endswith("(this config's)")
    # The config's own params: theta 100 -> pair j turns by p * 100^(-2j / 6) per position
    j = np.arange(3)
    expected = np.outer(np.arange(12), 100.0 ** (-2 * j / 6)) % (2 * math.pi)
    np.testing.assert_allclose(own.matrix, expected, rtol=1e-5, atol=1e-5)
    assert views[0].title.startswith("absolute (random init)")
    assert views[-1].matrix is None and "no positional signal" in views[-1].note


def test_bias_panels_are_head_0_with_the_future_blank():
    alibi = next(v for v in positional_views(config_with(), kinds=["alibi"], registry=REGISTRY))
    assert alibi.matrix.shape == (12, 12)
    assert np.isnan(alibi.matrix[0, 1]) and alibi.matrix[5, 2] == pytest.approx(-3 * 2 ** -2)
    sinus = positional_views(config_with(), kinds=["sinusoidal"], positions=5, registry=REGISTRY)[0]
    assert sinus.matrix.shape == (5, 24)
    assert sinus.matrix[0, 1] == pytest.approx(24 ** -0.5)  # cos(0) / sqrt(D)


def test_a_trained_table_is_drawn_from_the_run():
    config = config_with("absolute")
    net = build_model(config, REGISTRY)
    table = next(m for m in net.modules() if isinstance(m, PositionalEncoding))
    view = positional_views(config, kinds=["absolute"], trained=table, registry=REGISTRY)[0]
    assert "(trained)" in view.title
    np.testing.assert_allclose(view.matrix, table.table.weight.detach().numpy())


def test_positional_refusals():
    with pytest.raises(InputError, match="unknown positional kind 'rop' - did you mean 'rope'"):
        positional_views(config_with(), kinds=["rop"], registry=REGISTRY)
    with pytest.raises(InputError, match="positions 13: give 1 to the context length, 12"):
        positional_views(config_with(), positions=13, registry=REGISTRY)


class Twister(PositionalEncoding):
    """A rotary kind that does not say its angles."""

    name = "twister"

    def rotate(self, q, k, pos):
        return q.flip(-1), k.flip(-1)


@llmbricks.hookimpl
def _positional():
    return [Twister]


def test_a_kind_without_a_picture_gets_a_panel_saying_so_or_an_error_alone():
    registry = Registry({"twister": types.SimpleNamespace(llmbricks_components=_positional)})
    config = load_config({"model": {**SHAPE}}, registry=registry)
    views = positional_views(config, registry=registry)
    twister = next(v for v in views if v.kind == "twister")
    assert twister.matrix is None and "no picture" in twister.note
    assert views[-1] is twister
    with pytest.raises(InputError, match="nothing to draw for twister: no picture"):
        positional_views(config, kinds=["twister"], registry=registry)
    assert describe_positional(Twister(None, config.model.dims()), 4).family == "unknown"


# --- embeddings ------------------------------------------------------------------------------

def test_pca_finds_the_direction_of_most_variance():
    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=200), [3.0, 4.0, 0.0]) + rng.normal(size=(200, 3)) * 0.01
    points, explained = pca_2d(line + 7.0)
    assert explained[0] > 0.999 and explained.sum() <= 1.0
    np.testing.assert_allclose(np.abs(points[:, 0]), np.abs(line @ [0.6, 0.8, 0.0]), atol=0.1)
    covariance = np.cov(line.T)
    top = np.sort(np.linalg.eigvalsh(covariance))[::-1][:2]
    np.testing.assert_allclose(explained, top / np.trace(covariance), rtol=1e-6)


# --- on a trained run: the PNGs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_finished_run(tmp_path_factory.mktemp("inspect")) / "run"


def assert_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return image


def test_inspect_attention_writes_the_png(run, tmp_path):
    picture = inspect_attention(run, "the king", tmp_path / "a" / "attention.png", heads=[1])
    assert picture.path == tmp_path / "a" / "attention.png" and picture.panels == 2
    assert picture.summary == "2 layers x 1 head, 8 tokens"
    assert_png(picture.path)
    assert [p.name for p in tmp_path.joinpath("a").iterdir()] == ["attention.png"]  # no leftovers


def test_inspect_attention_refuses_a_prompt_past_the_context(run, tmp_path):
    with pytest.raises(InputError, match="the prompt is 20 tokens, longer than the model's context "
                                         "of 16: give a shorter prompt"):
        inspect_attention(run, "the king and the sea", tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


def test_inspect_positional_and_embeddings_write_pngs(run, tmp_path):
    picture = inspect_positional(run, tmp_path / "p.png", kinds=["absolute", "rope"])
    assert picture.panels == 2 and picture.summary == "2 kinds (2 drawn), 16 positions"
    assert_png(picture.path)
    picture = inspect_embeddings(run, tmp_path / "e.png", top=5)
    assert picture.panels == 1
    assert picture.summary.endswith("5 labelled, counted in the training data, text")
    assert_png(picture.path)


def test_embeddings_without_token_counts_say_so(run, tmp_path):
    config = run / "config.yaml"
    corpus = run.parent / "corpus.txt"
    hidden = run.parent / "corpus.hidden"
    corpus.rename(hidden)
    try:
        with pytest.warns(UserWarning, match="labelling the 3 lowest token ids, not the most "
                                             "frequent: the training data is not readable here"):
            picture = inspect_embeddings(run, tmp_path / "e.png", top=3)
    finally:
        hidden.rename(corpus)
    assert "lowest ids" in picture.summary and config.is_file()
    text = tmp_path / "words.txt"
    text.write_text("sea sea sea", encoding="utf-8")
    picture = inspect_embeddings(run, tmp_path / "e.png", top=2, text=text)
    assert picture.summary.endswith("2 labelled, counted in words.txt")


def test_the_public_api_exports_the_inspection():
    from llmbricks.core.tasks import inspection

    for name in ("attention_weights", "inspect_attention", "inspect_positional",
                 "inspect_embeddings"):
        assert getattr(llmbricks, name) is getattr(inspection, name)
