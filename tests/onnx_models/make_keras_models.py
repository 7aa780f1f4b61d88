"""Writes the Keras models beside this file, converted by tf2onnx, for tests/test_onnx_keras.py.

Run in an environment with TensorFlow and tf2onnx (not graphnet's: they are not its
dependencies), from this folder:

    pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0
    python make_keras_models.py

Made with TensorFlow 2.21.0, Keras 3.15.1 and tf2onnx 1.17.0.
"""
import numpy as np
import tensorflow as tf
import tf2onnx
import keras
from keras import layers


def cnn():
    """Rescaling, ZeroPadding2D before a conv and a max pool, batch norm, ReLU6, depthwise,
    a residual sum, average pooling, GlobalAveragePooling2D, Dense with softmax."""
    image = keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(1 / 255)(image)
    x = layers.ZeroPadding2D(3)(x)
    x = layers.Conv2D(8, 7, strides=2, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.ZeroPadding2D(1)(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    y = layers.Conv2D(8, 3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU(6.0)(y)
    y = layers.DepthwiseConv2D(3, padding="same")(y)
    y = layers.ReLU()(y)
    x = layers.Add()([x, y])
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(image, layers.Dense(10, activation="softmax")(x))


def flatten():
    """Keras' Flatten of a channels-last image before a Dense layer."""
    image = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(4, 3, activation="relu", padding="same")(image)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    return keras.Model(image, layers.Dense(10)(layers.Flatten()(x)))


def normalized(padding):
    """Normalization (x - mean) / std before a conv: exact in graphnet where the conv does not
    pad (its zero padding would not be shifted)."""
    image = keras.Input((12, 12, 3), name="image")
    normalization = layers.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.04, 0.09, 0.01])
    x = layers.Conv2D(6, 3, padding=padding, activation="relu")(normalization(image))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(4)(x))


def main():
    keras.utils.set_random_seed(0)
    for name, make in (("cnn", cnn), ("flatten", flatten)):
        model = make()
        for layer in model.layers:  # batch norm statistics that are not the identity
            if isinstance(layer, layers.BatchNormalization):
                count = layer.moving_mean.shape[0]
                layer.moving_mean.assign(np.random.randn(count).astype("float32") * 0.2)
                layer.moving_variance.assign(np.random.rand(count).astype("float32") + 0.5)
                layer.gamma.assign(np.random.rand(count).astype("float32") + 0.5)
                layer.beta.assign(np.random.randn(count).astype("float32") * 0.1)
        signature = (tf.TensorSpec((None, *model.input.shape[1:]), tf.float32, name="image"),)
        for opset, nchw in ((13, True), (17, True), (17, False)):
            path = f"keras_{name}_{opset}_{'nchw' if nchw else 'nhwc'}.onnx"
            tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset,
                                       output_path=path,
                                       inputs_as_nchw=["image"] if nchw else None)
            print("wrote", path)
    for padding in ("valid", "same"):
        model = normalized(padding)
        signature = (tf.TensorSpec((None, 12, 12, 3), tf.float32, name="image"),)
        path = f"keras_normalized_{padding}_17_nchw.onnx"
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, output_path=path,
                                   inputs_as_nchw=["image"])
        print("wrote", path)


if __name__ == "__main__":
    main()
