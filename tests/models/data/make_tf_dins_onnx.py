"""Write ``tf_dins_tiny.onnx``: a TensorFlow-exported DINs as the original made its ``checkpoint.onnx``.

Not part of the test run (it needs TensorFlow). Run it once, in an environment with
``tensorflow-cpu==2.15.*``, ``tensorflow-addons==0.23.*`` and ``tf2onnx==1.16.1`` (the original's
exporter version), from this folder: ``python make_tf_dins_onnx.py``. It builds the original's Keras
DINs (seed_spec §3.2: layer names ``model/<block>/conv1`` …, tensorflow-addons InstanceNorm, a ``dim``
Sequential for the guide), at tiny widths (2, max 4), gives every weight a distinct random value
(untrained norms would be all ones and zeros, which tf2onnx merges), and exports it with
``tf2onnx.convert.from_keras`` in the signature of the original converter's last version: batch 1,
a dynamic depth A and a fixed (S, R) = (32, 32). Beside it, ``tf_dins_tiny.npz`` holds an input
of depth 2 and the logits TensorFlow computes for it, which ``test_dins_onnx.py`` compares with
nfbench's PyTorch DINs holding the converted weights.
"""

import numpy as np
import tensorflow as tf
import tf2onnx
from tensorflow.keras import Model, Sequential
from tensorflow.keras import layers
from tensorflow_addons.layers import InstanceNormalization

BASE, TOP, DEPTH, WINDOW = 2, 4, 2, (32, 32)


def _triple(code: int) -> tuple[int, int, int]:
    return code // 100, code // 10 % 10, code % 10


class Block(layers.Layer):
    """conv → norm (+ guide) → ReLU → conv → norm → ReLU, after an up-convolution and skip concatenation in the decoder."""

    def __init__(self, filters, kernel, strides=111, up=None, **kwargs):
        super().__init__(**kwargs)
        conv = dict(padding="same", use_bias=False)
        self.conv1 = layers.Conv3D(filters, _triple(kernel), _triple(strides), name="conv1", **conv)
        self.norm1 = InstanceNormalization(name="norm1")
        self.conv2 = layers.Conv3D(filters, _triple(kernel), 1, name="conv2", **conv)
        self.norm2 = InstanceNormalization(name="norm2")
        self.relu = layers.ReLU()
        self.up = layers.Conv3DTranspose(filters, _triple(up), _triple(up), name="up", **conv) if up else None
        self.cat = layers.Concatenate() if up else None

    def call(self, inputs, guide=None):
        x = inputs
        if self.up is not None:
            skip, deep = inputs
            x = self.cat([skip, self.up(deep)])
        x = self.norm1(self.conv1(x))
        x = self.relu(x if guide is None else x + guide)
        return self.relu(self.norm2(self.conv2(x)))


class DINs(Model):
    def __init__(self, base, top, name="model"):
        super().__init__(name=name)
        width = [min(base * 2**k, top) for k in range(5)]
        self.down1 = Block(width[0], 133, 111, name=f"{name}/down1")
        self.down2 = Block(width[1], 133, 122, name=f"{name}/down2")
        self.down3 = Block(width[2], 333, 122, name=f"{name}/down3")
        self.down4 = Block(width[3], 333, 122, name=f"{name}/down4")
        self.bridge = Block(width[4], 333, 222, name=f"{name}/bridge")
        self.up4 = Block(width[3], 333, 111, up=222, name=f"{name}/up4")
        self.up3 = Block(width[2], 333, 111, up=122, name=f"{name}/up3")
        self.up2 = Block(width[1], 133, 111, up=122, name=f"{name}/up2")
        self.up1 = Block(width[0], 133, 111, up=122, name=f"{name}/up1")
        self.dim = Sequential([layers.MaxPool3D((1, 8, 8), (1, 8, 8)),
                               layers.Conv3D(width[4], 3, 2, "same", use_bias=True)], name="dim")
        self.final = layers.Conv3D(2, 1, use_bias=True, name=f"{name}/final")

    def call(self, inputs):
        image, guide = inputs
        x1 = self.down1(tf.concat((image, guide), axis=-1))
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        x4 = self.down4(x3)
        x = self.bridge(x4, guide=self.dim(guide))
        for block, skip in ((self.up4, x4), (self.up3, x3), (self.up2, x2), (self.up1, x1)):
            x = block((skip, x))
        return self.final(x)


def main() -> None:
    shapes = [(1, None, *WINDOW, 1), (1, None, *WINDOW, 2)]
    net = DINs(BASE, TOP)
    net.build(shapes)
    rng = np.random.default_rng(0)
    for weight in net.weights:
        value = rng.normal(0, 0.3, weight.shape) + (1.0 if "gamma" in weight.name else 0.0)
        weight.assign(value.astype("float32"))
    signature = [tf.TensorSpec(shapes[0], tf.float32, name="image"), tf.TensorSpec(shapes[1], tf.float32, name="guide")]
    tf2onnx.convert.from_keras(net, input_signature=signature, output_path="tf_dins_tiny.onnx")
    image = rng.normal(size=(1, DEPTH, *WINDOW, 1)).astype("float32")
    guide = rng.uniform(size=(1, DEPTH, *WINDOW, 2)).astype("float32")
    np.savez_compressed("tf_dins_tiny.npz", image=image, guide=guide, logits=net((image, guide)).numpy())


if __name__ == "__main__":
    main()
