"""Write NVIDIA stylegan2-ada-pytorch network pickles without NVIDIA's code.

``torch_utils.persistence`` and ``dnnlib.util`` are faked as modules that exist in ``sys.modules`` only while
pickling.  Network classes carry the constructor attributes of NVIDIA's ``training/networks.py`` (same names,
numpy float64 gains from ``np.sqrt``, EasyDict kwargs) and are wrapped by a decorator whose ``__reduce__`` is the
one of ``persistence.persistent_class``: ``(_reconstruct_persistent_obj, (meta,), None)`` with
``meta = dict(type='class', version=6, module_src=..., class_name=..., state=<object.__reduce__ state>)``.
Class-conditional mapping networks get NVIDIA's ``embed`` layer; ``snapshot_extras`` gives a training snapshot's
``D`` and ``augment_pipe`` entries.  StyleGAN3 classes live in ``_sg3_reference.py`` (they use this decorator).
"""
import contextlib
import copy
import io
import pickle
import sys
import types

import numpy as np
import torch

MODULE_SRC = "# pretend source of training/networks.py; a real loader would exec this\nimport os\n"


def _reconstruct_persistent_obj(meta):  # pragma: no cover - must never run during the tests' loads
    raise AssertionError("the fake persistence module must not be used for loading")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value


EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def fake_nvidia_modules():
    """Make torch_utils.persistence and dnnlib.util importable for pickle.dump, and remove them afterwards."""
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util, dnnlib.EasyDict = util, EasyDict
    mods = {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib,
            "dnnlib.util": util}
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def persistent_class(orig):
    class Decorator(orig):
        _orig_class_name = orig.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            meta = dict(type="class", version=6, module_src=sys.modules[__name__].MODULE_SRC,
                        class_name=self._orig_class_name, state=fields[2])
            return (_reconstruct_persistent_obj, (meta,), None)

    Decorator.__name__ = orig.__name__
    return Decorator


P_ = torch.nn.Parameter


def _setup_filter():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = f.ger(f)
    return f / f.sum()


@persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self.activation = activation
        self.weight = P_(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = P_(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier


@persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if c_dim:  # stylegan2-ada: embed_features = w_dim, concatenated after the normalised z
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        feats = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(feats[i], feats[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))


@persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation="lrelu", conv_clamp=None):
        super().__init__()
        self.resolution, self.up, self.use_noise, self.activation, self.conv_clamp = (
            resolution, up, use_noise, activation, conv_clamp)
        self.register_buffer("resample_filter", _setup_filter())
        self.padding = kernel_size // 2
        self.act_gain = np.sqrt(2)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = P_(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = P_(torch.zeros([]))
        self.bias = P_(torch.zeros([out_channels]))


@persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = P_(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = P_(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))


@persistent_class
class SynthesisBlock(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture="skip",
                 conv_clamp=None, use_fp16=False):
        super().__init__()
        self.in_channels, self.w_dim, self.resolution, self.img_channels = in_channels, w_dim, resolution, img_channels
        self.is_last, self.architecture, self.use_fp16, self.channels_last = is_last, architecture, use_fp16, False
        self.register_buffer("resample_filter", _setup_filter())
        self.num_conv = self.num_torgb = 0
        if in_channels == 0:
            self.const = P_(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1


@persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channels, conv_clamp=None, architecture="skip"):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                                   is_last=res == img_resolution, conv_clamp=conv_clamp, architecture=architecture)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)


@persistent_class
class AugmentPipe(torch.nn.Module):  # what a snapshot's augment_pipe holds: float settings, p and filter buffers
    def __init__(self, xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1):
        super().__init__()
        self.register_buffer("p", torch.zeros([]))
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.xint_max, self.scale_std, self.rotate_max = 0.125, 0.2, 1
        self.register_buffer("Hz_geom", torch.randn([12]))
        self.register_buffer("Hz_fbank", torch.randn([3, 12]))


@persistent_class
class Discriminator(torch.nn.Module):  # enough of NVIDIA's D to be a persistent object with layers and gains
    def __init__(self, c_dim, img_resolution, img_channels):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(int(np.log2(img_resolution)), 2, -1)]
        self.b4 = FullyConnectedLayer(img_channels * 16, 8, activation="lrelu")
        self.epilogue = FullyConnectedLayer(8, 1)


def snapshot_extras(G):
    """D and augment_pipe entries of a training snapshot (network-snapshot-*.pkl)."""
    return dict(D=Discriminator(G.c_dim, G.img_resolution, G.img_channels), augment_pipe=AugmentPipe())




@persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, synthesis_kwargs={}):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)


def build_generator(P, size, z_dim, w_dim, n_mlp, channels, conv_clamp=None, architecture="skip", c_dim=0):
    """An NVIDIA-layout Generator whose tensors are those of P (see _sg2_reference.random_params)."""
    G = Generator(z_dim, c_dim, w_dim, size, 3, mapping_kwargs=EasyDict(num_layers=n_mlp),
                  synthesis_kwargs=EasyDict(channels=channels, conv_clamp=conv_clamp, architecture=architecture))
    with torch.no_grad():
        for name, t in list(G.named_parameters()) + list(G.named_buffers()):
            if name in P:
                t.copy_(P[name])
            elif name.endswith("resample_filter") or name.startswith("mapping.embed"):
                pass
            else:
                raise KeyError(f"test parameter set lacks {name}")
    return G.eval().requires_grad_(False)


def network_pickle_bytes(G_ema, G=None, extra=None):
    """pickle.dump of the dict stylegan2-ada-pytorch's training loop writes (network-snapshot-*.pkl)."""
    with fake_nvidia_modules():
        data = dict(G=G if G is not None else G_ema, D=None, G_ema=G_ema, augment_pipe=None,
                    training_set_kwargs=EasyDict(class_name="training.dataset.ImageFolderDataset", path="x.zip",
                                                 resolution=G_ema.img_resolution, use_labels=False))
        data.update(extra or {})
        buf = io.BytesIO()
        pickle.dump(data, buf)
    return buf.getvalue()


def plain_pickle_bytes(data, protocol=None):
    """pickle.dump of any dict holding persistent objects (e.g. a bare {"G_ema": G}), as NVIDIA's code pickles."""
    with fake_nvidia_modules():
        buf = io.BytesIO()
        pickle.dump(data, buf, protocol=protocol)
    return buf.getvalue()
