"""Tests of the transformer workload: the model (lrlab.lab.models.transformer), the sequence
datasets (lrlab.lab.data.sequences), per-token targets in the trainer and the range test,
and the CLI.

Expected values come from the definitions: parameter counts from the layer sizes written out
here, targets from (a + b) mod p, windows from slices of the text, bits from loss / ln 2.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from lrlab.cli import main
from lrlab.errors import LrlabError
from lrlab.lab.data import sequences
from lrlab.lab.data.datasets import load_dataset
from lrlab.lab.models.transformer import Transformer, transformer_params
from lrlab.lab.models.zoo import build_model, count_params
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.trainer import EpochSums, evaluate
from lrlab.optim.groups import layer_ids

TINY = ["--width", "16", "--depth", "1", "--heads", "2", "--threads", "1", "--quiet"]


def tiny(norm: str = "pre", depth: int = 2) -> Transformer:
    torch.manual_seed(0)
    return Transformer(11, 8, classes=7, norm=norm, depth=depth, width=16, heads=4)


# --- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_logits_for_every_position(norm):
    tokens = torch.randint(0, 11, (3, 5))
    assert tiny(norm)(tokens).shape == (3, 5, 7)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_a_future_token_never_changes_an_earlier_position(norm):
    model = tiny(norm).eval()
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 11, (2, 8), generator=gen)
    base = model(tokens)
    for j in range(8):
        changed = tokens.clone()
        changed[:, j] = (changed[:, j] + 1) % 11
        out = model(changed)
        torch.testing.assert_close(out[:, :j], base[:, :j], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, j], base[:, j])  # the position itself does see it


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_parameter_count_is_the_formula(norm):
    V, C, T, d, L = 11, 7, 8, 16, 2
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) \
        + 2 * (d + d)  # qkv, proj, fc1, fc2, two LayerNorms
    expected = V * d + T * d + L * block + d * C + C + (2 * d if norm == "pre" else 0)
    assert count_params(tiny(norm, depth=L)) == expected
    assert transformer_params(V, C, T, d, L, norm) == expected


def _trace(model: Transformer) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of the first block, its norm1 and attention, and of the head."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    block = model.blocks[0]
    for name, module in (("block", block), ("norm1", block.norm1), ("attn", block.attn),
                         ("head", model.head)):
        module.register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, (i[0].detach(), o.detach())))
    model(torch.randint(0, 11, (2, 6)))
    return seen


def test_post_ln_normalises_after_the_residual_and_has_no_final_norm():
    model = tiny("post")
    assert model.norm is None
    assert not any(n.startswith("norm.") for n, _ in model.named_parameters())
    t = _trace(model)
    x_in, _ = t["block"]
    torch.testing.assert_close(t["attn"][0], x_in)  # attention reads x itself
    torch.testing.assert_close(t["norm1"][0], x_in + t["attn"][1])  # LN(x + F(x))
    # the head reads the last block's LayerNorm output: zero mean, unit variance per position
    h = t["head"][0]
    torch.testing.assert_close(h.mean(-1), torch.zeros(h.shape[:-1]), atol=1e-5, rtol=0)
    # var / (var + eps): a little below 1 for the small activations at initialisation
    torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(h.shape[:-1]),
                               atol=0.05, rtol=0)


def test_pre_ln_normalises_inside_the_branch_and_before_the_head():
    model = tiny("pre")
    assert isinstance(model.norm, torch.nn.LayerNorm)
    t = _trace(model)
    x_in, x_out = t["block"]
    torch.testing.assert_close(t["norm1"][0], x_in)  # LN reads x
    torch.testing.assert_close(t["attn"][0], t["norm1"][1])  # F(LN(x))
    # the block's output is the residual stream, not a LayerNorm output
    assert (x_out.var(-1, unbiased=False) - 1).abs().max() > 0.5


def test_gpt2_initialisation_and_same_start_for_both_norms():
    pre, post = tiny("pre"), tiny("post")
    for (n, a), (m, b) in zip(post.named_parameters(), pre.named_parameters()):
        assert n == m and torch.equal(a, b)  # Pre-LN only adds its final norm, last
    for name, p in pre.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif ".norm" in name or name.startswith("norm."):
            assert torch.equal(p, torch.ones_like(p)), name
    big = Transformer(50, 64, width=256, depth=8, heads=4)
    assert big.blocks[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert big.blocks[0].mlp.fc2.weight.std().item() == pytest.approx(0.02 / math.sqrt(16),
                                                                      rel=0.02)


def test_names_give_beit_layers_for_layer_decay():
    ids, top = layer_ids(tiny("pre", depth=2))
    assert top == 3
    assert ids["patch_embed.weight"] == 0 and ids["pos_embed"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.1.mlp.fc2.bias"] == 2
    assert ids["norm.weight"] == 3 and ids["head.weight"] == 3


def test_bad_transformer_options_are_refused():
    with pytest.raises(LrlabError, match="divisible"):
        Transformer(5, 4, width=10, heads=4)
    with pytest.raises(LrlabError, match="norm"):
        Transformer(5, 4, norm="sandwich")
    with pytest.raises(LrlabError, match="longer than"):
        Transformer(5, 4, width=8, heads=2, depth=1)(torch.zeros(1, 5, dtype=torch.int64))


# --- modadd ------------------------------------------------------------------------------


def test_modadd_every_pair_once_and_targets_are_the_sums():
    data = load_dataset("modadd")
    p = sequences.MODADD_P
    assert (data.n_train, data.n_val, data.n_test) == (round(0.8 * p * p), round(0.1 * p * p),
                                                       p * p - round(0.8 * p * p)
                                                       - round(0.1 * p * p))
    pairs = []
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val),
                 (data.x_test, data.y_test)):
        assert x.dtype == torch.int64 and x.shape[1:] == (3,) and y.shape == x.shape
        assert torch.all(x[:, 2] == p)  # '='
        assert torch.all(y[:, :2] == -100)  # only the answer counts
        for (a, b, _), (_, _, c) in zip(x.tolist(), y.tolist()):
            assert c == (a + b) % p
            pairs.append((a, b))
    assert sorted(pairs) == [(a, b) for a in range(p) for b in range(p)]
    assert data.num_classes == p and data.tokens[p] == "=" and len(data.tokens) == p + 1


# --- chars -------------------------------------------------------------------------------


def _text_of(data, x_or_y):
    return [sequences.decode(row, data.tokens) for row in x_or_y]


def test_chars_windows_are_slices_of_the_text_in_contiguous_disjoint_parts():
    text = sequences.chars_text()
    T = 32
    data = load_dataset("chars", context=T)
    n = len(text)
    cut1 = int(0.9 * n)
    cut2 = cut1 + int(0.05 * n)
    for (x, y), start, end in (((data.x_train, data.y_train), 0, cut1),
                               ((data.x_val, data.y_val), cut1, cut2),
                               ((data.x_test, data.y_test), cut2, n)):
        assert len(x) == (end - start - 1) // T  # every window fits inside its part
        xs, ys = _text_of(data, x), _text_of(data, y)
        for k in (0, 1, len(x) - 1):
            assert xs[k] == text[start + k * T:start + k * T + T]
            assert ys[k] == text[start + k * T + 1:start + k * T + T + 1]
        assert start + len(x) * T + 1 <= end
    assert data.tokens[1:] == tuple(sorted(set(text[:cut1])))
    assert data.num_classes == len(data.tokens) and data.bpc


def test_chars_vocabulary_is_from_the_training_part_and_unknowns_map_to_id_0(monkeypatch):
    text = "ab" * 45 + "abcdefghij"  # 100 chars: train 'ab'*45, val 'abcde', test 'fghij'
    monkeypatch.setattr(sequences, "chars_text", lambda: text)
    data = load_dataset("chars", context=2)
    assert data.tokens == (sequences.UNKNOWN, "a", "b")
    assert data.x_test.tolist() == [[0, 0], [0, 0]] and data.y_test.tolist() == [[0, 0],
                                                                                 [0, 0]]
    assert data.x_val.tolist() == [[1, 2], [0, 0]]  # 'ab', 'cd'


def test_chars_without_pydoc_data_fails_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)
    with pytest.raises(LrlabError) as exc:
        load_dataset("chars")
    assert "pydoc_data" in str(exc.value) and "\n" not in str(exc.value)


# --- targets in the trainer ----------------------------------------------------------------


def test_evaluate_counts_only_the_answer_position_of_modadd():
    data = load_dataset("modadd")
    torch.manual_seed(0)
    model = build_model("transformer", data, width=16, depth=1, heads=2)
    loss, acc = evaluate(model, data.x_val, data.y_val, 20, None)
    with torch.no_grad():
        last = model(data.x_val)[:, -1]
    target = data.y_val[:, -1]
    nll = -last.log_softmax(-1).gather(1, target[:, None]).squeeze(1)
    assert loss == pytest.approx(nll.mean().item(), rel=1e-5)
    assert acc == pytest.approx((last.argmax(1) == target).double().mean().item())


def test_old_checkpoint_sums_count_one_target_per_example():
    sums = EpochSums.from_checkpoint({"sums": {"loss": 6.0, "correct": 2.0, "seen": 3.0,
                                               "grad_norm": 0.0, "updates": 1}})
    assert sums.targets == 3.0


def test_unset_transformer_fields_leave_run_names_as_they_were():
    fields = TrainConfig(dataset="blobs").validate().result_fields()
    assert not {"norm", "depth", "width", "heads", "context"} & set(fields)
    post = TrainConfig(dataset="modadd", norm="post").validate()
    assert post.result_fields()["norm"] == "post" and post.resolved_model() == "transformer"


def test_two_epochs_of_modadd_train(tmp_path, capsys):
    code = main(["train", "--dataset", "modadd", "--model", "transformer", "--epochs", "2",
                 "--norm", "post", "--out", str(tmp_path), "--name", "m", *TINY])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").open()]
    assert len(rows) == 2
    for row in rows:
        for key in ("train_loss", "val_loss", "test_loss"):
            assert math.isfinite(row[key])
        for key in ("train_acc", "val_acc", "test_acc"):
            assert 0.0 <= row[key] <= 1.0
        assert "train_bpc" not in row
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["norm"] == "post" and config["n_train"] == 423


def test_chars_records_bits_per_character(tmp_path, capsys):
    code = main(["train", "--dataset", "chars", "--context", "16", "--limit", "64",
                 "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path), "--name", "c",
                 *TINY])
    out = capsys.readouterr().out
    assert code == 0
    row = json.loads((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()[0])
    for split in ("train", "val", "test"):
        assert row[f"{split}_bpc"] == pytest.approx(row[f"{split}_loss"] / math.log(2),
                                                    rel=1e-12)
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["final_test_bpc"] == row["test_bpc"]
    assert f"final test bpc {row['test_bpc']:.4f}" in out


def test_chance_level_of_a_sequence_dataset_is_its_unigram_entropy():
    from collections import Counter

    from lrlab.lab.data.datasets import load_dataset

    data = load_dataset("chars", None, seed=0, limit=None, pixels="standard", val_size=None,
                        context=16)
    counts = Counter(t for t in data.y_train.reshape(-1).tolist() if t != -100)
    total = sum(counts.values())
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    assert data.chance_loss == pytest.approx(entropy, rel=1e-12)
    assert data.chance_acc == pytest.approx(max(counts.values()) / total, rel=1e-12)
    assert data.chance_loss < math.log(data.num_classes) - 1  # far below ln(vocabulary)


def test_a_character_model_stuck_at_letter_frequencies_is_not_learning(tmp_path):
    # at LR 1e-5 two epochs move nothing: the loss stays near the unigram entropy, which is
    # ~1.4 nats below ln(104); judged against ln(104) it would pass as "ok"
    code = main(["train", "--dataset", "chars", "--context", "16", "--limit", "128",
                 "--epochs", "2", "--batch-size", "32", "--lr", "1e-5", "--schedule",
                 "constant()", "--out", str(tmp_path), "--name", "stuck", *TINY])
    assert code == 0
    summary = json.loads((tmp_path / "stuck" / "summary.json").read_text())
    assert summary["status"] == "not-learning"
    events = (tmp_path / "stuck" / "events.jsonl").read_text()
    assert "entropy of the training targets" in events


def test_find_lr_on_chars_with_the_transformer(tmp_path, capsys):
    code = main(["find-lr", "--dataset", "chars", "--model", "transformer", "--context", "16",
                 "--limit", "256", "--batch-size", "32", "--steps", "12", "--out",
                 str(tmp_path), *TINY[:-1]])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    assert "LR range test" in out and "Traceback" not in err
    if code == 0:
        assert "--dataset chars" in out and "--context 16" in out
