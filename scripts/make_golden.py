"""Generate the preprocessing golden arrays in tests/golden/ with each framework's own code.

Run once per framework environment (the test suite never needs torch or tensorflow):

    # torchvision, timm, Hugging Face transformers
    pip install torch torchvision timm transformers scikit-image scikit-learn
    python scripts/make_golden.py torch
    # Keras, TF-slim (tensorflow), MLPerf (opencv)
    pip install tensorflow-cpu opencv-python-headless scikit-image scikit-learn
    python scripts/make_golden.py tf

Every image is decoded with Pillow (as torchvision, timm, Keras and transformers
do themselves); what differs between frameworks, and what is recorded here, is
their preprocessing. Arrays are stored in the framework's own layout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden"

# The Hugging Face preprocessor_config.json of microsoft/resnet-50.
HF_RESNET_CONFIG = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "size": 224,
}


def photos() -> dict[str, Path]:
    import skimage
    import sklearn.datasets

    sk = Path(skimage.__file__).parent / "data"
    images = Path(sklearn.datasets.__file__).parent / "images"
    return {"china.jpg": images / "china.jpg", "chelsea.png": sk / "chelsea.png", "coffee.png": sk / "coffee.png"}


def rgb(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def torch_cases():
    import timm
    import torchvision
    import transformers
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms as T
    from torchvision.models import Inception_V3_Weights, ResNet50_Weights

    def tv(t):
        return lambda img: t(img).numpy()

    def timm_tf(name):
        cfg = resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        return tv(create_transform(**cfg))

    # transformers 5 has two backends; the Pillow one is the classic ConvNext processor
    # (the torchvision-tensor one differs by one grey level on ~0.4% of pixels).
    hf = transformers.ConvNextImageProcessorPil(
        **{k: v for k, v in HF_RESNET_CONFIG.items() if k != "feature_extractor_type"}
    )
    versions = {
        "torch": __import__("torch").__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
    }
    yield "torchvision", 224, "china.jpg", "NCHW", tv(ResNet50_Weights.IMAGENET1K_V1.transforms()), versions
    yield "torchvision", 299, "chelsea.png", "NCHW", tv(Inception_V3_Weights.IMAGENET1K_V1.transforms()), versions
    yield (
        "torchvision",
        160,
        "coffee.png",
        "NCHW",
        tv(
            T.Compose(
                [
                    T.Resize(183),
                    T.CenterCrop(160),
                    T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                ]
            )
        ),
        versions,
    )
    yield "torchvision-v2", 224, "chelsea.png", "NCHW", tv(ResNet50_Weights.IMAGENET1K_V2.transforms()), versions
    yield "timm-inception", 299, "china.jpg", "NCHW", timm_tf("inception_v3.tv_in1k"), versions
    yield "timm-resnet", 224, "coffee.png", "NCHW", timm_tf("resnet50.a1_in1k"), versions
    yield "hf-resnet", 224, "china.jpg", "NCHW", lambda img: hf(img, return_tensors="np")["pixel_values"][0], versions


def tf_cases():
    import cv2
    import keras
    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__, "opencv": cv2.__version__}

    def keras_case(module, size):
        def run(path):
            img = keras.utils.load_img(path, target_size=(size, size))
            return module.preprocess_input(keras.utils.img_to_array(img)[None])[0]

        return run

    def slim(path, size=299, central_fraction=0.875):
        # research/slim/preprocessing/inception_preprocessing.py preprocess_for_eval
        image = tf.constant(np.asarray(rgb(path)))
        image = tf.image.convert_image_dtype(image, dtype=tf.float32)
        image = tf.image.central_crop(image, central_fraction=central_fraction)
        image = tf.expand_dims(image, 0)
        image = tf.compat.v1.image.resize_bilinear(image, [size, size], align_corners=False)
        image = tf.squeeze(image, [0])
        image = tf.subtract(image, 0.5)
        image = tf.multiply(image, 2.0)
        return image.numpy()

    def mlperf(path, size=224):
        # mlcommons/inference vision/classification_and_detection/python/dataset.py
        def center_crop(img, out_height, out_width):
            height, width, _ = img.shape
            left = int((width - out_width) / 2)
            right = int((width + out_width) / 2)
            top = int((height - out_height) / 2)
            bottom = int((height + out_height) / 2)
            return img[top:bottom, left:right]

        def resize_with_aspectratio(img, out_height, out_width, scale=87.5, inter_pol=cv2.INTER_LINEAR):
            height, width, _ = img.shape
            new_height = int(100.0 * out_height / scale)
            new_width = int(100.0 * out_width / scale)
            if height > width:
                w = new_width
                h = int(new_height * height / width)
            else:
                h = new_height
                w = int(new_width * width / height)
            return cv2.resize(img, (w, h), interpolation=inter_pol)

        img = np.ascontiguousarray(np.asarray(rgb(path))[..., ::-1])  # cv2.imread gives BGR
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        img = resize_with_aspectratio(img, size, size, inter_pol=cv2.INTER_AREA)
        img = center_crop(img, size, size)
        img = np.asarray(img, dtype="float32")
        img -= np.array([123.68, 116.78, 103.94], dtype=np.float32)
        return img.transpose([2, 0, 1])

    yield "keras-tf", 299, "chelsea.png", "NHWC", keras_case(keras.applications.inception_v3, 299), versions
    yield "keras-caffe", 224, "china.jpg", "NHWC", keras_case(keras.applications.resnet50, 224), versions
    yield "tf-slim", 299, "coffee.png", "NHWC", slim, versions
    yield "mlperf-resnet", 224, "china.jpg", "NCHW", mlperf, versions
    yield "mlperf-resnet", 224, "chelsea.png", "NCHW", mlperf, versions


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    cases = {"torch": torch_cases, "tf": tf_cases}.get(which)
    if cases is None:
        raise SystemExit("usage: make_golden.py torch|tf")
    OUT.mkdir(parents=True, exist_ok=True)
    files = photos()
    for preset, size, image, layout, fn, versions in cases():
        path = files[image]
        # Keras' loader and the TF/MLPerf code take a path; the PIL-based ones an image.
        arg = path if which == "tf" else rgb(path)
        tensor = np.asarray(fn(arg), dtype=np.float32)
        name = f"{preset}_{size}_{Path(image).stem}"
        meta = {
            "preset": preset,
            "size": size,
            "image": image,
            "layout": layout,
            "versions": {**versions, "pillow": Image.__version__, "numpy": np.__version__},
        }
        np.savez_compressed(OUT / f"{name}.npz", tensor=tensor, meta=json.dumps(meta))
        print(name, tensor.shape, f"{(OUT / f'{name}.npz').stat().st_size} bytes")
    (OUT / "hf_resnet_preprocessor_config.json").write_text(json.dumps(HF_RESNET_CONFIG, indent=2) + "\n")


if __name__ == "__main__":
    main()
