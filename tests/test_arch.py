"""Tests for kernels.arch: spec parsing, per-layer figures, dense counterpart, receptive fields.

Oracles: expected figures derived here by arithmetic written out step by step (homework 3.2 and
3.3, VGG-16, AlexNet), PyTorch (the same network built from torch.nn: output shapes, parameter
counts, and the receptive field as the support of an autograd input gradient through positive
convs and average pools), and hypothesis properties over random conv/pool stacks.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernels
from kernels import arch

torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle for shapes, params and fields")
nn = torch.nn

HW32 = "in32x32x1 conv3 pool2 conv3 pool2 conv3 pool2"  # homework 3.2's CNN (the issue's assumption)
VGG16 = (
    "in224x224x3 conv3c64 conv3c64 pool2 conv3c128 conv3c128 pool2 conv3c256 conv3c256 conv3c256 pool2 "
    "conv3c512 conv3c512 conv3c512 pool2 conv3c512 conv3c512 conv3c512 pool2 fc4096 fc4096 fc1000"
)


def test_module_docstring_example_runs():
    assert doctest.testmod(arch, verbose=False).failed == 0


def test_kernels_arch_is_a_submodule():
    assert kernels.arch is arch


# ----------------------------------------------------------------------------- parsing


def test_parse_defaults_and_every_suffix():
    layers = arch.parse("in32x24x3 conv3 conv3s2p1c64 conv5validd2nobias conv2same pool2 pool3s1 fc10")
    inp, c1, c2, c3, c4, p1, p2, fc = layers
    assert (inp.height, inp.width, inp.channels) == (32, 24, 3)
    assert (c1.kernel, c1.stride, c1.padding, c1.dilation, c1.channels, c1.bias) == (3, 1, "same", 1, 1, True)
    assert (c2.kernel, c2.stride, c2.padding, c2.dilation, c2.channels, c2.bias) == (3, 2, 1, 1, 64, True)
    assert (c3.kernel, c3.stride, c3.padding, c3.dilation, c3.channels, c3.bias) == (5, 1, "valid", 2, 1, False)
    assert c4.padding == "same"
    assert (p1.kernel, p1.stride, p2.kernel, p2.stride) == (2, None, 3, 1)
    assert fc.units == 10 and fc.bias
    assert c2.token == "conv3s2p1c64"
    # suffixes in any order
    assert arch.parse("in8x8x1 conv3c4s2")[1] == arch.parse("in8x8x1 conv3s2c4")[1].__class__(
        3, stride=2, channels=4, token="conv3c4s2")


@pytest.mark.parametrize(
    "spec,match",
    [
        ("", "spec must hold at least an input token"),
        ("   ", "spec must hold at least an input token"),
        ("conv3 pool2", r"spec token 1 of 2, 'conv3': the spec must start with the input"),
        ("in32x32 conv3", r"spec token 1 of 2, 'in32x32'"),
        ("in0x32x1 conv3", r"spec token 1 of 2, 'in0x32x1': height must be >= 1, got 0"),
        ("in32x32x1 conv3 in32x32x1", r"spec token 3 of 3, 'in32x32x1': the input token may only come first"),
        ("in32x32x1 conv3x", r"spec token 2 of 2, 'conv3x': unknown suffix 'x'"),
        ("in32x32x1 conv3s2s1", r"token 2 of 2, 'conv3s2s1': stride given twice"),
        ("in32x32x1 conv3p1same", r"token 2 of 2, 'conv3p1same': padding given twice"),
        ("in32x32x1 conv3 conv0", r"spec token 3 of 3, 'conv0': kernel size must be >= 1, got 0"),
        ("in32x32x1 conv3s0", r"'conv3s0': stride must be >= 1, got 0"),
        ("in32x32x1 conv3d0", r"'conv3d0': dilation must be >= 1, got 0"),
        ("in32x32x1 conv3c0", r"'conv3c0': output channels must be >= 1, got 0"),
        ("in32x32x1 pool2s0", r"'pool2s0': stride must be >= 1, got 0"),
        ("in32x32x1 pool2p1", r"spec token 2 of 2, 'pool2p1': not a layer"),
        ("in32x32x1 conv3 tanh pool2", r"spec token 3 of 4, 'tanh': not a layer"),
        ("in32x32x1 fc0", r"'fc0': units must be >= 1, got 0"),
        ("in32x32x1 Conv3", r"'Conv3': not a layer"),
        ("in32x32x1 conv", r"'conv': not a layer"),
        # compiled code takes sizes as int64
        ("in8x8x1 pool2s99999999999999999999999 fc2",
         r"spec token 2 of 3, 'pool2s99999999999999999999999': stride must be <= 9223372036854775807"),
        ("in8x8x1 conv3s9223372036854775808c2", r"'conv3s9223372036854775808c2': stride must be <= 9223372036854775807"),
        ("in8x8x1 conv3p9223372036854775808", r"'conv3p9223372036854775808': padding must be <= 9223372036854775807"),
        ("in9223372036854775808x8x1 fc2", r"'in9223372036854775808x8x1': height must be <= 9223372036854775807"),
        ("in8x8x1 fc99999999999999999999", r"'fc99999999999999999999': units must be <= 9223372036854775807"),
        # ASCII digits only: int() would read these Arabic-Indic and full-width ones
        ("in\u0668x8x1 conv3", r"spec token 1 of 2, 'in\u0668x8x1': the spec must start with the input"),
        ("in8x8x1 conv3s\u0662", r"'conv3s\u0662': unknown suffix"),
        ("in8x8x1 fc\uff11\uff10", r"'fc\uff11\uff10': not a layer"),
    ],
)
def test_parse_rejects_bad_tokens_naming_them(spec, match):
    with pytest.raises(ValueError, match=match):
        arch.parse(spec)


def test_parse_accepts_the_largest_int64():
    big = 2**63 - 1
    layers = arch.parse(f"in8x8x1 conv3s{big}c2 pool1s{big}")
    assert layers[1].stride == big and layers[2].stride == big
    assert [r.out_shape for r in arch.analyze(layers)[1:]] == [(1, 1, 2), (1, 1, 2)]


def test_parse_error_points_a_caret_at_the_token():
    with pytest.raises(ValueError) as info:
        arch.parse("in32x32x1 conv3 bad pool2")
    lines = str(info.value).splitlines()
    assert lines[1].strip() == "in32x32x1 conv3 bad pool2"
    assert lines[2].index("^") - lines[1].index("in32") == len("in32x32x1 conv3 ")
    assert lines[2].count("^") == len("bad")


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError, match="spec must be a string, got list"):
        arch.parse(["in32x32x1"])


# ----------------------------------------------------------------------------- homework 3.2 and 3.3


def test_homework_3_2_cnn_neurons_and_parameters():
    rows = arch.analyze(arch.parse(HW32))
    assert [r.name for r in rows] == ["input", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3"]
    # 'same' 3x3 convs keep the size, 2x2 stride-2 pools halve it: 32 -> 32 -> 16 -> 16 -> 8 -> 8 -> 4
    assert [r.out_shape for r in rows] == [(32, 32, 1), (32, 32, 1), (16, 16, 1), (16, 16, 1), (8, 8, 1), (8, 8, 1), (4, 4, 1)]
    neurons = [32 * 32, 32 * 32, 16 * 16, 16 * 16, 8 * 8, 8 * 8, 4 * 4]
    assert [r.neurons for r in rows] == neurons
    conv_params = 3 * 3 * 1 * 1 + 1  # nine weights and a bias per conv
    assert [r.params for r in rows] == [0, conv_params, 0, conv_params, 0, conv_params, 0]
    t = arch.totals(rows)
    assert t == {"neurons": 1024 + 256 + 256 + 64 + 64 + 16, "params": 3 * 10}
    assert t == {"neurons": 1680, "params": 30}
    assert arch.totals(rows, include_input=True)["neurons"] == 1680 + 1024


def test_homework_3_2_fcnn_counterpart():
    dense = arch.to_dense(HW32)
    assert [type(layer).__name__ for layer in dense] == ["Input", "Dense", "Pool", "Dense", "Pool", "Dense", "Pool"]
    rows = arch.analyze(dense)
    # each conv becomes a dense layer from its input to its output size, with one bias per output
    fc1 = 1024 * 1024 + 1024  # 32*32 -> 32*32
    fc2 = 256 * 256 + 256  # 16*16 -> 16*16
    fc3 = 64 * 64 + 64  # 8*8 -> 8*8
    assert [r.params for r in rows] == [0, fc1, 0, fc2, 0, fc3, 0]
    assert (fc1, fc2, fc3) == (1_049_600, 65_792, 4_160)
    assert arch.totals(rows) == {"neurons": 1680, "params": 1_119_552}
    assert [r.out_shape for r in rows] == [r.out_shape for r in arch.analyze(HW32)]


def test_homework_3_3_receptive_fields_analytic_and_empirical():
    # 3x3 filters: conv1 r = 1 + (3-1)*1 = 3; pool1 r = 3 + (2-1)*1 = 4, j = 2; conv2 r = 4 + (3-1)*2 = 8
    rows3 = arch.analyze("in32x32x1 conv3 pool2 conv3")
    assert [r.rf for r in rows3] == [(1, 1), (3, 3), (4, 4), (8, 8)]
    # 5x5 filters: conv1 r = 1 + 4*1 = 5; pool1 r = 5 + 1*1 = 6, j = 2; conv2 r = 6 + 4*2 = 14
    rows5 = arch.analyze("in32x32x1 conv5 pool2 conv5")
    assert [r.rf for r in rows5] == [(1, 1), (5, 5), (6, 6), (14, 14)]
    for spec, rows in (("in32x32x1 conv3 pool2 conv3", rows3), ("in32x32x1 conv5 pool2 conv5", rows5)):
        for layer in (1, 2, 3):
            for method in ("window", "union"):
                f = arch.empirical_receptive_field(spec, layer=layer, method=method, trials=8)
                assert f.rf == rows[layer].rf, (spec, layer, method)
                assert f.clipped == (False, False)


# ----------------------------------------------------------------------------- published networks


def test_vgg16_pool5_receptive_field_212_jump_32_and_parameter_count():
    rows = arch.analyze(VGG16)
    pool5 = next(r for r in rows if r.name == "pool5")
    # per block of n 3x3 convs and a 2x2 pool entered with jump j: r += n*2*j, then r += 1*j, j *= 2
    r, j = 1, 1
    for n in (2, 2, 3, 3, 3):
        r += n * 2 * j + j
        j *= 2
    assert (r, j) == (212, 32)
    assert pool5.rf == (212, 212) and pool5.jump == (32, 32)
    assert pool5.out_shape == (7, 7, 512)
    # start: 'same' 3x3 convs (p = 1 = (3-1)/2) leave it; each pool adds (2-1)/2 * j
    assert pool5.start == (0.5 * (1 + 2 + 4 + 8 + 16),) * 2 == (15.5, 15.5)
    # 138,357,544 parameters (Simonyan & Zisserman's VGG-16 "D"), from the layer sizes
    chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    conv = sum(9 * a * b + b for a, b in zip(chans[:-1], chans[1:]))
    fc = (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert arch.totals(rows)["params"] == conv + fc == 138_357_544
    f = arch.empirical_receptive_field(VGG16, layer=pool5.index)
    assert f.rf == (212, 212) and f.clipped == (False, False)
    assert f.centre == tuple(s + p * 32 for s, p in zip(pool5.start, f.position))


def test_alexnet_conv1_parameters_and_shape():
    rows = arch.analyze("in227x227x3 conv11s4validc96")
    conv1 = rows[1]
    assert conv1.params == 11 * 11 * 3 * 96 + 96 == 34_944
    assert conv1.out_shape == ((227 - 11) // 4 + 1, (227 - 11) // 4 + 1, 96) == (55, 55, 96)
    assert conv1.rf == (11, 11) and conv1.jump == (4, 4) and conv1.start == (5.0, 5.0)


# ----------------------------------------------------------------------------- closed forms


def test_dilation_stride_and_same_padding_closed_forms():
    rows = arch.analyze("in20x15x2 conv3d2 conv4s2 conv3s3p1nobias pool3s2")
    # conv3d2: effective kernel 2*(3-1)+1 = 5, 'same' pads 2 each side, r = 5, start = (5-1)/2 - 2 = 0
    assert rows[1].out_shape == (20, 15, 1) and rows[1].rf == (5, 5) and rows[1].start == (0.0, 0.0)
    assert rows[1].params == 3 * 3 * 2 * 1 + 1
    # conv4s2 'same': ceil(20/2) = 10 and ceil(15/2) = 8 outputs; total pad (10-1)*2+4-20 = 2 -> (1, 1),
    # (8-1)*2+4-15 = 3 -> (1, 2); r = 5 + 3*1 = 8, j = 2, start = 0 + (1.5 - 1)*1 = 0.5
    assert rows[2].out_shape == (10, 8, 1) and rows[2].padding == (1, 1, 1, 2)
    assert rows[2].rf == (8, 8) and rows[2].jump == (2, 2) and rows[2].start == (0.5, 0.5)
    # conv3s3p1 without bias: floor((10+2-3)/3)+1 = 4, floor((8+2-3)/3)+1 = 3; 9 params; r = 8 + 2*2 = 12
    assert rows[3].out_shape == (4, 3, 1) and rows[3].params == 9 and rows[3].rf == (12, 12)
    assert rows[3].jump == (6, 6) and rows[3].start == (0.5 + (1 - 1) * 2,) * 2
    # pool3s2: floor((4-3)/2)+1 = 1, floor((3-3)/2)+1 = 1; r = 12 + 2*6 = 24, j = 12, start += 1*6
    assert rows[4].out_shape == (1, 1, 1) and rows[4].rf == (24, 24) and rows[4].jump == (12, 12)
    assert rows[4].start == (6.5, 6.5)


def test_markdown_table_lists_every_layer_and_the_totals():
    text = arch.markdown(arch.analyze("in32x30x1 conv3 pool2"))
    lines = text.splitlines()
    assert lines[2] == "| input | `in32x30x1` | 32x30x1 | 960 | 0 | 1 | 1 | 0 |"
    assert lines[3] == "| conv1 | `conv3` | 32x30x1 | 960 | 10 | 3 | 1 | 0 |"
    assert lines[4] == "| pool1 | `pool2` | 16x15x1 | 240 | 0 | 4 | 2 | 0.5 |"
    assert lines[5] == "| **total** (input excluded) | | | 1,200 | 10 | | | |"


def test_fc_layer_sees_everything_with_jump_zero():
    rows = arch.analyze("in8x6x2 conv3 fc5 fc3")
    assert rows[2].params == 8 * 6 * 1 * 5 + 5 and rows[3].params == 5 * 3 + 3
    assert rows[2].out_shape == (1, 1, 5)
    # the fc is the conv whose kernel spans its 8x6 input: r = 3 + (8-1), 3 + (6-1); jump 0
    assert rows[2].rf == (10, 8) and rows[2].jump == (0, 0)
    assert rows[3].rf == rows[2].rf and rows[3].start == rows[2].start


def test_to_dense_keeps_bias_choice_and_accepts_layers():
    layers = arch.parse("in6x6x2 conv3c4nobias pool2 conv3c3 fc2")
    dense = arch.to_dense(layers)
    rows = arch.analyze(dense)
    assert rows[1].params == (6 * 6 * 2) * (6 * 6 * 4)  # no bias
    assert rows[3].params == (3 * 3 * 4) * (3 * 3 * 3) + 27
    assert rows[4].params == 27 * 2 + 2 and rows[4].kind == "fc"
    assert rows[1].kind == "dense" and rows[1].out_shape == (6, 6, 4)


@pytest.mark.parametrize(
    "layers,exc,match",
    [
        ("in4x4x1 pool5", ValueError, r"layer 1 \(pool5\): pool size 5 is larger than its input 4x4"),
        ("in4x4x1 conv5valid", ValueError, r"layer 1 \(conv5valid\): effective kernel 5 is larger than the padded input 4x4"),
        ("in8x8x1 conv3d5p1", ValueError, r"effective kernel 11 is larger than the padded input 10x10"),
        ([], ValueError, "layers must start with an Input layer"),
        ([arch.Conv(3)], ValueError, "layers must start with an Input layer"),
        ([arch.Input(4, 4), "conv3"], TypeError, "layer 1 must be an Input, Conv, Pool or Dense, got str"),
        ([arch.Input(4, 4), arch.Input(4, 4)], ValueError, "an Input layer may only come first"),
        ([arch.Input(4, 4), arch.Conv(0)], ValueError, "kernel must be an integer >= 1, got 0"),
        ([arch.Input(4, 4), arch.Conv(3, padding="full")], ValueError, "padding .* got 'full'"),
        ([arch.Input(4, 4), arch.Dense(6, shape=(1, 2, 2))], ValueError, r"shape \(1, 2, 2\) must be \(H, W, C\)"),
        ([arch.Input(4, 4), arch.Dense(4, shape=4)], ValueError,
         r"layer 1 \(Dense.*\): shape must be None or a tuple \(H, W, C\) of 3 integers, got 4"),
        ([arch.Input(4, 4), arch.Dense(4, shape=(2, 2))], ValueError, r"shape must be None or a tuple .* got \(2, 2\)"),
        ([arch.Input(4, 4), arch.Dense(4, shape="2x2")], ValueError, r"shape must be None or a tuple .* got '2x2'"),
        ([arch.Input(4, 4), arch.Dense(4, shape=("a", 1, 4))], ValueError, r"shape\[0\] must be an integer >= 1, got 'a'"),
        ([arch.Input(4, 4), arch.Dense(4, shape=(2.9, 1, 2))], ValueError, r"shape\[0\] must be an integer >= 1, got 2.9"),
        ([arch.Input(4, 4), arch.Dense(4, shape=(2, 2, 1.0))], ValueError, r"shape\[2\] must be an integer >= 1, got 1.0"),
        ([arch.Input(4, 4), arch.Dense(4, shape=(True, 2, 2))], ValueError, r"shape\[0\] must be an integer >= 1, got True"),
        ([arch.Input(4, 4), arch.Dense(4, shape=(-2, -2, 1))], ValueError, r"shape\[0\] must be an integer >= 1, got -2"),
        ([arch.Input(0, 4)], ValueError, "height must be an integer >= 1, got 0"),
        ([arch.Input(4, 4), arch.Pool(2, stride=2**63)], ValueError,
         r"layer 1 \(Pool.*\): stride must be <= 9223372036854775807 .*got 9223372036854775808"),
        ([arch.Input(4, 4), arch.Conv(1, dilation=10**30)], ValueError, "dilation must be <= 9223372036854775807"),
    ],
)
def test_analyze_rejects_layers_that_do_not_fit(layers, exc, match):
    with pytest.raises(exc, match=match):
        arch.analyze(layers)


def test_analyze_accepts_a_dense_shape_as_a_list_or_numpy_integers():
    for shape in ([2, 1, 3], (np.int64(2), np.int32(1), 3)):
        rows = arch.analyze([arch.Input(4, 4), arch.Dense(6, shape=shape)])
        assert rows[-1].out_shape == (2, 1, 3) and all(type(v) is int for v in rows[-1].out_shape)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(position=(8, 0)), r"position must be a pair \(i, j\) inside layer 4's 8x8 output, got \(8, 0\)"),
        (dict(position=(1,)), "position must be a pair"),
        (dict(position=(1.0, 1)), "position must be a pair"),
        (dict(method="max"), "method must be 'window' or 'union', got 'max'"),
        (dict(method="union", trials=0), "trials must be an integer >= 1, got 0"),
        (dict(layer=7), "layer must be an index into the 7 layers, got 7"),
    ],
)
def test_empirical_receptive_field_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        arch.empirical_receptive_field(HW32, **{"layer": 4, **kwargs})


def test_empirical_field_at_the_border_is_clipped():
    f = arch.empirical_receptive_field("in32x32x1 conv3 pool2 conv3", position=(0, 0))
    # the analytic field [0.5 - 3.5, 0.5 + 3.5] = [-3, 4] is cut at pixel 0: pixels 0..4
    assert f.bbox == (0, 4, 0, 4) and f.clipped == (True, True) and f.rf == (5, 5)


def test_empirical_field_clipped_when_the_closed_form_runs_past_the_border_through_a_gap():
    # unit 3 of pool1s2 conv3 on 8 rows: rf 5, jump 2, start 0, so the field is rows 6 -+ 2 =
    # 4..8 and row 8 is padding; the stride leaves the measured support at rows 4..6 only,
    # away from the border, yet it is a lower bound
    spec = "in8x8x1 pool1s2 conv3"
    row = arch.analyze(spec)[-1]
    assert row.rf == (5, 5) and row.jump == (2, 2) and row.start == (0.0, 0.0)
    for method in ("window", "union"):
        f = arch.empirical_receptive_field(spec, (3, 3), method=method, trials=4)
        assert f.bbox == (4, 6, 4, 6) and f.rf == (3, 3) and f.clipped == (True, True)
    # one axis only: unit (3, 1) reads rows 4..8 (past the border) and columns 0..4 (inside;
    # the box of the measured columns 0, 2, 4 is the closed form)
    f = arch.empirical_receptive_field(spec, (3, 1))
    assert f.bbox == (4, 6, 0, 4) and f.rf == (3, 5) and f.clipped == (True, False)
    # an interior unit: the box is the closed form, not clipped
    f = arch.empirical_receptive_field(spec, (2, 2))
    assert f.bbox == (2, 6, 2, 6) and f.rf == (5, 5) and f.clipped == (False, False)


def test_empirical_field_touching_the_border_from_inside_is_not_clipped():
    # conv5valid on 5x5: the one unit's field is exactly the image, no padding involved
    f = arch.empirical_receptive_field("in5x5x1 conv5valid", (0, 0))
    assert f.bbox == (0, 4, 0, 4) and f.rf == (5, 5) and f.clipped == (False, False)


@pytest.mark.parametrize("method", ["window", "union"])
def test_empirical_field_of_dense_layers_is_the_whole_image(method):
    # after a 'same' conv the closed-form field (14x12) runs into its padding: clipped; a dense
    # layer on the image itself sees exactly the image (12x10): the measurement is the field
    for layers, clipped in (("in12x10x1 conv3 pool2 fc4", (True, True)),
                            (arch.to_dense("in12x10x1 conv3 pool2 conv3"), (False, False))):
        f = arch.empirical_receptive_field(layers, method=method, trials=2)
        assert f.support.all() and f.rf == (12, 10) and f.clipped == clipped


def test_empirical_field_entirely_in_padding_is_empty():
    # a 2-tap filter dilated by 2 on a 1x1 map padded 'same' (1 each side) reads only padding
    f = arch.empirical_receptive_field("in6x6x1 pool2s1 pool2s2 pool2s1 conv2d2")
    assert f.rf == (0, 0) and f.bbox is None and f.clipped == (True, True) and not f.support.any()


def test_empirical_union_is_a_subset_that_grows_to_the_window_field():
    spec = "in24x24x1 conv3 pool2 conv3 pool2"
    full = arch.empirical_receptive_field(spec)
    one = arch.empirical_receptive_field(spec, method="union", trials=1, seed=3)
    many = arch.empirical_receptive_field(spec, method="union", trials=16, seed=3)
    assert not np.any(one.support & ~full.support)
    assert one.support.sum() < full.support.sum()  # one pass sees one maximum per window
    # the extent is reached once each extreme row and column was some window's maximum; the
    # full support needs luckier draws (its corners take the extreme tap at every pool)
    assert many.rf == full.rf == (3 + 1 + 2 * 2 + 1 * 2,) * 2 and many.bbox == full.bbox
    assert not np.any(many.support & ~full.support)


# ----------------------------------------------------------------------------- torch oracle, properties


def _torch_net(layers, rows, avg_pool):
    """The network in torch.nn, padding applied explicitly by the test's own rule."""
    mods = []
    h, w, c = rows[0].out_shape
    for layer in layers[1:]:
        if isinstance(layer, arch.Conv):
            k_eff = layer.dilation * (layer.kernel - 1) + 1
            if layer.padding == "valid":
                pads = (0, 0, 0, 0)
            elif layer.padding == "same":
                # TensorFlow's 'same': ceil(n/s) outputs, the odd padding pixel at the end
                oh, ow = -(-h // layer.stride), -(-w // layer.stride)
                th = max((oh - 1) * layer.stride + k_eff - h, 0)
                tw = max((ow - 1) * layer.stride + k_eff - w, 0)
                pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)  # torch order: left, right, top, bottom
            else:
                pads = (layer.padding,) * 4
            mods.append(nn.ZeroPad2d(pads))
            mods.append(nn.Conv2d(c, layer.channels, layer.kernel, stride=layer.stride, dilation=layer.dilation,
                                  bias=layer.bias))
            c = layer.channels
        elif isinstance(layer, arch.Pool):
            s = layer.kernel if layer.stride is None else layer.stride
            mods.append((nn.AvgPool2d if avg_pool else nn.MaxPool2d)(layer.kernel, stride=s))
        h, w = _torch_hw(mods, rows[0].out_shape)
    return nn.Sequential(*mods).double()


def _torch_hw(mods, in_shape):
    with torch.no_grad():
        y = nn.Sequential(*mods).double()(torch.zeros((1, in_shape[2], in_shape[0], in_shape[1]), dtype=torch.float64))
    return y.shape[2], y.shape[3]


@st.composite
def conv_pool_stacks(draw):
    h = draw(st.integers(6, 20))
    w = draw(st.integers(6, 20))
    c = draw(st.integers(1, 3))
    tokens = [f"in{h}x{w}x{c}"]
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            k = draw(st.integers(1, 5))
            s = draw(st.integers(1, 2))
            d = draw(st.integers(1, 2))
            k_eff = d * (k - 1) + 1
            pad = draw(st.sampled_from(["", "same", "valid", "p0", "p1", "p2"]))
            if pad == "valid" or pad.startswith("p"):
                p = 0 if pad == "valid" else int(pad[1:])
                if min(h, w) + 2 * p < k_eff:
                    pad = "same"
            if pad in ("", "same"):
                h, w = -(-h // s), -(-w // s)
            else:
                p = 0 if pad == "valid" else int(pad[1:])
                h, w = (h + 2 * p - k_eff) // s + 1, (w + 2 * p - k_eff) // s + 1
            tokens.append(f"conv{k}s{s}{pad}d{d}c{draw(st.integers(1, 3))}" + draw(st.sampled_from(["", "nobias"])))
        else:
            k = draw(st.integers(2, 3))
            if min(h, w) < k:
                continue
            s = draw(st.integers(1, 3))
            h, w = (h - k) // s + 1, (w - k) // s + 1
            tokens.append(f"pool{k}s{s}")
    return " ".join(tokens)


@given(conv_pool_stacks())
def test_random_stacks_match_torch_shapes_params_and_gradient_support(spec):
    layers = arch.parse(spec)
    rows = arch.analyze(layers)
    # shapes and parameter counts, layer by layer, against torch.nn
    net = _torch_net(layers, rows, avg_pool=True)
    H, W, C = rows[0].out_shape
    x = torch.zeros((1, C, H, W), dtype=torch.float64, requires_grad=True)
    y = net(x)
    assert tuple(y.shape[1:]) == (rows[-1].out_shape[2],) + rows[-1].out_shape[:2]
    assert sum(p.numel() for p in net.parameters()) == arch.totals(rows)["params"]
    # receptive field: positive filters and average pools (which pass a gradient to every
    # window element) make torch's input-gradient support the field itself
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    oh, ow = rows[-1].out_shape[:2]
    i, j = oh // 2, ow // 2
    net(x)[0, :, i, j].sum().backward()
    torch_support = (x.grad[0] != 0).any(dim=0).numpy()
    f = arch.empirical_receptive_field(layers, (i, j))
    np.testing.assert_array_equal(f.support, torch_support)
    # and, where the field lies inside the image, the closed form
    last = rows[-1]
    centre = [last.start[a] + (i, j)[a] * last.jump[a] for a in range(2)]
    inside = [centre[a] - (last.rf[a] - 1) / 2 >= 0 and centre[a] + (last.rf[a] - 1) / 2 <= (H, W)[a] - 1
              for a in range(2)]
    for a in range(2):
        if inside[a]:
            assert f.rf[a] == last.rf[a], (spec, a)
            assert f.centre[a] == centre[a], (spec, a)
        else:
            assert f.rf[a] <= last.rf[a]
    # the union of true max-pool backward passes never leaves the field
    u = arch.empirical_receptive_field(layers, (i, j), method="union", trials=1)
    assert not np.any(u.support & ~f.support)


# ----------------------------------------------------------------------------- relu (issue 14)


def test_relu_token_parses_to_a_parameterless_layer():
    layers = arch.parse("in8x8x1 conv3c4 relu pool2 relu fc10")
    assert [type(layer).__name__ for layer in layers] == ["Input", "Conv", "Relu", "Pool", "Relu", "Dense"]
    assert layers[2] == arch.Relu(token="relu")
    with pytest.raises(ValueError, match="relu or fc"):
        arch.parse("in8x8x1 relu2")
    with pytest.raises(ValueError, match="relu or fc"):
        arch.parse("in8x8x1 ReLU")


def test_relu_keeps_shape_and_field_and_adds_no_neurons_or_params():
    plain = arch.analyze(HW32)
    with_relu = arch.analyze(HW32.replace(" pool2", " relu pool2"))
    relus = [r for r in with_relu if r.kind == "relu"]
    assert len(relus) == 3 and [r.name for r in relus] == ["relu1", "relu2", "relu3"]
    for r in relus:
        assert r.in_shape == r.out_shape and r.params == 0 and r.neurons == 0
    others = [r for r in with_relu if r.kind != "relu"]
    assert [(r.name, r.out_shape, r.params, r.neurons, r.rf, r.jump, r.start) for r in others] == [
        (r.name, r.out_shape, r.params, r.neurons, r.rf, r.jump, r.start) for r in plain]
    assert arch.totals(with_relu) == arch.totals(plain)
    # a relu's figures are those of the layer before it
    for prev, r in zip(with_relu, with_relu[1:]):
        if r.kind == "relu":
            assert (r.rf, r.jump, r.start) == (prev.rf, prev.jump, prev.start)
    assert "`relu`" in arch.markdown(with_relu)


def test_relu_receptive_field_measured_and_to_dense_keep_it():
    spec = "in16x16x1 conv3 relu pool2 conv3 relu"
    for method in ("window", "union"):
        a = arch.empirical_receptive_field(spec, method=method)
        b = arch.empirical_receptive_field(spec.replace(" relu", ""), method=method)
        np.testing.assert_array_equal(a.support, b.support)
    dense = arch.to_dense(spec)
    assert [type(layer).__name__ for layer in dense] == ["Input", "Dense", "Relu", "Pool", "Dense", "Relu"]
    assert arch.totals(arch.analyze(dense)) == arch.totals(arch.analyze(arch.to_dense(spec.replace(" relu", ""))))


def test_relu_matches_torch_shapes_in_a_network():
    spec = "in12x12x2 conv3c4 relu pool2 conv3c3 relu fc5"
    rows = arch.analyze(spec)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 5))
    x = torch.zeros((1, 2, 12, 12))
    shapes = []
    for m in net:
        x = m(x)
        if not isinstance(m, nn.Flatten):
            shapes.append(tuple(x.shape[1:]))
    ours = [(r.out_shape[2], r.out_shape[0], r.out_shape[1]) if r.kind != "fc" else (r.out_shape[2],) for r in rows[1:]]
    assert ours == shapes
    assert arch.totals(rows)["params"] == sum(p.numel() for p in net.parameters())
